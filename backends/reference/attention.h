// One codebook.Attention call (ir/attention.h) as pointers and strides, and
// the reference computation of one query row: shared by the reference
// kernel (every row) and the CPU kernel (the rows its fast path cannot do
// exactly: every key masked, or NaN/inf scores).
#pragma once
#include <array>
#include <cstdint>

#include "backends/backend.h"
#include "ir/attention.h"
#include "support/error.h"

namespace cb {

struct AttentionCall {
  AttentionDims d;
  const float* q = nullptr;     // Q [B, H, T, dh], dh contiguous
  const float* k = nullptr;     // keys: element e of key j of a head at e * k_e + j * k_s
  const float* v = nullptr;     // V [B, H, S, dv], dv contiguous
  const float* mask = nullptr;  // null without a mask
  // The cached keys and values (d.P of them; null when there are none):
  // element e of cached key j of a head at e * d.P + j, cached value rows
  // dv apart, heads at the strides below.
  const float* k_past = nullptr;
  const float* v_past = nullptr;
  int64_t kp_b = 0, kp_h = 0, vp_b = 0, vp_h = 0;
  // Element strides of the inputs' [B, H] dims (0 where that input
  // broadcasts), of their rows, and of the keys' two axes; they follow the
  // layout attributes (ir/attention.h), e.g. q_t = 3 * H * dh for Q read out
  // of GPT-2's fused QKV projection.
  int64_t q_b = 0, q_h = 0, q_t = 0, k_b = 0, k_h = 0, k_e = 0, k_s = 0, v_b = 0, v_h = 0, v_s = 0;
  // The mask's strides for [B, H, T, S] (0 along broadcast dims).
  int64_t m_b = 0, m_h = 0, m_i = 0, m_j = 0;
  float scale = 1.f;
  bool nan_to_zero = false;
  float* out = nullptr;  // [B, H, T, dv] through the strides below, dv contiguous
  int64_t o_b = 0, o_h = 0, o_t = 0;

