// Reference kernel of codebook.Attention (contract in ir/attention.h): every
// query row on its own, the whole score row in double, the oracle of the
// CPU kernel (backends/cpu/attention_kernel.cpp).
#include "backends/reference/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "backends/reference/reference_backend.h"
#include "ir/codebook.h"

namespace cb {

AttentionCall attention_call(const KernelContext& ctx) {
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

void attention_row_reference(const AttentionCall& c, int64_t b, int64_t h, int64_t i, float* out_row) {
  const AttentionDims& d = c.d;
  const float* q = c.q_row(b, h, i);
  const float* kt = c.kt_head(b, h);
  const float* v = c.v_head(b, h);
  const float* m = c.mask_row(b, h, i);
  // The scores as the unfused graph has them: f32 scale * dot, plus the mask.
  std::vector<double> x(static_cast<size_t>(d.S));
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < d.S; ++j) {
    double dot = 0;
    for (int64_t e = 0; e < d.dh; ++e) dot += double(q[e]) * kt[e * d.S + j];
    float s = c.scale * float(dot);
    if (m) s += m[j * c.m_j];
    x[size_t(j)] = s;
    if (s > mx) mx = s;
  }
  double sum = 0;
  for (double& e : x) {
    e = std::exp(e - mx);  // NaN for a row of -inf (mx = -inf) or at a NaN score
    sum += e;
  }
  std::vector<double> acc(static_cast<size_t>(d.dv), 0.0);
  for (int64_t j = 0; j < d.S; ++j) {
    double p = x[size_t(j)] / sum;
    if (c.nan_to_zero && std::isnan(p)) p = 0;
    if (p == 0) continue;
    for (int64_t e = 0; e < d.dv; ++e) acc[size_t(e)] += p * v[j * d.dv + e];
  }
  for (int64_t e = 0; e < d.dv; ++e) out_row[e] = float(acc[size_t(e)]);
}

namespace {

void attention_kernel(KernelContext& ctx) {
  const AttentionCall c = attention_call(ctx);
  for (int64_t b = 0; b < c.d.B; ++b)
    for (int64_t h = 0; h < c.d.H; ++h)
      for (int64_t i = 0; i < c.d.T; ++i) attention_row_reference(c, b, h, i, c.out_row(b, h, i));
}

}  // namespace

void register_reference_attention(KernelTable& t) { t.add(kAttentionOp, attention_kernel, kCodebookDomain); }

}  // namespace cb
