#include <algorithm>
#include <cstdio>
#include <iostream>
#include <mutex>

#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/pass.h"
#include "support/error.h"

namespace cb {

PassInstrumentation& default_pass_instrumentation() {
  static PassInstrumentation instr;
  return instr;
}

std::vector<PassTiming>& pass_timings() {
  static std::vector<PassTiming> timings;
  return timings;
}

void print_pass_timings(std::ostream& os) {
  const auto& ts = pass_timings();
  os << "pass timings (wall clock; a pipeline's time includes its passes'):\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-36s %6s %8s %12s\n", "pass", "runs", "changed", "total ms");
  os << line;
  for (const PassTiming& t : ts) {
    std::snprintf(line, sizeof line, "  %-36s %6lld %8lld %12.3f\n", t.name.c_str(), (long long)t.runs,
                  (long long)t.changed, double(t.total.count()) / 1e6);
    os << line;
  }
}

namespace {

bool listed(const std::vector<std::string>& names, const std::string& pass) {
  return std::find(names.begin(), names.end(), "all") != names.end() ||
         std::find(names.begin(), names.end(), pass) != names.end();
}

void dump_ir(std::ostream& os, const char* when, const std::string& pass, const Graph& g) {
  PrintOptions po;
  po.elide_large_constants = true;  // weights would drown the structure
  os << "// ----- IR " << when << " " << pass << " -----\n" << print_graph(g, po);
}

std::mutex timings_mutex;  // the table is process-wide: PassManagers on other threads share it

void record_time(const std::string& name, bool changed, std::chrono::nanoseconds dt) {
  std::lock_guard<std::mutex> lock(timings_mutex);
  auto& ts = pass_timings();
  auto it = std::find_if(ts.begin(), ts.end(), [&](const PassTiming& t) { return t.name == name; });
  if (it == ts.end()) it = ts.insert(ts.end(), PassTiming{name});
  it->runs += 1;
  it->changed += changed;
  it->total += dt;
}

}  // namespace

PassManager& PassManager::add(std::unique_ptr<Pass> p) {
  passes_.push_back(std::move(p));
  return *this;
}

bool PassManager::run(Pass& p, Graph& g) {
  std::ostream& os = instr_.dump ? *instr_.dump : std::cerr;
  std::string name = p.name();
  if (listed(instr_.print_before, name)) dump_ir(os, "before", name, g);
  auto t0 = std::chrono::steady_clock::now();
  bool changed = p.run(g);
  record_time(name, changed, std::chrono::steady_clock::now() - t0);
  if (listed(instr_.print_after, name)) {
    if (changed)
      dump_ir(os, "after", name, g);
    else
      os << "// ----- IR after " << name << ": unchanged -----\n";
  }
  if (changed && instr_.verify) {
    try {
      verify_graph(g);
    } catch (const Error& e) {
      throw Error("after pass '" + name + "': " + e.what());
    }
  }
  return changed;
}

bool PassManager::run(Graph& g) {
  bool changed = false;
  for (auto& p : passes_) changed |= run(*p, g);
  return changed;
}

bool PassManager::run_to_fixed_point(Graph& g, int max_rounds) {
  bool any = false;
  for (int i = 0; i < max_rounds; ++i) {
    if (!run(g)) break;
    any = true;
  }
  return any;
}

}  // namespace cb
