// A compiled graph: one kernel per node, in topological order, plus the value
// slots and memory they run over. Compile once, run many times with
// different batch and sequence sizes; each run binds the symbolic dimensions
// of the inputs and sizes every intermediate through the op schemas (a step
// whose input shapes, and the input values its inference read, are those of
// the last run reuses the types it inferred then).
//
// Memory: a run allocates from a buffer pool and records each value's size and
// which values share a buffer (views such as Reshape). When a run's sizes
// equal the previous run's, the intermediates are planned into one arena by
// lifetime (runtime/memory_plan.h), used by every later run of those sizes;
// graph outputs (which the caller may keep) stay in pooled buffers. A size
// change falls back to the pool and plans again once sizes repeat.
//
// Devices (docs/cuda.md): in a graph placed by passes/place_devices.h, the
// nodes with a "device" attribute run on CompileOptions::device_backend, over
// its memory; the rest on the host backend. Each device has its own pool and
// its own planned arena. A constant that a copy node moves to the device is
// copied once, at compile time, and stays there for every run. An input on
// another device than the one its kernel runs on is a cb::Error, never a
// host kernel reading device memory. Without a device backend, copy nodes
// run as plain host copies.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"
#include "ir/graph.h"
#include "runtime/buffer_pool.h"

namespace cb {

struct CompileOptions {
  int num_threads = 1;   // 0 or less: all cores
  bool profile = false;  // collect per-op-type time in profile()
  // With profile: one entry per node ("<op> <node name>", the input shapes
  // of its first call in OpProfile::inputs) instead of per op type.
  bool profile_nodes = false;
  // Runs the nodes placed on its device; must outlive the Executable.
  const Backend* device_backend = nullptr;
  // Graph outputs to return on the device where they are made there (their
  // CopyToHost is skipped): state that a later run reads again, such as
  // parameters and optimizer moments in training. Fed back as inputs, such
  // tensors skip their CopyToDevice too (see run()).
  std::set<std::string> device_outputs;
};

struct OpProfile {
  int64_t calls = 0;
  double ms = 0;
  std::string inputs;  // per-node profiles: the input shapes of the first call, "[2,8,64] [64,192]"
};

class Executable {
 public:
  // Verifies the graph and creates a kernel for every node. Throws cb::Error
  // naming the first node the backend cannot run.
  static std::unique_ptr<Executable> compile(std::shared_ptr<const Graph> graph, const Backend& backend,
                                             CompileOptions opts = {});

  // Runs the graph. Inputs are matched by name; every graph input is required.
  // An input may be given on the device backend's device (an output of
  // CompileOptions::device_outputs): the copies to the device that read it
  // pass it through, and host nodes that read it get one host copy.
  std::vector<Tensor> run(const std::map<std::string, Tensor>& inputs);
  // For subgraphs (Loop/If bodies): inputs by position, and `outer` resolves
  // the values the subgraph captures from enclosing graphs.
  std::vector<Tensor> run_subgraph(const std::vector<Tensor>& inputs,
                                   const std::function<const Tensor*(const Value*)>& outer);

  const Graph& graph() const { return *graph_; }
  std::vector<std::string> input_names() const;
  std::vector<std::string> output_names() const;
  const std::map<std::string, OpProfile>& profile() const { return profile_; }
  void clear_profile() { profile_.clear(); }
  // Bytes of memory held for values on every device: the pools and the arenas.
  size_t pooled_bytes() const;
  // The size of the planned arenas, 0 while no plan is in use.
  size_t arena_bytes() const;
  // The same for one device's memory (0 for a device the graph does not use).
  size_t arena_bytes(const Device& device) const;