  const float* q_row(int64_t b, int64_t h, int64_t i) const { return q + b * q_b + h * q_h + i * q_t; }
  const float* k_head(int64_t b, int64_t h) const { return k + b * k_b + h * k_h; }
  const float* v_head(int64_t b, int64_t h) const { return v + b * v_b + h * v_h; }
  const float* k_past_head(int64_t b, int64_t h) const { return k_past + b * kp_b + h * kp_h; }
  const float* v_past_head(int64_t b, int64_t h) const { return v_past + b * vp_b + h * vp_h; }
  // Element e of key j (cached keys first) of head (b, h).
  float key(int64_t b, int64_t h, int64_t j, int64_t e) const {
    return j < d.P ? k_past_head(b, h)[e * d.P + j] : k_head(b, h)[e * k_e + (j - d.P) * k_s];
  }
  // Value row j (cached values first) of head (b, h), dv contiguous.
  const float* value_row(int64_t b, int64_t h, int64_t j) const {
    return j < d.P ? v_past_head(b, h) + j * d.dv : v_head(b, h) + (j - d.P) * v_s;
  }
  // Row i of the mask (stride m_j along the keys), or null without a mask.
  const float* mask_row(int64_t b, int64_t h, int64_t i) const {
    return mask ? mask + b * m_b + h * m_h + i * m_i : nullptr;
  }
  float* out_row(int64_t b, int64_t h, int64_t i) const { return out + b * o_b + h * o_h + i * o_t; }
};

// The call of a codebook.Attention kernel context (shapes as its schema
// checked them). Inline: the CUDA kernel (backends/cuda/cuda_attention.cu)
// reads the same call, and its library does not link this one.
// `first` > 0: Q, Kt, V and the mask are inputs first .. first + 3 of a
// codebook.grad.AttentionGrad node (no cached keys, no output: c.out null).
inline AttentionCall attention_call(const KernelContext& ctx, size_t first = 0) {
  const AttentionLayout layout = attention_layout(ctx.node);
  // Contiguous element strides of a rank-4 tensor.
  auto strides_of = [](const Tensor& t, int64_t(&st)[4]) {
    int64_t stride = 1;
    for (int a = 3; a >= 0; --a) {
      st[a] = stride;
      stride *= t.dim(size_t(a));
    }
  };
  // Input i's logical dims and strides (Transpose(input, perm)), its head
  // offset applied to the base pointer; stride 0 along a broadcast dim.
  int64_t dims[3][4], strides[3][4];
  const float* base[3];
  const bool cached = first == 0;
  const Tensor* k_past =
      cached && ctx.inputs.size() > kAttentionPastKeysInput ? ctx.inputs[kAttentionPastKeysInput] : nullptr;
  const Tensor* v_past =
      cached && ctx.inputs.size() > kAttentionPastValuesInput ? ctx.inputs[kAttentionPastValuesInput] : nullptr;
  for (size_t i = 0; i < 3; ++i) {
    const Tensor& t = ctx.in(first + i);
    const AttentionLayout::Perm& perm = layout.perm(i);
    int64_t st[4];
    strides_of(t, st);
    for (size_t a = 0; a < 4; ++a) {
      dims[i][a] = t.dim(size_t(perm[a]));
      strides[i][a] = st[perm[a]];
    }
    base[i] = t.data<float>() + layout.head_offsets[i] * strides[i][1];
    if (layout.num_heads > 0 && !(dims[i][1] == 1 && layout.head_offsets[i] == 0)) {
      CB_CHECK(dims[i][1] >= layout.head_offsets[i] + layout.num_heads,
               ctx.node.describe() << ": input " << i << " has " << dims[i][1] << " heads, fewer than its offset "
                                   << layout.head_offsets[i] << " + num_heads " << layout.num_heads);
      dims[i][1] = layout.num_heads;
    }
    for (size_t a = 0; a < 2; ++a)
      if (dims[i][a] == 1) strides[i][a] = 0;
  }
  AttentionCall c;
  // Numpy broadcast of the three inputs' B and H (the schema checked they fit).
  auto broadcast = [&](size_t a) {
    int64_t n = 1;
    for (size_t i = 0; i < 3; ++i)
      if (dims[i][a] != 1) n = dims[i][a];
    if (k_past && k_past->defined() && k_past->dim(a) != 1) n = k_past->dim(a);
    if (v_past && v_past->defined() && v_past->dim(a) != 1) n = v_past->dim(a);
    return n;
  };
  c.d.B = broadcast(0);
  c.d.H = broadcast(1);
  c.d.T = dims[0][2];
  c.d.dh = dims[0][3];
  c.d.S = dims[1][3];
  c.d.dv = dims[2][3];
  if (k_past && k_past->defined()) {
    CB_CHECK(v_past && v_past->defined(), ctx.node.describe() << ": cached keys without cached values");
    const int64_t P = k_past->dim(3);
    CB_CHECK(k_past->dim(2) == c.d.dh && v_past->dim(2) == P && v_past->dim(3) == c.d.dv,
             ctx.node.describe() << ": cached keys " << dims_str(k_past->dims()) << " and values "
                                 << dims_str(v_past->dims()) << " do not fit head sizes " << c.d.dh << " and "
                                 << c.d.dv);
    c.d.P = P;
    c.d.S += P;
    c.k_past = k_past->data<float>();
    c.v_past = v_past->data<float>();
    c.kp_b = k_past->dim(0) == 1 ? 0 : k_past->dim(1) * c.d.dh * P;
    c.kp_h = k_past->dim(1) == 1 ? 0 : c.d.dh * P;
    c.vp_b = v_past->dim(0) == 1 ? 0 : v_past->dim(1) * P * c.d.dv;
    c.vp_h = v_past->dim(1) == 1 ? 0 : P * c.d.dv;
  }
  c.q = base[0];
  c.k = base[1];
  c.v = base[2];
  c.q_b = strides[0][0];
  c.q_h = strides[0][1];
  c.q_t = strides[0][2];
  c.k_b = strides[1][0];
  c.k_h = strides[1][1];
  c.k_e = strides[1][2];
  c.k_s = strides[1][3];
  c.v_b = strides[2][0];
  c.v_h = strides[2][1];
  c.v_s = strides[2][2];
  // The output is Transpose(out, out_perm): logical axis out_perm[a] is its axis a.
  if (first == 0) {
    Tensor& out = ctx.out(0);
    int64_t ost[4], ologic[4];
    strides_of(out, ost);
    for (size_t a = 0; a < 4; ++a) ologic[layout.out_perm[a]] = ost[a];
    c.out = out.data<float>();
    c.o_b = ologic[0];
    c.o_h = ologic[1];
    c.o_t = ologic[2];
  }
  const size_t mask_input = first + kAttentionMaskInput;
  const Tensor* mask = ctx.inputs.size() > mask_input ? ctx.inputs[mask_input] : nullptr;
  if (mask && mask->defined()) {
    c.mask = mask->data<float>();
    int64_t mdims[4] = {1, 1, 1, 1}, mst[4] = {0, 0, 0, 0};
    const int64_t r = int64_t(mask->rank());
    for (int64_t a = 0; a < r; ++a) mdims[4 - r + a] = mask->dim(size_t(a));
    int64_t stride = 1;
    for (int a = 3; a >= 0; --a) {
      mst[a] = mdims[a] == 1 ? 0 : stride;
      stride *= mdims[a];
    }
    c.m_b = mst[0];
    c.m_h = mst[1];
    c.m_i = mst[2];
    c.m_j = mst[3];
  }
  c.scale = ctx.node.attr_float("scale", 1.f);
  c.nan_to_zero = ctx.node.attr_int("nan_to_zero", 0) != 0;
  return c;
}

// dy and the outputs of one codebook.grad.AttentionGrad call (ir/ops/grad.h)
// as pointers and strides of their logical [B, H, ...] layouts, which follow
// the node's layout attributes: dy is in the forward output's layout
// (out_perm), each gradient in its input's (q_perm, k_perm, v_perm). Every
// output has the full (broadcast) B and H.
struct AttentionGradTensors {
  const float* dy = nullptr;  // rows of dv contiguous
  float* dq = nullptr;        // rows of dh contiguous
  float* dk = nullptr;        // element e of key j's gradient at e * dk_e + j * dk_s
  float* dv = nullptr;        // rows of dv contiguous
  int64_t dy_b = 0, dy_h = 0, dy_t = 0, dq_b = 0, dq_h = 0, dq_t = 0, dk_b = 0, dk_h = 0, dk_e = 0, dk_s = 0, dv_b = 0,
          dv_h = 0, dv_s = 0;

