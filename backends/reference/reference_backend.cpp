#include "backends/reference/reference_backend.h"

#include "backends/reference/attention.h"

namespace cb {

const KernelTable& reference_kernels() {
  static const KernelTable table = [] {
    KernelTable t;
    register_reference_elementwise(t);
    register_reference_tensor(t);
    register_reference_reduction(t);
    register_reference_nn(t);
    register_reference_codebook(t);
    register_reference_attention(t);
    register_reference_grad(t);
    register_reference_optim(t);
    return t;
  }();
  return table;
}

namespace {
class ReferenceBackend : public Backend {
 public:
  std::string name() const override { return "reference"; }
  std::unique_ptr<Kernel> create_kernel(const Node& node) const override {
    KernelFn fn = reference_kernels().find(node.domain, node.op_type);
    return fn ? make_function_kernel(fn) : nullptr;
  }
};
}  // namespace

std::unique_ptr<Backend> make_reference_backend() { return std::make_unique<ReferenceBackend>(); }

}  // namespace cb
