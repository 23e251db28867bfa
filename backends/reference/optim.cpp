// Reference kernels of the fused optimizer ops (ir/ops/optim.h).
#include "backends/reference/optim.h"

#include "backends/reference/reference_backend.h"
#include "ir/ops/optim.h"
#include "support/error.h"

namespace cb {

AdamWArgs adamw_args(KernelContext& ctx) {
  const Node& n = ctx.node;
  AdamWArgs a{};
  a.p = ctx.in(0).data<float>();
  a.g = ctx.in(1).data<float>();
  a.m = ctx.in(2).data<float>();
  a.v = ctx.in(3).data<float>();
  a.lr = ctx.in(4).data<float>()[0];
  float step = ctx.in(5).data<float>()[0];
  a.clip = ctx.inputs.size() > 6 && ctx.inputs[6] ? ctx.inputs[6]->data<float>()[0] : 1.f;
  a.beta1 = n.attr_float("beta1", 0.9f);
  a.beta2 = n.attr_float("beta2", 0.999f);
  a.eps = n.attr_float("epsilon", 1e-8f);
  a.weight_decay = n.attr_float("weight_decay", 0.f);
  adamw_bias_corrections(a, step);
  a.p_out = ctx.out(0).data<float>();
  a.m_out = ctx.out(1).data<float>();
  a.v_out = ctx.out(2).data<float>();
  return a;
}

namespace {

void adamw_kernel(KernelContext& ctx) { adamw_range(adamw_args(ctx), 0, ctx.in(0).numel()); }

}  // namespace

void register_reference_optim(KernelTable& t) { t.add("AdamW", adamw_kernel, kTrainDomain); }

}  // namespace cb
