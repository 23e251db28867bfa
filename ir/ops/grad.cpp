// Schemas of the backward-pass ops (domain "codebook.grad", semantics in
// ir/ops/grad.h) and the parser of the codebook loss modes. The zeros-table
// ops (GatherGrad, SliceGrad) take their output shape as an int64 tensor: it
// is static when the forward value's shape is, otherwise it comes from a
// Shape node and the emitting pass declares the output type itself.
#include "ir/ops/grad.h"

#include <cstdlib>

#include "ir/attention.h"
#include "ir/op_registry.h"
#include "support/error.h"

namespace cb {

CodebookLoss parse_codebook_loss(const std::string& s) {
  CodebookLoss l;
  auto with_beta = [&](const char* prefix, CodebookLossKind kind) {
    std::string p = prefix;
    if (s.compare(0, p.size(), p) != 0) return false;
    std::string rest = s.substr(p.size());
    if (!rest.empty() && rest[0] != '-') return false;
    l.kind = kind;
    if (rest.empty()) return true;
    std::string num = rest.substr(1);
    char* end = nullptr;
    double b = num.empty() ? 0 : std::strtod(num.c_str(), &end);
    CB_CHECK(!num.empty() && end && *end == '\0' && b >= 0,
             "codebook loss '" << s << "': beta '" << num << "' is not a non-negative number");
    l.beta = float(b);
    return true;
  };
  if (s == "base") {
    l.kind = CodebookLossKind::base;
    return l;
  }
  if (s == "aeloss") {
    l.kind = CodebookLossKind::aeloss;
    return l;
  }
  if (with_beta("fullaeloss", CodebookLossKind::fullaeloss) || with_beta("vqvae", CodebookLossKind::vqvae)) return l;
  CB_FAIL("unknown codebook loss '" << s
                                    << "' (expected base, aeloss, fullaeloss[-beta] or vqvae[-beta]; "
                                       "base and aeloss take no beta)");
}

CodebookLoss codebook_loss_of(const Node& n) {
  try {
    return parse_codebook_loss(n.attr_string("loss", "aeloss"));
  } catch (const Error& e) {
    CB_FAIL(n.describe() << ": " << e.what());
  }
}

namespace {

void check_float(const InferContext& ctx, size_t i, const char* what) {
  DType t = ctx.input_dtype(i);
  ctx.check(t == DType::undefined || dtype_is_float(t),
            std::string(what) + " has dtype " + std::string(dtype_name(t)) + ", expected a float type");
}

void check_same_shape(const InferContext& ctx, size_t a, size_t b, const char* what_a, const char* what_b) {
  const Shape& sa = ctx.input_shape(a);
  const Shape& sb = ctx.input_shape(b);
  if (!sa.rank_known || !sb.rank_known) return;
  bool ok = sa.rank() == sb.rank();
  for (size_t i = 0; ok && i < sa.rank(); ++i)
    ok = !(sa[i].is_static() && sb[i].is_static() && sa[i].value != sb[i].value);
  ctx.check(ok, std::string(what_a) + " " + sa.str() + " and " + what_b + " " + sb.str() + " differ in shape");
}

// The output shape of a zeros-table op from its int64 `shape` input.
Shape shape_from_input(const InferContext& ctx, size_t i) {
  DType t = ctx.input_dtype(i);
  ctx.check(t == DType::undefined || t == DType::i64,
            "shape has dtype " + std::string(dtype_name(t)) + ", expected i64");
  if (const Tensor* v = ctx.input_value(i)) {
    ctx.check(v->rank() == 1, "shape must be 1-D, got " + dims_str(v->dims()));
    std::vector<int64_t> dims = v->to_int_vector();
    for (int64_t d : dims) ctx.check(d >= 0, "shape " + v->str() + " has a negative dim");
    return Shape::of(dims);
  }
  const Shape& s = ctx.input_shape(i);
  if (s.rank_known && s.rank() == 1 && s[0].is_static())
    return Shape(std::vector<Dim>(size_t(s[0].value), Dim::unknown()));
  return Shape::unknown_rank();
}

void infer_softmax_grad(InferContext& ctx) {
  check_float(ctx, 0, "dy");
  check_float(ctx, 1, "y");
  check_same_shape(ctx, 0, 1, "dy", "y");
  const Shape& y = ctx.input_shape(1);
  if (y.rank_known) ctx.axis(ctx.node().attr_int("axis", -1), int64_t(y.rank()));
  ctx.set_output(0, ctx.input_dtype(0), ctx.input_shape(0));
}

void infer_gelu_grad(InferContext& ctx) {
  const std::string approximate = ctx.node().attr_string("approximate", "none");
  ctx.check(approximate == "none" || approximate == "tanh",
            "attribute 'approximate' must be \"none\" or \"tanh\", got \"" + approximate + "\"");
  check_float(ctx, 0, "dy");
  check_float(ctx, 1, "x");
  check_same_shape(ctx, 0, 1, "dy", "x");
  const DType dt = ctx.input_dtype(0), xt = ctx.input_dtype(1);
  ctx.check(dt == DType::undefined || xt == DType::undefined || dt == xt,
            "dy has dtype " + std::string(dtype_name(dt)) + " and x " + std::string(dtype_name(xt)) + ", expected one");
  ctx.set_output(0, xt, ctx.input_shape(1));
}

void infer_layer_norm_grad(InferContext& ctx) {
  check_float(ctx, 0, "dy");
  check_float(ctx, 1, "x");
  check_same_shape(ctx, 0, 1, "dy", "x");
  DType dt = ctx.input_dtype(1);
  const Shape& x = ctx.input_shape(1);
  ctx.set_output(0, dt, x);
  if (!x.rank_known) {
    ctx.set_output(1, dt, Shape::unknown_rank());
    ctx.set_output(2, dt, Shape::unknown_rank());
    return;
  }
  ctx.check(x.rank() >= 1, "x must have rank >= 1");
  int64_t axis = ctx.axis(ctx.node().attr_int("axis", -1), int64_t(x.rank()));
  Shape normalized(std::vector<Dim>(x.dims.begin() + axis, x.dims.end()));
  ctx.set_output(1, dt, normalized);
  ctx.set_output(2, dt, normalized);
}

void infer_gather_grad(InferContext& ctx) {
  check_float(ctx, 0, "dy");
  DType it = ctx.input_dtype(1);
  ctx.check(it == DType::undefined || it == DType::i64 || it == DType::i32,
            "indices have dtype " + std::string(dtype_name(it)) + ", expected i32 or i64");
  Shape out = shape_from_input(ctx, 2);
  const Shape& dy = ctx.input_shape(0);
  const Shape& idx = ctx.input_shape(1);
  if (out.rank_known) {
    ctx.check(out.rank() >= 1, "shape must have rank >= 1");
    int64_t a = ctx.axis(ctx.node().attr_int("axis", 0), int64_t(out.rank()));
    if (dy.rank_known && idx.rank_known)
      ctx.check(dy.rank() == out.rank() - 1 + idx.rank(), "dy " + dy.str() + " does not have the rank of a Gather of " +
                                                              out.str() + " by indices " + idx.str() + " on axis " +
                                                              std::to_string(a));
  }
  ctx.set_output(0, ctx.input_dtype(0), out);
}

void infer_slice_grad(InferContext& ctx) {
  check_float(ctx, 0, "dy");
  Shape out = shape_from_input(ctx, 1);
  const Shape& dy = ctx.input_shape(0);
  if (out.rank_known && dy.rank_known)
    ctx.check(dy.rank() == out.rank(), "dy " + dy.str() + " and shape " + out.str() + " differ in rank");
  ctx.set_output(0, ctx.input_dtype(0), out);
}

void infer_codebook_grad(InferContext& ctx) {
  static const char* names[] = {"dy", "x", "codes", "ln_scale", "ln_bias"};
  for (size_t i = 0; i < 5; ++i) {
    DType t = ctx.input_dtype(i);
    ctx.check(t == DType::undefined || t == DType::f32,
              std::string(names[i]) + " has dtype " + std::string(dtype_name(t)) + ", expected f32");
  }
  DType it = ctx.input_dtype(5);
  ctx.check(it == DType::undefined || it == DType::i64,
            "ids have dtype " + std::string(dtype_name(it)) + ", expected i64");
  check_same_shape(ctx, 0, 1, "dy", "x");
  const Shape& x = ctx.input_shape(1);
  const Shape& codes = ctx.input_shape(2);
  const Shape& ids = ctx.input_shape(5);
  ctx.check(!x.rank_known || x.rank() == 3, "x must have rank 3 [batch, seq, D], got " + x.str());
  ctx.check(!codes.rank_known || codes.rank() == 3, "codes must have rank 3 [G, K, D/G], got " + codes.str());
  ctx.check(!ids.rank_known || ids.rank() == 4, "ids must have rank 4 [batch, seq, G, k], got " + ids.str());
  const Node& n = ctx.node();
  int64_t k = n.attr_int("k", 1);
  ctx.check(k >= 1, "k = " + std::to_string(k) + " must be at least 1");
  if (ids.rank_known && ids[3].is_static())
    ctx.check(ids[3].value == k, "ids " + ids.str() + " do not have k = " + std::to_string(k) + " slots");
  if (ids.rank_known && codes.rank_known && ids[2].is_static() && codes[0].is_static())
    ctx.check(ids[2].value == codes[0].value, "ids " + ids.str() + " and codes " + codes.str() + " differ in G");
  codebook_loss_of(n);  // errors name the node
  ctx.set_output(0, DType::f32, x);
  ctx.set_output(1, DType::f32, codes);
  ctx.set_output(2, DType::f32, ctx.input_shape(3));
  ctx.set_output(3, DType::f32, ctx.input_shape(4));
}

void infer_attention_grad(InferContext& ctx) {
  static const char* names[] = {"dy", "Q", "Kt", "V", "mask"};
  for (size_t i = 0; i < ctx.num_inputs(); ++i)
    if (ctx.has_input(i)) {
      DType t = ctx.input_dtype(i);
      ctx.check(t == DType::undefined || t == DType::f32,
                std::string(names[i]) + " has dtype " + std::string(dtype_name(t)) + ", expected f32");
    }
  const AttentionLayout layout = attention_layout(ctx.node());
  ctx.check(layout.num_heads == 0, "head offsets (num_heads, head_offsets) are not supported");
  ctx.node().attr_float("scale", 1.f);
  for (size_t i = 0; i < 4; ++i) {
    const Shape& s = ctx.input_shape(i);
    ctx.check(!s.rank_known || s.rank() == 4, std::string(names[i]) + " must have rank 4, got " + s.str());
  }
  // Q [B, H, T, dh], Kt [B, H, dh, S], V [B, H, S, dv]: input i as given is
  // P with logical = Transpose(P, perm), so logical dim a is P's dim perm[a].
  auto logical = [&](size_t i) {
    const Shape& s = ctx.input_shape(i + 1);
    if (!s.rank_known) return s;
    const AttentionLayout::Perm& p = layout.perm(i);
    return Shape({s.dims[size_t(p[0])], s.dims[size_t(p[1])], s.dims[size_t(p[2])], s.dims[size_t(p[3])]});
  };
  const Shape q = logical(0), kt = logical(1), v = logical(2);
  if (!q.rank_known || !kt.rank_known || !v.rank_known) {
    for (int o = 0; o < 3; ++o) ctx.set_output(o, DType::f32, Shape::unknown_rank());
    return;
  }
  Shape lead = broadcast_shapes(ctx, Shape({q.dims[0], q.dims[1]}), Shape({kt.dims[0], kt.dims[1]}));
  lead = broadcast_shapes(ctx, lead, Shape({v.dims[0], v.dims[1]}));
  const Dim B = lead.rank_known ? lead.dims[0] : Dim::unknown(), H = lead.rank_known ? lead.dims[1] : Dim::unknown();
  // Each gradient in its input's layout, with the broadcast B and H: its
  // dim perm[a] is logical dim a.
  auto in_layout = [&](size_t i, const Shape& logical_dims) {
    const AttentionLayout::Perm& p = layout.perm(i);
    std::vector<Dim> dims(4);
    for (size_t a = 0; a < 4; ++a) dims[size_t(p[a])] = logical_dims.dims[a];
    return Shape(dims);
  };
  ctx.set_output(0, DType::f32, in_layout(0, Shape({B, H, q.dims[2], q.dims[3]})));
  ctx.set_output(1, DType::f32, in_layout(1, Shape({B, H, kt.dims[2], kt.dims[3]})));
  ctx.set_output(2, DType::f32, in_layout(2, Shape({B, H, v.dims[2], v.dims[3]})));
}

OpSchema grad_schema(const char* name, int min_in, int max_in, int min_out, int max_out,
                     std::function<void(InferContext&)> infer, const char* doc) {
  OpSchema s = make_op_schema(name, min_in, max_in, min_out, max_out, std::move(infer), doc);
  s.domain = kGradDomain;
  return s;
}

}  // namespace

void register_grad_ops(OpRegistry& r) {
  r.add(grad_schema("SoftmaxGrad", 2, 2, 1, 1, infer_softmax_grad,
                    "Backward of Softmax (log = 0) or LogSoftmax (log = 1) from the forward output."));
  r.add(grad_schema("GeluGrad", 2, 2, 1, 1, infer_gelu_grad,
                    "Backward of Gelu (approximate = \"none\" or \"tanh\") from the forward input."));
  r.add(grad_schema("LayerNormalizationGrad", 3, 3, 1, 3, infer_layer_norm_grad,
                    "Backward of LayerNormalization: dx, dscale, dbias (statistics recomputed)."));
  r.add(grad_schema("GatherGrad", 3, 3, 1, 1, infer_gather_grad,
                    "Backward of Gather: scatter-add of dy into zeros of the data's shape."));
  r.add(grad_schema("SliceGrad", 4, 6, 1, 1, infer_slice_grad,
                    "Backward of Slice: dy written into zeros of the input's shape."));
  r.add(grad_schema(kAttentionGradOp, 4, 5, 3, 3, infer_attention_grad,
                    "Backward of codebook.Attention: dQ, dKt, dV (probabilities recomputed)."));
  r.add(grad_schema("CodebookGrad", 6, 6, 1, 4, infer_codebook_grad,
                    "Backward of codebook.Codebook per its loss mode (ir/ops/grad.h)."));
}

}  // namespace cb
