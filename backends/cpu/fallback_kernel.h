// The base of the CPU kernels that handle the common case themselves (f32,
// the shapes they cover) and hand everything else to the op's reference
// kernel, so a fast kernel never has to be complete to be correct.
#pragma once
#include "backends/backend.h"
#include "backends/reference/reference_backend.h"
#include "support/error.h"

namespace cb {

class FallbackKernel : public Kernel {
 public:
  explicit FallbackKernel(const Node& node) : fallback_(reference_kernels().find(node.domain, node.op_type)) {}

 protected:
  // Runs the reference kernel on ctx.
  void fall_back(KernelContext& ctx) const {
    CB_CHECK(fallback_, ctx.node.describe() << ": no reference kernel to fall back on");
    fallback_(ctx);
  }

 private:
  KernelFn fallback_;
};

}  // namespace cb
