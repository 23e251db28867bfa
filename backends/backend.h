// The kernel interface. A backend turns each IR node into a Kernel once, at
// compile time (so a kernel may cache primitives or pre-packed weights); the
// runtime then calls Kernel::run for every execution with the node's input
// tensors and output tensors already allocated at their inferred shapes.
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
};

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
