// A compiled graph: one kernel per node, in topological order, plus the value
// slots and buffer pool they run over. Compile once, run many times with
// different batch and sequence sizes; each run binds the symbolic dimensions
// of the inputs and sizes every intermediate through the op schemas.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "ir/graph.h"
#include "runtime/buffer_pool.h"

namespace cb {

struct CompileOptions {
  int num_threads = 1;
  bool profile = false;  // collect per-op-type time in profile()
};

struct OpProfile {
  int64_t calls = 0;
  double ms = 0;
};

class Executable {
 public:
  // Verifies the graph and creates a kernel for every node. Throws cb::Error
  // naming the first node the backend cannot run.
  static std::unique_ptr<Executable> compile(std::shared_ptr<const Graph> graph, const Backend& backend,
                                             CompileOptions opts = {});

  // Runs the graph. Inputs are matched by name; every graph input is required.
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs);
  // For subgraphs (Loop/If bodies): inputs by position, and `outer` resolves
  // the values the subgraph captures from enclosing graphs.
  std::vector<Tensor> run_subgraph(const std::vector<Tensor>& inputs,
                                   const std::function<const Tensor*(const Value*)>& outer);

  const Graph& graph() const { return *graph_; }
  std::vector<std::string> input_names() const;
  std::vector<std::string> output_names() const;
  const std::map<std::string, OpProfile>& profile() const { return profile_; }
  size_t pooled_bytes() const { return pool_.bytes_held(); }

 private:
  struct Step {
    const Node* node;
    std::unique_ptr<Kernel> kernel;
    std::vector<int> in_slots, out_slots;  // -1 for omitted
    std::vector<int> free_after;           // slots dead after this step
    bool sizes_own_outputs = false;        // control flow: kernel sets its outputs
  };

  Executable() = default;
  void bind_inputs(const std::map<std::string, Tensor>& inputs);
  std::vector<Tensor> execute(const std::function<const Tensor*(const Value*)>* outer);

  std::shared_ptr<const Graph> graph_;
  CompileOptions opts_;
  std::vector<Step> steps_;
  std::map<const Value*, int> slot_of_;
  std::vector<Tensor> slots_;
  std::vector<int> input_slots_, output_slots_;
  std::vector<bool> is_constant_slot_;
  std::vector<std::pair<const Value*, int>> captured_slots_;  // values from enclosing graphs
  BufferPool pool_;
  std::map<std::string, OpProfile> profile_;
};

}  // namespace cb
