// Schemas of the codebook domain's forward ops:
//  - codebook.Codebook (contract in ir/codebook.h): checks the shapes of x,
//    codes and the LayerNorm parameters against each other and the
//    intervention attributes against G and K;
//  - codebook.Attention (contract in ir/attention.h): Q [B,H,T,dh],
//    Kt [B,H,dh,S], V [B,H,S,dv] after their layout perms, an optional mask
//    broadcastable to [B,H,T,S]; B and H broadcast between the inputs.
#include "ir/codebook.h"

#include "ir/attention.h"
#include "ir/op_registry.h"

namespace cb {
namespace {

void check_f32(const InferContext& ctx, size_t i, const char* what) {
  DType t = ctx.input_dtype(i);
  ctx.check(t == DType::undefined || t == DType::f32,
            std::string(what) + " has dtype " + std::string(dtype_name(t)) + ", expected f32");
}

void infer_codebook(InferContext& ctx) {
  check_f32(ctx, 0, "x");
  check_f32(ctx, 1, "codes");
  check_f32(ctx, 2, "ln_scale");
  check_f32(ctx, 3, "ln_bias");
  const Shape& x = ctx.input_shape(0);
  const Shape& codes = ctx.input_shape(1);
  ctx.check(!x.rank_known || x.rank() == 3, "x must have rank 3 [batch, seq, D], got " + x.str());
  ctx.check(!codes.rank_known || codes.rank() == 3, "codes must have rank 3 [G, K, D/G], got " + codes.str());
  int64_t G = -1, K = -1, Dg = -1;
  if (codes.rank_known) {
    G = codes.dims[0].value;
    K = codes.dims[1].value;
    Dg = codes.dims[2].value;
  }
  for (size_t i : {size_t(2), size_t(3)}) {
    const Shape& s = ctx.input_shape(i);
    const char* what = i == 2 ? "ln_scale" : "ln_bias";
    ctx.check(!s.rank_known || s.rank() == 2, std::string(what) + " must have rank 2 [G, D/G], got " + s.str());
    if (s.rank_known && codes.rank_known)
      ctx.check(s.dims[0] == codes.dims[0] && s.dims[1] == codes.dims[2],
                std::string(what) + " has shape " + s.str() + ", expected [G, D/G] of codes " + codes.str());
  }
  if (x.rank_known && G > 0 && Dg > 0 && x.dims[2].is_static())
    ctx.check(x.dims[2].value == G * Dg, "x has width " + x.dims[2].str() + " but the codes cover G*D/G = " +
                                             std::to_string(G) + "*" + std::to_string(Dg));
  CodebookAttrs a = CodebookAttrs::from_node(ctx.node(), G, K);  // errors name the node
  ctx.set_output(0, DType::f32, x);
  Shape ids = x.rank_known ? Shape({x.dims[0], x.dims[1], G > 0 ? Dim::fixed(G) : Dim::unknown(), Dim::fixed(a.k)})
                           : Shape::unknown_rank();
  ctx.set_output(1, DType::i64, ids);
  ctx.set_output(2, DType::f32, ids);
}

// Two dims that must be the same size: a static pair must agree.
void check_same(const InferContext& ctx, const Dim& a, const Dim& b, const std::string& what) {
  ctx.check(!a.is_static() || !b.is_static() || a.value == b.value, what + ": " + a.str() + " vs " + b.str());
}

// Transpose(s, perm): dim i of the result is dim perm[i] of s.
Shape permuted(const Shape& s, const AttentionLayout::Perm& perm) {
  if (!s.rank_known || s.rank() != 4) return s;
  return Shape({s.dims[size_t(perm[0])], s.dims[size_t(perm[1])], s.dims[size_t(perm[2])], s.dims[size_t(perm[3])]});
}

void infer_attention(InferContext& ctx) {
  const char* names[] = {"Q", "Kt", "V", "mask", "Kt_past", "V_past"};
  for (size_t i = 0; i < ctx.num_inputs(); ++i)
    if (ctx.has_input(i)) check_f32(ctx, i, names[i]);
  const AttentionLayout layout = attention_layout(ctx.node());
  Shape logical[3];  // Q [B, H, T, dh], Kt [B, H, dh, S], V [B, H, S, dv] after the perms
  for (size_t i = 0; i < 3; ++i) {
    const Shape& s = ctx.input_shape(i);
    ctx.check(!s.rank_known || s.rank() == 4, std::string(names[i]) + " must have rank 4, got " + s.str());
    logical[i] = permuted(s, layout.perm(i));
    // With num_heads, an input takes heads [offset, offset + num_heads) of
    // its H axis (or broadcasts one head, offset 0).
    if (layout.num_heads > 0 && s.rank_known) {
      Dim& h = logical[i].dims[1];
      const int64_t off = layout.head_offsets[i];
      if (h.is_static() && !(h.value == 1 && off == 0))
        ctx.check(h.value >= off + layout.num_heads, std::string(names[i]) + " has " + std::to_string(h.value) +
                                                         " heads, fewer than its offset " + std::to_string(off) +
                                                         " + num_heads " + std::to_string(layout.num_heads));
      if (!(h.is_static() && h.value == 1 && off == 0)) h = Dim::fixed(layout.num_heads);
    }
  }
  const Shape &q = logical[0], &kt = logical[1], &v = logical[2];
  ctx.node().attr_float("scale", 1.f);
  const int64_t nan_to_zero = ctx.node().attr_int("nan_to_zero", 0);
  ctx.check(nan_to_zero == 0 || nan_to_zero == 1, "nan_to_zero must be 0 or 1, got " + std::to_string(nan_to_zero));
  if (q.rank_known && kt.rank_known) check_same(ctx, q.dims[3], kt.dims[2], "Q's head size and Kt's differ");
  if (kt.rank_known && v.rank_known) check_same(ctx, kt.dims[3], v.dims[2], "Kt's key count and V's differ");
  if (!q.rank_known || !kt.rank_known || !v.rank_known) {
    ctx.set_output(0, DType::f32, Shape::unknown_rank());
    return;
  }
  // [B, H] of the output: numpy broadcast of the three inputs' leading dims.
  Shape lead = broadcast_shapes(ctx, Shape({q.dims[0], q.dims[1]}), Shape({kt.dims[0], kt.dims[1]}));
  lead = broadcast_shapes(ctx, lead, Shape({v.dims[0], v.dims[1]}));
  // Cached keys and values: [B, H, dh, P] and [B, H, P, dv], before the new ones.
  Dim keys = kt.dims[3];
  const bool past_keys = ctx.has_input(kAttentionPastKeysInput), past_values = ctx.has_input(kAttentionPastValuesInput);
  ctx.check(past_keys == past_values, "Kt_past and V_past come together");
  if (past_keys) {
    const Shape& kp = ctx.input_shape(kAttentionPastKeysInput);
    const Shape& vp = ctx.input_shape(kAttentionPastValuesInput);
    ctx.check(!kp.rank_known || kp.rank() == 4, "Kt_past must have rank 4, got " + kp.str());
    ctx.check(!vp.rank_known || vp.rank() == 4, "V_past must have rank 4, got " + vp.str());
    if (kp.rank_known && vp.rank_known) {
      check_same(ctx, kp.dims[2], q.dims[3], "Kt_past's head size and Q's differ");
      check_same(ctx, vp.dims[3], v.dims[3], "V_past's head size and V's differ");
      check_same(ctx, kp.dims[3], vp.dims[2], "Kt_past's key count and V_past's differ");
      lead = broadcast_shapes(ctx, lead, Shape({kp.dims[0], kp.dims[1]}));
      lead = broadcast_shapes(ctx, lead, Shape({vp.dims[0], vp.dims[1]}));
      keys = kp.dims[3].is_static() && keys.is_static() ? Dim::fixed(kp.dims[3].value + keys.value) : Dim::unknown();
    } else {
      keys = Dim::unknown();
    }
  }
  if (!lead.rank_known) {
    ctx.set_output(0, DType::f32, Shape::unknown_rank());
    return;
  }
  Shape out({lead.dims[0], lead.dims[1], q.dims[2], v.dims[3]});
  if (ctx.has_input(kAttentionMaskInput)) {
    const Shape& m = ctx.input_shape(kAttentionMaskInput);
    ctx.check(!m.rank_known || m.rank() <= 4, "mask must have rank <= 4, got " + m.str());
    Shape scores({lead.dims[0], lead.dims[1], q.dims[2], keys});
    Shape both = broadcast_shapes(ctx, scores, m);
    if (both.rank_known)
      for (size_t i = 0; i < 4; ++i)
        check_same(
            ctx, both.dims[i], scores.dims[i],
            "mask " + m.str() + " does not broadcast to the scores " + scores.str() + " at axis " + std::to_string(i));
  }
  ctx.set_output(0, DType::f32, permuted(out, layout.out_perm));
}

}  // namespace

void register_codebook_ops(OpRegistry& r) {
  OpSchema s = make_op_schema(kCodebookOp, 4, 4, 1, 3, infer_codebook,
                              "LayerNorm, top-k most similar codes, mean of their rows (ir/codebook.h).");
  s.domain = kCodebookDomain;
  r.add(std::move(s));
  OpSchema a = make_op_schema(kAttentionOp, 3, 6, 1, 1, infer_attention,
                              "Softmax(scale * Q Kt + mask) V in one kernel (ir/attention.h).");
  a.domain = kCodebookDomain;
  r.add(std::move(a));
}

}  // namespace cb
