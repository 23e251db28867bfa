// Schemas of the fused optimizer ops (ir/ops/optim.h).
#include "ir/ops/optim.h"

#include "ir/op_registry.h"

namespace cb {
namespace {

void infer_adamw(InferContext& ctx) {
  const char* names[] = {"p", "g", "m", "v", "lr", "step", "clip"};
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    DType t = ctx.input_dtype(i);
    ctx.check(t == DType::undefined || t == DType::f32,
              std::string(names[i]) + " has dtype " + std::string(dtype_name(t)) + ", expected f32");
  }
  for (size_t i = 1; i < 4; ++i)
    if (ctx.input_shape(0).rank_known && ctx.input_shape(i).rank_known)
      ctx.check(ctx.input_shape(i) == ctx.input_shape(0),
                std::string(names[i]) + " " + ctx.input_shape(i).str() + " differs from p " + ctx.input_shape(0).str());
  for (size_t i = 4; i < ctx.num_inputs(); ++i)
    if (ctx.input_shape(i).rank_known)
      ctx.check(ctx.input_shape(i).rank() == 0, std::string(names[i]) + " must be a scalar");
  for (size_t i = 0; i < 3; ++i) ctx.set_output(i, DType::f32, ctx.input_shape(0));
}

}  // namespace

void register_optim_ops(OpRegistry& r) {
  OpSchema s =
      make_op_schema("AdamW", 6, 7, 3, 3, infer_adamw,
                     "One parameter's AdamW update (ir/ops/optim.h): p, g, m, v, lr, step[, clip] -> p', m', v'.");
  s.domain = kTrainDomain;
  r.add(s);
}

}  // namespace cb
