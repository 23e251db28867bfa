// Schemas of neural-network ops: Softmax, LogSoftmax, LayerNormalization,
// MatMul, Gemm, Einsum, NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss.
// Shape inference works on symbolic dims (MatMul of [batch,seq,768] by
// [768,3072] gives [batch,seq,3072]) and reports mismatches with both shapes.
#include "ir/op_registry.h"
#include "ir/ops/einsum_equation.h"

namespace cb {
namespace {

std::string type_str(DType t) { return std::string(dtype_name(t)); }

void check_float(const InferContext& ctx, size_t i) {
  DType t = ctx.input_dtype(i);
  ctx.check(t == DType::undefined || dtype_is_float(t),
            "input " + std::to_string(i) + " has dtype " + type_str(t) + ", expected a float type");
}

// MatMul and Gemm: floats and 32/64-bit integers, as ONNX allows.
void check_matmul_dtype(const InferContext& ctx, size_t i) {
  DType t = ctx.input_dtype(i);
  bool ok = t == DType::undefined || dtype_is_float(t) || t == DType::i32 || t == DType::i64 || t == DType::u32 ||
            t == DType::u64;
  ctx.check(ok, "input " + std::to_string(i) + " has dtype " + type_str(t) +
                    ", expected a float type or a 32/64-bit integer");
}

// All inputs in `idx` must share one dtype; returns it.
DType same_dtype(const InferContext& ctx, std::initializer_list<size_t> idx) {
  DType t = DType::undefined;
  for (size_t i : idx) {
    if (!ctx.has_input(i)) continue;
    DType u = ctx.input_dtype(i);
    if (u == DType::undefined) continue;
    if (t != DType::undefined && u != t)
      ctx.fail("inputs have different dtypes " + type_str(t) + " and " + type_str(u));
    t = u;
  }
  return t;
}

// Fails unless `from` can be unidirectionally broadcast to `to`.
void check_unidirectional(const InferContext& ctx, const Shape& from, const Shape& to, const std::string& what) {
  if (!from.rank_known || !to.rank_known) return;
  ctx.check(from.rank() <= to.rank(), what + " " + from.str() + " cannot be broadcast to " + to.str());
  size_t off = to.rank() - from.rank();
  for (size_t i = 0; i < from.rank(); ++i) {
    const Dim& f = from[i];
    const Dim& t = to[off + i];
    ctx.check(!(f.is_static() && f.value != 1 && t.is_static() && t.value != f.value),
              what + " " + from.str() + " cannot be broadcast to " + to.str());
  }
}

void infer_softmax(InferContext& ctx) {
  check_float(ctx, 0);
  const Shape& in = ctx.input_shape(0);
  if (in.rank_known) ctx.axis(ctx.node().attr_int("axis", -1), int64_t(in.rank()));
  ctx.set_output(0, ctx.input_dtype(0), in);
}

void infer_layer_norm(InferContext& ctx) {
  check_float(ctx, 0);
  DType dt = same_dtype(ctx, {0, 1, 2});
  const Shape& x = ctx.input_shape(0);
  auto stash = dtype_from_onnx(int32_t(ctx.node().attr_int("stash_type", 1)));
  ctx.check(stash && dtype_is_float(*stash),
            "stash_type " + std::to_string(ctx.node().attr_int("stash_type", 1)) + " is not a supported float type");
  ctx.set_output(0, dt, x);
  if (!x.rank_known) {
    ctx.set_output(1, *stash, Shape::unknown_rank());
    ctx.set_output(2, *stash, Shape::unknown_rank());
    return;
  }
  ctx.check(x.rank() >= 1, "X must have rank >= 1");
  int64_t axis = ctx.axis(ctx.node().attr_int("axis", -1), int64_t(x.rank()));
  if (ctx.has_input(1)) check_unidirectional(ctx, ctx.input_shape(1), x, "Scale");
  if (ctx.has_input(2)) check_unidirectional(ctx, ctx.input_shape(2), x, "B");
  Shape stats = x;
  for (size_t i = size_t(axis); i < x.rank(); ++i) stats.dims[i] = Dim::fixed(1);
  ctx.set_output(1, *stash, stats);
  ctx.set_output(2, *stash, stats);
}

// Fails if two dims are known to differ.
void check_same_dim(const InferContext& ctx, const Dim& a, const Dim& b, const std::string& msg) {
  ctx.check(!(a.is_static() && b.is_static() && a.value != b.value), msg);
}

// The more informative of two dims that must be equal.
Dim pick_dim(const Dim& a, const Dim& b) {
  if (a.is_static()) return a;
  if (b.is_static()) return b;
  return a.is_symbolic() ? a : b;
}

void infer_matmul(InferContext& ctx) {
  check_matmul_dtype(ctx, 0);
  check_matmul_dtype(ctx, 1);
  DType dt = same_dtype(ctx, {0, 1});
  const Shape& a = ctx.input_shape(0);
  const Shape& b = ctx.input_shape(1);
  if (!a.rank_known || !b.rank_known) return ctx.set_output(0, dt, Shape::unknown_rank());
  ctx.check(a.rank() >= 1 && b.rank() >= 1, "inputs must have rank >= 1, got " + a.str() + " and " + b.str());
  const Dim& ka = a[a.rank() - 1];
  const Dim& kb = b.rank() == 1 ? b[0] : b[b.rank() - 2];
  check_same_dim(ctx, ka, kb, "inner dimensions do not match: A " + a.str() + " times B " + b.str());
  Shape batch_a, batch_b;
  if (a.rank() > 2) batch_a.dims.assign(a.dims.begin(), a.dims.end() - 2);
  if (b.rank() > 2) batch_b.dims.assign(b.dims.begin(), b.dims.end() - 2);
  Shape out;
  try {
    out = broadcast_shapes(ctx, batch_a, batch_b);
  } catch (const Error&) {
    ctx.fail("batch dimensions of A " + a.str() + " and B " + b.str() + " do not broadcast");
  }
  if (a.rank() >= 2) out.dims.push_back(a[a.rank() - 2]);
  if (b.rank() >= 2) out.dims.push_back(b[b.rank() - 1]);
  ctx.set_output(0, dt, out);
}

void infer_gemm(InferContext& ctx) {
  for (size_t i = 0; i < 3; ++i)
    if (ctx.has_input(i)) check_matmul_dtype(ctx, i);
  DType dt = same_dtype(ctx, {0, 1, 2});
  const Shape& a = ctx.input_shape(0);
  const Shape& b = ctx.input_shape(1);
  ctx.check(!a.rank_known || a.rank() == 2, "A must be 2-D, got " + a.str());
  ctx.check(!b.rank_known || b.rank() == 2, "B must be 2-D, got " + b.str());
  if (!a.rank_known || !b.rank_known) return ctx.set_output(0, dt, Shape::unknown_rank());
  bool ta = ctx.node().attr_int("transA", 0) != 0;
  bool tb = ctx.node().attr_int("transB", 0) != 0;
  Dim m = a[ta ? 1 : 0], ka = a[ta ? 0 : 1];
  Dim kb = b[tb ? 1 : 0], n = b[tb ? 0 : 1];
  check_same_dim(ctx, ka, kb,
                 "inner dimensions do not match: A " + a.str() + (ta ? " (transposed)" : "") + " times B " + b.str() +
                     (tb ? " (transposed)" : ""));
  Shape out({m, n});
  if (ctx.has_input(2)) check_unidirectional(ctx, ctx.input_shape(2), out, "C");
  ctx.set_output(0, dt, out);
}

void infer_einsum(InferContext& ctx) {
  DType dt = DType::undefined;
  std::vector<size_t> ranks;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    ctx.check(ctx.has_input(i), "input " + std::to_string(i) + " is missing");
    DType t = ctx.input_dtype(i);
    ctx.check(t != DType::boolean, "Einsum does not take bool inputs");
    if (t != DType::undefined) {
      ctx.check(dt == DType::undefined || dt == t,
                "inputs have different dtypes " + type_str(dt) + " and " + type_str(t));
      dt = t;
    }
    if (!ctx.input_shape(i).rank_known) return ctx.set_output(0, dt, Shape::unknown_rank());
    ranks.push_back(ctx.input_shape(i).rank());
  }
  std::string equation = ctx.node().attr_string("equation", "");
  EinsumPlan plan;
  try {
    plan = plan_einsum(equation, ranks);
  } catch (const Error& e) {
    ctx.fail(e.what());
  }
  // Each label's size: size-1 dims broadcast; static sizes > 1 must agree.
  std::vector<Dim> size(size_t(plan.num_labels), Dim::fixed(1));
  std::vector<bool> seen(size_t(plan.num_labels), false);
  for (size_t k = 0; k < ranks.size(); ++k) {
    const Shape& s = ctx.input_shape(k);
    for (size_t d = 0; d < s.rank(); ++d) {
      size_t l = size_t(plan.operand_labels[k][d]);
      const Dim& dim = s[d];
      Dim& cur = size[l];
      if (!seen[l] || (cur.is_static() && cur.value == 1)) {
        cur = dim;
      } else if (!(dim.is_static() && dim.value == 1)) {
        ctx.check(!(cur.is_static() && dim.is_static() && cur.value != dim.value),
                  "einsum '" + equation + "': operand " + std::to_string(k) + " " + s.str() + " has size " + dim.str() +
                      " where another operand has " + cur.str());
        cur = pick_dim(cur, dim);
      }
      seen[l] = true;
    }
  }
  Shape out;
  for (int l : plan.output_labels) out.dims.push_back(size[size_t(l)]);
  ctx.set_output(0, dt, out);
}

// Shared by both losses: input [N,C,d1..], target [N,d1..], weight [C].
void infer_loss(InferContext& ctx, bool has_log_prob_output) {
  check_float(ctx, 0);
  DType dt = same_dtype(ctx, {0, 2});
  DType tt = ctx.input_dtype(1);
  ctx.check(tt == DType::undefined || tt == DType::i32 || tt == DType::i64,
            "target must be i32 or i64, got " + type_str(tt));
  std::string reduction = ctx.node().attr_string("reduction", "mean");
  ctx.check(reduction == "none" || reduction == "sum" || reduction == "mean",
            "reduction must be 'none', 'sum' or 'mean', got '" + reduction + "'");
  const Shape& x = ctx.input_shape(0);
  const Shape& t = ctx.input_shape(1);
  if (has_log_prob_output) ctx.set_output(1, dt, x);
  Shape loss_shape = t;
  if (x.rank_known) {
    ctx.check(x.rank() >= 2, "input must have shape [N,C,d1,...], got " + x.str());
    if (t.rank_known) {
      ctx.check(t.rank() == x.rank() - 1, "target " + t.str() + " must have rank one less than input " + x.str());
      for (size_t i = 0; i < t.rank(); ++i) {
        const Dim& xd = x[i == 0 ? 0 : i + 1];
        check_same_dim(ctx, xd, t[i], "target " + t.str() + " does not match input " + x.str());
        loss_shape.dims[i] = pick_dim(xd, t[i]);
      }
    } else {
      loss_shape = Shape();
      for (size_t i = 0; i < x.rank(); ++i)
        if (i != 1) loss_shape.dims.push_back(x[i]);
    }
    if (ctx.has_input(2)) {
      const Shape& w = ctx.input_shape(2);
      ctx.check(!w.rank_known || (w.rank() == 1 && !(w[0].is_static() && x[1].is_static() && w[0].value != x[1].value)),
                "weight " + w.str() + " must have shape [C] for input " + x.str());
    }
  }
  ctx.set_output(0, dt, reduction == "none" ? loss_shape : Shape());
}

OpSchema make_schema(const char* name, int min_in, int max_in, int min_out, int max_out,
                     std::function<void(InferContext&)> infer, const char* doc) {
  return make_op_schema(name, min_in, max_in, min_out, max_out, std::move(infer), doc);
}

}  // namespace

