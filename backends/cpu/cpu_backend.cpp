#include "backends/cpu/cpu_backend.h"

#include "backends/cpu/attention_kernel.h"
#include "backends/cpu/codebook_kernel.h"
#include "backends/cpu/dnnl_eltwise.h"
#include "backends/cpu/dnnl_matmul.h"
#include "backends/cpu/elementwise_kernels.h"
#include "backends/cpu/grad_kernels.h"
#include "backends/cpu/layout_kernels.h"
#include "backends/cpu/optim_kernels.h"
#include "backends/cpu/reduce_kernels.h"
#include "backends/cpu/row_kernels.h"
#include "backends/reference/reference_backend.h"

namespace cb {

const KernelFactoryTable& cpu_kernels() {
  static const KernelFactoryTable table = [] {
    KernelFactoryTable t;
    register_dnnl_matmul_kernels(t);
    register_dnnl_eltwise_kernels(t);
    register_cpu_elementwise_kernels(t);
    register_cpu_layout_kernels(t);
    register_cpu_grad_kernels(t);
    register_cpu_codebook_kernels(t);
    register_cpu_attention_kernels(t);
    register_cpu_attention_grad_kernel(t);
    register_cpu_optim_kernels(t);
    register_cpu_reduce_kernels(t);
    register_cpu_row_kernels(t);
    return t;
  }();
  return table;
}

namespace {
class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  std::unique_ptr<Kernel> create_kernel(const Node& node) const override {
    if (KernelFactory make = cpu_kernels().find(node.domain, node.op_type))
      if (auto k = make(node)) return k;
    KernelFn fn = reference_kernels().find(node.domain, node.op_type);
    return fn ? make_function_kernel(fn) : nullptr;
  }
};
}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace cb
