// The pass interface. A pass rewrites a Graph in place and says whether it
// changed anything; the PassManager runs a pipeline, optionally to a fixed
// point. After every pass that changed the graph it runs verify_graph (always,
// in every build type; PassInstrumentation::verify turns it off), and it
// times each pass and can print the IR before or after chosen passes
// (`--time-passes`, `--print-before`, `--print-after` on the CLI; docs/passes.md).
// Every pass is also constructible by name: passes/pass_registry.h.
#pragma once
#include <chrono>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"

namespace cb {

class Pass {
 public:
  virtual ~Pass() = default;
  virtual std::string name() const = 0;
  // Returns true when the graph changed.
  virtual bool run(Graph& g) = 0;
};

// What a PassManager does around each pass.
struct PassInstrumentation {
  // verify_graph after every pass that changed the graph; an error names the pass.
  bool verify = true;
  // Pass names (or "all") to print the IR of, to `dump`, before the pass
  // runs / after it changed the graph (an unchanged graph gets one line).
  std::vector<std::string> print_before, print_after;
  // Where the IR is printed; nullptr = std::cerr.
  std::ostream* dump = nullptr;
};

// The instrumentation every new PassManager starts from: the CLI sets it once
// (tools/options.h), so the passes that run deep inside import or training
// are covered too, without threading options through every call.
PassInstrumentation& default_pass_instrumentation();

// Wall time per pass name, summed over every PassManager of the process (a
// pipeline's time includes the passes it runs, e.g. canonicalize's).
struct PassTiming {
  std::string name;
  int64_t runs = 0, changed = 0;
  std::chrono::nanoseconds total{0};
};
std::vector<PassTiming>& pass_timings();
// The table `--time-passes` prints.
void print_pass_timings(std::ostream& os);

class PassManager {
 public:
  PassManager() : instr_(default_pass_instrumentation()) {}
  explicit PassManager(PassInstrumentation instr) : instr_(std::move(instr)) {}

  PassManager& add(std::unique_ptr<Pass> p);
  // Adds a pass and returns it, so its results can be read after run().
  template <class P, class... Args>
  P& emplace(Args&&... args) {
    auto p = std::make_unique<P>(std::forward<Args>(args)...);
    P& ref = *p;
    add(std::move(p));
    return ref;
  }
  // Runs each pass once, in order. Returns true when any changed the graph.
  bool run(Graph& g);
  // Runs one pass the caller owns (and reads results from), instrumented as
  // in a pipeline: PassManager().run(pass, g).
  bool run(Pass& p, Graph& g);
  // Repeats the pipeline until nothing changes (at most max_rounds times).
  bool run_to_fixed_point(Graph& g, int max_rounds = 8);
  void set_verify(bool v) { instr_.verify = v; }
  PassInstrumentation& instrumentation() { return instr_; }

 private:
  std::vector<std::unique_ptr<Pass>> passes_;
  PassInstrumentation instr_;
};

}  // namespace cb