void register_nn_ops(OpRegistry& r) {
  r.add(make_schema("Softmax", 1, 1, 1, 1, infer_softmax, "exp(x) / sum(exp(x)) along axis."));
  r.add(make_schema("LogSoftmax", 1, 1, 1, 1, infer_softmax, "log(Softmax(x)) along axis."));
  r.add(make_schema("LayerNormalization", 1, 3, 1, 3, infer_layer_norm,
                    "Normalizes over dims axis..rank-1; optional Scale, B; outputs Mean and "
                    "InvStdDev."));
  r.add(make_schema("MatMul", 2, 2, 1, 1, infer_matmul, "numpy matmul."));
  r.add(make_schema("Gemm", 2, 3, 1, 1, infer_gemm, "alpha * A' B' + beta * C."));
  r.add(make_schema("Einsum", 1, 1024, 1, 1, infer_einsum, "Einstein summation (numpy rules)."));
  r.add(make_schema(
      "NegativeLogLikelihoodLoss", 2, 3, 1, 1, [](InferContext& c) { infer_loss(c, false); }, "NLL loss."));
  r.add(make_schema(
      "SoftmaxCrossEntropyLoss", 2, 3, 1, 2, [](InferContext& c) { infer_loss(c, c.num_outputs() > 1); },
      "Cross entropy of softmax(scores) against labels."));
}

}  // namespace cb