 private:
  struct Step {
    const Node* node;
    std::unique_ptr<Kernel> kernel;
    std::vector<int> in_slots, out_slots;  // -1 for omitted
    std::vector<int> free_after;           // slots dead after this step
    Device in_device, out_device;          // where its inputs and outputs are (ir/placement.h)
    bool any_input_device = false;         // reads dims only (Shape): inputs may be anywhere
    bool sizes_own_outputs = false;        // control flow: kernel sets its outputs
    bool copies_to_device = false;         // a CopyToDevice run on the device backend
    bool copies_graph_input = false;       // a CopyToDevice of a graph input: skipped for a device feed
    bool keeps_on_device = false;          // a CopyToHost of a device output: skipped, the output stays there
    // The output types inferred in the last run, valid while the input types
    // and the input values the inference read are the same.
    struct Sized {
      bool valid = false;
      std::vector<DType> in_dtypes;
      std::vector<std::vector<int64_t>> in_dims;
      uint64_t values_read = 0;
      std::vector<std::vector<uint8_t>> read_values;
      std::vector<DType> out_dtypes;
      std::vector<std::vector<int64_t>> out_dims;
    } sized;
  };
  // Memory planning state per slot (see the comment at the top).
  struct SlotMemory {
    int64_t first = -1, last = -1;   // defining step and last reading step (compile time)
    size_t bytes = 0;                // pooled bytes this value took in the recording run (0: none)
    const Buffer* buffer = nullptr;  // the pooled buffer it took in the recording run
    int alias_of = -1;               // the slot whose buffer it shared in the recording run
    int64_t offset = -1;             // planned arena offset, -1: pooled
    size_t planned_bytes = 0;
    int memory = 0;  // the device memory it lives in: an index of memories_
  };
  // One device's memory: its pool and its planned arena. memories_[0] is
  // the host's, memories_[1] the device backend's (when one is given).
  struct DeviceMemory {
    Device device;
    BufferPool pool;
    std::shared_ptr<Buffer> arena;
  };

  Executable() = default;
  void bind_inputs(const std::map<std::string, Tensor>& inputs);
  std::vector<Tensor> execute(const std::function<const Tensor*(const Value*)>* outer);
  // `readable`: the inputs whose bytes the host may read (in_values, with a
  // device input replaced by its host mirror, or null): readable_inputs.
  void readable_inputs(const Step& st, const std::vector<const Tensor*>& in_values,
                       std::vector<const Tensor*>& readable) const;
  bool cached_types(Step& st, const std::vector<const Tensor*>& in_values, const std::vector<const Tensor*>& readable);
  void remember_types(Step& st, const std::vector<const Tensor*>& in_values, const std::vector<const Tensor*>& readable,
                      uint64_t values_read, const std::vector<TensorType>& out_types);
  Tensor allocate_output(const Step& st, size_t o, DType dtype, std::vector<int64_t> dims, int slot);
  void check_outputs_after(const Step& st, const std::vector<const Buffer*>& given);
  void finish_run();
  void build_plan();
  int memory_of(const Device& device, const Node& node) const;
  void check_devices(const Step& st, const std::vector<const Tensor*>& in_values) const;

  std::shared_ptr<const Graph> graph_;
  CompileOptions opts_;
  std::vector<Step> steps_;
  std::map<const Value*, int> slot_of_;
  std::vector<Tensor> slots_;
  std::vector<int> input_slots_, output_slots_;
  std::vector<bool> input_has_host_readers_;  // per graph input: a host kernel reads it
  std::vector<Tensor> device_feeds_;          // per slot: the device tensor a graph input was given as
  std::vector<bool> is_constant_slot_;
  // Per slot: the host constant behind a constant's device copy (undefined
  // elsewhere). Shape inference reads it, so a device node whose output size
  // depends on a constant index input (Reshape's shape, Slice's starts) can
  // be sized without copying that input back every run.
  std::vector<Tensor> host_mirror_;
  // Per slot: the bytes of the host value behind the copy to the device made
  // in this run (a shape computed on the host, copied for a device Reshape),
  // read by shape inference as host_mirror_ is; rewritten by every run.
  std::vector<Tensor> run_mirror_;
  std::vector<bool> is_kept_slot_;  // graph inputs, outputs and captured values: never in the arena
  std::vector<std::pair<const Value*, int>> captured_slots_;  // values from enclosing graphs
  std::vector<DeviceMemory> memories_;
  const Backend* device_backend_ = nullptr;
  std::vector<SlotMemory> memory_;
  std::vector<size_t> prev_bytes_;  // the previous recording run's sizes and aliases
  std::vector<int> prev_alias_;
  std::unordered_map<const Buffer*, int> root_of_buffer_;  // recording run: pooled buffer -> slot that took it
  bool planned_ = false;                                   // this run uses the arena plan
  bool plan_broken_ = false;                               // a size or alias differed from the plan in this run
  std::map<std::string, OpProfile> profile_;
};

}  // namespace cb
