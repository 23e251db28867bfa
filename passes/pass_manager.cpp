#include "support/error.h"
#include "ir/verifier.h"
#include "passes/pass.h"

namespace cb {

PassManager& PassManager::add(std::unique_ptr<Pass> p) {
  passes_.push_back(std::move(p));
  return *this;
}

bool PassManager::run(Graph& g) {
  bool changed = false;
  for (auto& p : passes_) {
    bool c = p->run(g);
    changed |= c;
    if (c && verify_) {
      try {
        verify_graph(g);
      } catch (const Error& e) {
        throw Error("after pass '" + p->name() + "': " + e.what());
      }
    }
  }
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
