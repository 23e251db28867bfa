// One codebook.Attention call (ir/attention.h) as pointers and strides, and
// the reference computation of one query row: shared by the reference
// kernel (every row) and the CPU kernel (the rows its fast path cannot do
// exactly: every key masked, or NaN/inf scores).
#pragma once
#include <cstdint>

#include "backends/backend.h"
#include "ir/attention.h"

namespace cb {

struct AttentionCall {
  AttentionDims d;
  const float* q = nullptr;     // [.., T, dh] rows of Q
  const float* kt = nullptr;    // [.., dh, S]
  const float* v = nullptr;     // [.., S, dv]
  const float* mask = nullptr;  // null without a mask
  // Element strides of the B and H dims (0 where that input broadcasts).
  int64_t q_b = 0, q_h = 0, kt_b = 0, kt_h = 0, v_b = 0, v_h = 0;
  // The mask's strides for [B, H, T, S] (0 along broadcast dims).
  int64_t m_b = 0, m_h = 0, m_i = 0, m_j = 0;
  float scale = 1.f;
  bool nan_to_zero = false;
  float* out = nullptr;  // [B, H, T, dv]

  const float* q_row(int64_t b, int64_t h, int64_t i) const { return q + b * q_b + h * q_h + i * d.dh; }
  const float* kt_head(int64_t b, int64_t h) const { return kt + b * kt_b + h * kt_h; }
  const float* v_head(int64_t b, int64_t h) const { return v + b * v_b + h * v_h; }
  // Row i of the mask (stride m_j along the keys), or null without a mask.
  const float* mask_row(int64_t b, int64_t h, int64_t i) const {
    return mask ? mask + b * m_b + h * m_h + i * m_i : nullptr;
  }
  float* out_row(int64_t b, int64_t h, int64_t i) const { return out + ((b * d.H + h) * d.T + i) * d.dv; }
};

// The call of a codebook.Attention kernel context (shapes as its schema
// checked them). Inline: the CUDA kernel (backends/cuda/cuda_attention.cu)
// reads the same call, and its library does not link this one.
inline AttentionCall attention_call(const KernelContext& ctx) {
  const Tensor& q = ctx.in(0);
  const Tensor& kt = ctx.in(1);
  const Tensor& v = ctx.in(2);
  const Tensor* mask = ctx.inputs.size() > 3 ? ctx.inputs[3] : nullptr;
  Tensor& out = ctx.out(0);
  AttentionCall c;
  c.d.B = out.dim(0);
  c.d.H = out.dim(1);
  c.d.T = q.dim(2);
  c.d.dh = q.dim(3);
  c.d.S = kt.dim(3);
  c.d.dv = v.dim(3);
  c.q = q.data<float>();
  c.kt = kt.data<float>();
  c.v = v.data<float>();
  c.out = out.data<float>();
  // Strides of the leading [B, H] dims of a rank-4 input whose inner block is
  // `inner` elements; 0 where the dim is 1 (broadcast).
  auto lead = [](const Tensor& t, int64_t inner, int64_t& sb, int64_t& sh) {
    sh = t.dim(1) == 1 ? 0 : inner;
    sb = t.dim(0) == 1 ? 0 : t.dim(1) * inner;
  };
  lead(q, c.d.T * c.d.dh, c.q_b, c.q_h);
  lead(kt, c.d.dh * c.d.S, c.kt_b, c.kt_h);
  lead(v, c.d.S * c.d.dv, c.v_b, c.v_h);
  if (mask && mask->defined()) {
    c.mask = mask->data<float>();
    int64_t dims[4] = {1, 1, 1, 1}, strides[4] = {0, 0, 0, 0};
    const int64_t r = int64_t(mask->rank());
    for (int64_t a = 0; a < r; ++a) dims[4 - r + a] = mask->dim(size_t(a));
    int64_t stride = 1;
    for (int a = 3; a >= 0; --a) {
      strides[a] = dims[a] == 1 ? 0 : stride;
      stride *= dims[a];
    }
    c.m_b = strides[0];
    c.m_h = strides[1];
    c.m_i = strides[2];
    c.m_j = strides[3];
  }
  c.scale = ctx.node.attr_float("scale", 1.f);
  c.nan_to_zero = ctx.node.attr_int("nan_to_zero", 0) != 0;
  return c;
}

// out_row = Softmax_j(scale q.k_j + mask_ij) V for query row i, in double,
// as ONNX's Softmax (a row of -inf or with a NaN gives NaN probabilities;
// nan_to_zero makes those 0).
void attention_row_reference(const AttentionCall& c, int64_t b, int64_t h, int64_t i, float* out_row);

// Registers codebook.Attention in the reference backend's table.
void register_reference_attention(KernelTable& t);

}  // namespace cb
