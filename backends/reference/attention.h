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
// checked them).
AttentionCall attention_call(const KernelContext& ctx);

// out_row = Softmax_j(scale q.k_j + mask_ij) V for query row i, in double,
// as ONNX's Softmax (a row of -inf or with a NaN gives NaN probabilities;
// nan_to_zero makes those 0).
void attention_row_reference(const AttentionCall& c, int64_t b, int64_t h, int64_t i, float* out_row);

// Registers codebook.Attention in the reference backend's table.
void register_reference_attention(KernelTable& t);

}  // namespace cb
