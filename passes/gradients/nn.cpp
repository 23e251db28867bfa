// Gradient rules of the neural-network ops: MatMul and Gemm (products with a
// transposed operand; a rank-2 weight's gradient of a batched product is one
// Gemm over the flattened rows), Softmax / LogSoftmax and LayerNormalization
// (codebook.grad.SoftmaxGrad / LayerNormalizationGrad, ir/ops/grad.h).
#include "ir/ops/grad.h"
#include "passes/gradients/gradient_rule.h"
#include "support/error.h"

namespace cb {
namespace {

int64_t rank_of(const Node& n, const Value* v) {
  CB_CHECK(v->type.shape.rank_known, "autodiff: " << n.describe() << ": the rank of '" << v->name << "' is unknown");
  return int64_t(v->type.shape.rank());
}

// Swaps the last two axes.
Value* transpose_last2(GradBuilder& b, Value* v, int64_t rank) {
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < rank - 2; ++i) perm.push_back(i);
  perm.push_back(rank - 1);
  perm.push_back(rank - 2);
  return b.op("Transpose", {v}, {{"perm", perm}});
}

// Y = A @ B with numpy semantics (rank-1 operands get a unit axis, batch
// dims broadcast): dA = dY @ B^T and dB = A^T @ dY, summed to each shape.
std::vector<Value*> matmul_grad(GradientContext& c) {
  auto r = c.none();
  GradBuilder& b = c.b;
  Value* A = c.in(0);
  Value* B = c.in(1);
  Value* dY = c.dy[0];
  const int64_t ra = rank_of(c.node, A), rb = rank_of(c.node, B);
  CB_CHECK(ra >= 1 && rb >= 1, "autodiff: " << c.node.describe() << ": scalar operands");
  // Put back the unit axes that rank-1 operands lose in Y.
  Value* A2 = ra == 1 ? b.op("Unsqueeze", {A, b.i64s({0})}) : A;
  Value* B2 = rb == 1 ? b.op("Unsqueeze", {B, b.i64s({1})}) : B;
  Value* dY2 = dY;
  if (ra == 1) dY2 = b.op("Unsqueeze", {dY2, b.i64s({rank_of(c.node, dY2) - (rb == 1 ? 0 : 1)})});
  if (rb == 1) dY2 = b.op("Unsqueeze", {dY2, b.i64s({rank_of(c.node, dY2)})});
  const int64_t ra2 = std::max<int64_t>(ra, 2), rb2 = std::max<int64_t>(rb, 2), ry2 = rank_of(c.node, dY2);

  if (c.want(0)) {
    Value* dA;
    const Shape& ys = dY2->type.shape;
    if (ra2 == 2 && rb2 == 2) {
      dA = b.op("Gemm", {dY2, B2}, {{"transB", int64_t(1)}});
    } else if (rb2 == 2 && ry2 == ra2 && ys[size_t(ry2 - 1)].is_static()) {
      // A [..., M, K] times a [K, N] weight: dA = dY_rows @ B^T as one Gemm
      // with transB (no transposed copy of the weight), reshaped to A's shape.
      Value* y_rows = b.op("Reshape", {dY2, b.i64s({-1, ys[size_t(ry2 - 1)].value})});
      dA = b.op("Reshape", {b.op("Gemm", {y_rows, B2}, {{"transB", int64_t(1)}}), b.op("Shape", {A2})});
    } else {
      dA = b.sum_to(b.op("MatMul", {dY2, transpose_last2(b, B2, rb2)}), A2);
    }
    r[0] = ra == 1 ? b.op("Squeeze", {dA, b.i64s({0})}) : dA;
  }
  if (c.want(1)) {
    Value* dB;
    const Shape& as = A2->type.shape;
    const Shape& ys = dY2->type.shape;
    bool flat_rows =
        rb2 == 2 && ra2 > 2 && ry2 == ra2 && as[size_t(ra2 - 1)].is_static() && ys[size_t(ry2 - 1)].is_static();
    if (ra2 == 2 && rb2 == 2) {
      dB = b.op("Gemm", {A2, dY2}, {{"transA", int64_t(1)}});
    } else if (flat_rows) {
      // A [..., M, K] with a [K, N] weight: dB = A_rows^T @ dY_rows over all rows.
      Value* a_rows = b.op("Reshape", {A2, b.i64s({-1, as[size_t(ra2 - 1)].value})});
      Value* y_rows = b.op("Reshape", {dY2, b.i64s({-1, ys[size_t(ry2 - 1)].value})});
      dB = b.op("Gemm", {a_rows, y_rows}, {{"transA", int64_t(1)}});
    } else {
      dB = b.sum_to(b.op("MatMul", {transpose_last2(b, A2, ra2), dY2}), B2);
    }
    r[1] = rb == 1 ? b.op("Squeeze", {dB, b.i64s({1})}) : dB;
  }
  return r;
}

// Y = alpha op(A) op(B) + beta C, op = optional transpose.
std::vector<Value*> gemm_grad(GradientContext& c) {
  auto r = c.none();
  GradBuilder& b = c.b;
  const Node& n = c.node;
  const bool ta = n.attr_int("transA", 0) != 0, tb = n.attr_int("transB", 0) != 0;
  const float alpha = n.attr_float("alpha", 1.0f), beta = n.attr_float("beta", 1.0f);
  Value* A = c.in(0);
  Value* B = c.in(1);
  Value* dY = c.dy[0];
  auto gemm = [&](Value* p, Value* q, bool tp, bool tq) {
    GradBuilder::Attrs attrs{{"transA", int64_t(tp)}, {"transB", int64_t(tq)}};
    if (alpha != 1.0f) attrs["alpha"] = alpha;
    return b.op("Gemm", {p, q}, attrs);
  };
  if (c.want(0)) r[0] = ta ? gemm(B, dY, tb, true) : gemm(dY, B, false, !tb);
  if (c.want(1)) r[1] = tb ? gemm(dY, A, true, ta) : gemm(A, dY, !ta, false);
  if (c.want(2)) r[2] = b.mul_scalar(b.sum_to(dY, c.in(2)), double(beta));
  return r;
}

template <bool Log>
std::vector<Value*> softmax_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  r[0] = c.b.op("SoftmaxGrad", {c.dy[0], c.out(0)},
                {{"axis", c.node.attr_int("axis", -1)}, {"log", int64_t(Log ? 1 : 0)}}, kGradDomain);
  return r;
}

