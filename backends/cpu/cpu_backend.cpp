// The CPU backend: oneDNN for matrix products, reference kernels for the rest
// (fast kernels of our own replace reference ones op by op; each is tested
// against the reference on random inputs).
#include "backends/backend.h"
#include "backends/cpu/codebook_kernel.h"
#include "backends/cpu/dnnl_eltwise.h"
#include "backends/cpu/dnnl_matmul.h"
#include "backends/cpu/elementwise_kernels.h"
#include "backends/cpu/grad_kernels.h"
#include "backends/cpu/layout_kernels.h"
#include "backends/cpu/optim_kernels.h"
#include "backends/reference/reference_backend.h"
#include "ir/codebook.h"

namespace cb {

namespace {
class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  std::unique_ptr<Kernel> create_kernel(const Node& node) const override {
    if (node.domain.empty()) {
      if (node.op_type == "MatMul") return make_dnnl_matmul_kernel(node);
      if (node.op_type == "Gemm") return make_dnnl_gemm_kernel(node);
      if (auto k = make_cpu_elementwise_kernel(node)) return k;
      if (auto k = make_dnnl_eltwise_kernel(node)) return k;
    }
    if (is_codebook_node(node)) return make_codebook_kernel(node);
    if (auto k = make_cpu_grad_kernel(node)) return k;
    if (auto k = make_cpu_layout_kernel(node)) return k;
    if (auto k = make_cpu_optim_kernel(node)) return k;
    KernelFn fn = reference_kernels().find(node.domain, node.op_type);
    return fn ? make_function_kernel(fn) : nullptr;
  }
};
}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace cb
