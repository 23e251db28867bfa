// The pass interface. A pass rewrites a Graph in place and says whether it
// changed anything; the PassManager runs a pipeline, optionally to a fixed
// point, and re-verifies the graph after each pass in debug builds.
#pragma once
#include <memory>
#include <string>
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

class PassManager {
 public:
  PassManager& add(std::unique_ptr<Pass> p);
  // Runs each pass once, in order. Returns true when any changed the graph.
  bool run(Graph& g);
  // Repeats the pipeline until nothing changes (at most max_rounds times).
  bool run_to_fixed_point(Graph& g, int max_rounds = 8);
  void set_verify(bool v) { verify_ = v; }

 private:
  std::vector<std::unique_ptr<Pass>> passes_;
  bool verify_ = true;
};

}  // namespace cb