// LayerNormalization(x, scale, bias?) -> (y, mean?, inv_std_dev?).
std::vector<Value*> layer_norm_grad(GradientContext& c) {
  auto r = c.none();
  const Node& n = c.node;
  CB_CHECK(!(c.dy.size() > 1 && c.dy[1]) && !(c.dy.size() > 2 && c.dy[2]),
           "autodiff: " << n.describe() << ": gradients through the Mean / InvStdDev outputs are not supported");
  bool want_bias = c.in(2) && c.want(2);
  std::vector<Value*> g = c.b.op_n("LayerNormalizationGrad", {c.dy[0], c.in(0), c.in(1)}, 3,
                                   {{"axis", n.attr_int("axis", -1)}, {"epsilon", n.attr_float("epsilon", 1e-5f)}},
                                   kGradDomain, {c.want(0), c.want(1), want_bias});
  if (c.want(0)) r[0] = g[0];
  if (c.want(1)) r[1] = c.b.sum_to(g[1], c.in(1));
  if (want_bias) r[2] = c.b.sum_to(g[2], c.in(2));
  return r;
}

}  // namespace

void register_nn_gradients(GradientTable& t) {
  t.add("MatMul", matmul_grad);
  t.add("Gemm", gemm_grad);
  t.add("Softmax", softmax_grad<false>);
  t.add("LogSoftmax", softmax_grad<true>);
  t.add("LayerNormalization", layer_norm_grad);
}

}  // namespace cb
