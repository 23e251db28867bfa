// The kernel interface. A backend turns each IR node into a Kernel once, at
// compile time (so a kernel may cache primitives or pre-packed weights); the
// runtime then calls Kernel::run for every execution with the node's input
// tensors and output tensors already allocated at their inferred shapes.
//
// A backend also owns a device (docs/cuda.md): the host for the reference and
// CPU backends, a GPU for the CUDA one. It says which nodes it can run there
// (supports), allocates that device's memory, copies between it and the host,
// and orders its work on one stream. The placement pass
// (passes/place_devices.h) and the runtime use these; host backends keep the
// defaults below.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/op_table.h"

namespace cb {

struct KernelContext {
  const Node& node;
  std::vector<const Tensor*> inputs;  // null for an omitted optional input
  std::vector<Tensor*> outputs;       // allocated by the runtime; null for an omitted output
  // Optional output aliasing: a kernel may replace *outputs[i] by a tensor
  // sharing an input's buffer (e.g. Reshape) instead of writing into it.
  int num_threads = 1;
  // Resolves values of enclosing graphs (for control-flow kernels); may be null.
  const std::function<const Tensor*(const Value*)>* outer_values = nullptr;

  const Tensor& in(size_t i) const;  // throws if absent
  Tensor& out(size_t i) const;       // throws if absent
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual void run(KernelContext& ctx) = 0;
};

// A stateless kernel given as a function.
using KernelFn = void (*)(KernelContext&);

// Makes a node's kernel once, at compile time (it may cache primitives or
// packed weights); null when it cannot serve this node (e.g. a dtype it does
// not cover), and the backend then falls back to the reference kernel.
using KernelFactory = std::unique_ptr<Kernel> (*)(const Node&);

// The factory of a kernel class constructed from its node.
template <typename K>
std::unique_ptr<Kernel> make_kernel(const Node& node) {
  return std::make_unique<K>(node);
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Null when the backend has no kernel for this node.
  virtual std::unique_ptr<Kernel> create_kernel(const Node& node) const = 0;

  // The device its kernels run on: their inputs and outputs are in its memory.
  virtual Device device() const { return Device::host(); }
  // Whether create_kernel serves this node on device(): the placement pass
  // moves a node to a device backend only when it does. Host backends serve
  // every node.
  virtual bool supports(const Node&) const { return true; }
  // Uninitialised memory on device(), freed with its last reference.
  virtual std::shared_ptr<Buffer> allocate(size_t bytes) const { return buffer_allocate(bytes); }
  // Copies `from` into `to` (same dtype and dims), queued on the backend's
  // stream. copy_to_device may return before the bytes arrive (later work on
  // the stream sees them; the host source may be reused at once);
  // copy_to_host returns once they are on the host.
  virtual void copy_to_device(const Tensor& host, Tensor& device) const;
  virtual void copy_to_host(const Tensor& device, Tensor& host) const;
  // Within device() memory: `rows` runs of `width` bytes from `from` (starting
  // at byte from_offset, runs from_pitch bytes apart) to `to` (likewise),
  // queued on the stream. Checked against both tensors' sizes. What a KV
  // cache takes its new columns with (tools/generate.h).
  struct Rows {
    size_t from_offset = 0, from_pitch = 0, to_offset = 0, to_pitch = 0, width = 0, rows = 0;
  };
  virtual void copy_rows(const Tensor& from, Tensor& to, const Rows& r) const;
  // Waits until everything queued on the stream has finished.
  virtual void synchronize() const {}
};

// copy_rows' bounds check (a cb::Error naming the sizes), for overrides.
void check_rows(const Tensor& from, const Tensor& to, const Backend::Rows& r);

// The kernel of a codebook.CopyToDevice / CopyToHost node on `backend` (the
// device side of the copy), or null for any other node. A device backend's
// create_kernel returns it for the copy nodes.
std::unique_ptr<Kernel> make_device_copy_kernel(const Backend& backend, const Node& node);

// Each backend has one dispatch table (ir/op_table.h): the reference
// backend's maps ops to kernel functions, the CPU backend's to kernel factories.
using KernelTable = OpTable<KernelFn>;
using KernelFactoryTable = OpTable<KernelFactory>;

std::unique_ptr<Kernel> make_function_kernel(KernelFn fn);

// Backends by name: "reference", "cpu" (and "cuda" when built with CUDA).
std::unique_ptr<Backend> make_backend(const std::string& name);
std::unique_ptr<Backend> make_reference_backend();
std::unique_ptr<Backend> make_cpu_backend();
std::vector<std::string> backend_names();

}  // namespace cb