  const float* dy_row(int64_t b, int64_t h, int64_t i) const { return dy + b * dy_b + h * dy_h + i * dy_t; }
  float* dq_row(int64_t b, int64_t h, int64_t i) const { return dq + b * dq_b + h * dq_h + i * dq_t; }
  float* dk_head(int64_t b, int64_t h) const { return dk + b * dk_b + h * dk_h; }
  float* dv_row(int64_t b, int64_t h, int64_t j) const { return dv + b * dv_b + h * dv_h + j * dv_s; }
};

// The AttentionGrad call's tensors; checks that each has the logical dims
// of call c (a cb::Error naming the node otherwise).
inline AttentionGradTensors attention_grad_tensors(const KernelContext& ctx, const AttentionCall& c) {
  const AttentionLayout layout = attention_layout(ctx.node);
  const AttentionDims& d = c.d;
  // The logical strides of a rank-4 tensor t, whose axis a is logical axis
  // `axis_of[a]`, checked against the logical dims.
  auto logical = [&](const Tensor& t, const std::array<int64_t, 4>& axis_of, std::array<int64_t, 4> want,
                     const char* what) {
    std::array<int64_t, 4> st{}, dims{};
    CB_CHECK(t.rank() == 4, ctx.node.describe() << ": " << what << " has rank " << t.rank() << ", expected 4");
    int64_t stride = 1;
    for (int a = 3; a >= 0; --a) {
      st[size_t(axis_of[size_t(a)])] = stride;
      dims[size_t(axis_of[size_t(a)])] = t.dim(size_t(a));
      stride *= t.dim(size_t(a));
    }
    CB_CHECK(dims == want, ctx.node.describe()
                               << ": " << what << " " << dims_str(t.dims()) << " is not [" << want[0] << ", " << want[1]
                               << ", " << want[2] << ", " << want[3] << "] in its layout");
    return st;
  };
  // An input or output given as P with logical = Transpose(P, perm): P's
  // axis perm[a] is logical axis a.
  auto axes_of_perm = [](const AttentionLayout::Perm& perm) {
    std::array<int64_t, 4> axis_of{};
    for (size_t a = 0; a < 4; ++a) axis_of[size_t(perm[a])] = int64_t(a);
    return axis_of;
  };
  AttentionGradTensors t;
  // dy is the forward output's gradient: its axis a is logical axis out_perm[a].
  const Tensor& dy = ctx.in(0);
  const auto dy_st = logical(dy, layout.out_perm, {d.B, d.H, d.T, d.dv}, "dy");
  t.dy = dy.data<float>();
  t.dy_b = dy_st[0], t.dy_h = dy_st[1], t.dy_t = dy_st[2];
  const auto q_st = logical(ctx.out(0), axes_of_perm(layout.q_perm), {d.B, d.H, d.T, d.dh}, "dQ");
  t.dq = ctx.out(0).data<float>();
  t.dq_b = q_st[0], t.dq_h = q_st[1], t.dq_t = q_st[2];
  const auto k_st = logical(ctx.out(1), axes_of_perm(layout.k_perm), {d.B, d.H, d.dh, d.S}, "dKt");
  t.dk = ctx.out(1).data<float>();
  t.dk_b = k_st[0], t.dk_h = k_st[1], t.dk_e = k_st[2], t.dk_s = k_st[3];
  const auto v_st = logical(ctx.out(2), axes_of_perm(layout.v_perm), {d.B, d.H, d.S, d.dv}, "dV");
  t.dv = ctx.out(2).data<float>();
  t.dv_b = v_st[0], t.dv_h = v_st[1], t.dv_s = v_st[2];
  return t;
}

// The keys [lo, hi) of a mask row (entries `stride` apart; null: no mask)
// from the first to the last whose entry is above kAttentionMasked; lo ==
// hi when every key is masked. Keys outside it, and masked keys inside,
// have probability exactly 0 (ir/attention.h), so kernels may skip them.
struct LiveKeys {
  int64_t lo = 0, hi = 0;
};
inline LiveKeys live_keys(const float* m, int64_t stride, int64_t S) {
  if (!m) return {0, S};
  int64_t lo = 0, hi = S;
  while (lo < S && !(m[lo * stride] > kAttentionMasked)) ++lo;
  while (hi > lo && !(m[(hi - 1) * stride] > kAttentionMasked)) --hi;
  return {lo, hi};
}

// Row i of head (b, h)'s mask, contiguous along the keys: as it is, or (a
// mask broadcast along the keys) copied into `copy` (d.S floats).
inline const float* contiguous_mask_row(const AttentionCall& c, int64_t b, int64_t h, int64_t i, float* copy) {
  const float* m = c.mask_row(b, h, i);
  if (!m || c.m_j == 1) return m;
  for (int64_t j = 0; j < c.d.S; ++j) copy[j] = m[j * c.m_j];
  return copy;
}

// p[j] = Softmax_j(scale q.k_j + mask_ij) for query row i, in double, as
// ONNX's Softmax on the unfused graph's f32 scores (a row of -inf or with a
// NaN gives NaN probabilities; nan_to_zero makes those 0). p has d.S entries.
void attention_probabilities_reference(const AttentionCall& c, int64_t b, int64_t h, int64_t i, double* p);

// out_row = Softmax_j(scale q.k_j + mask_ij) V for query row i, in double,
// as ONNX's Softmax (a row of -inf or with a NaN gives NaN probabilities;
// nan_to_zero makes those 0).
void attention_row_reference(const AttentionCall& c, int64_t b, int64_t h, int64_t i, float* out_row);

// The gradients of one (b, h) of a codebook.Attention call (the reference of
// codebook.grad.AttentionGrad, ir/ops/grad.h), in double: reads t's dy, writes
// its dQ, dKt and dV of that head.
void attention_grad_head_reference(const AttentionCall& c, const AttentionGradTensors& t, int64_t b, int64_t h);

// Registers codebook.Attention and codebook.grad.AttentionGrad in the
// reference backend's table.
void register_reference_attention(KernelTable& t);

}  // namespace cb
