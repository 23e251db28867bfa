// Schema of codebook.FusedMatMul (contract in ir/fused_matmul.h).
#include "ir/fused_matmul.h"

#include "ir/codebook.h"
#include "ir/op_registry.h"

namespace cb {

MatMulActivation matmul_activation(const Node& n) {
  const std::string a = n.attr_string("activation", "none");
  if (a == "none") return MatMulActivation::none;
  if (a == "gelu_tanh") return MatMulActivation::gelu_tanh;
  if (a == "gelu_erf") return MatMulActivation::gelu_erf;
  CB_FAIL(n.describe() << ": activation '" << a << "' is not one of none, gelu_tanh, gelu_erf");
}

const char* matmul_activation_name(MatMulActivation a) {
  switch (a) {
    case MatMulActivation::gelu_tanh: return "gelu_tanh";
    case MatMulActivation::gelu_erf: return "gelu_erf";
    default: return "none";
  }
}

namespace {

void infer_fused_matmul(InferContext& ctx) {
  for (size_t i = 0; i < 3; ++i) {
    if (!ctx.has_input(i)) continue;
    DType t = ctx.input_dtype(i);
    ctx.check(t == DType::undefined || t == DType::f32,
              "input " + std::to_string(i) + " has dtype " + std::string(dtype_name(t)) + ", expected f32");
  }
  try {
    matmul_activation(ctx.node());
  } catch (const Error& e) {
    ctx.fail(e.what());
  }
  const Shape& a = ctx.input_shape(0);
  const Shape& b = ctx.input_shape(1);
  ctx.check(!a.rank_known || a.rank() >= 2, "A must have rank >= 2, got " + a.str());
  ctx.check(!b.rank_known || b.rank() == 2, "B must be 2-D, got " + b.str());
  if (!a.rank_known || !b.rank_known) return ctx.set_output(0, DType::f32, Shape::unknown_rank());
  const bool tb = ctx.node().attr_int("transB", 0) != 0;
  const Dim& ka = a[a.rank() - 1];
  const Dim& kb = b[tb ? 1 : 0];
  const Dim& n = b[tb ? 0 : 1];
  ctx.check(!(ka.is_static() && kb.is_static() && ka.value != kb.value),
            "inner dimensions do not match: A " + a.str() + " times B " + b.str() + (tb ? " (transposed)" : ""));
  if (ctx.has_input(2)) {
    const Shape& c = ctx.input_shape(2);
    ctx.check(!c.rank_known || (c.rank() == 1 && !(c[0].is_static() && n.is_static() && c[0].value != n.value)),
              "bias " + c.str() + " must have shape [N] = [" + n.str() + "]");
  }
  Shape out = a;
  out.dims.back() = n;
  ctx.set_output(0, DType::f32, out);
}

}  // namespace

void register_fused_matmul_op(OpRegistry& r) {
  OpSchema s = make_op_schema(kFusedMatMulOp, 2, 3, 1, 1, infer_fused_matmul,
                              "act(A op(B) + bias): a matmul with its epilogue (ir/fused_matmul.h).");
  s.domain = kCodebookDomain;
  r.add(std::move(s));
}

}  // namespace cb
