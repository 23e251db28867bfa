// Reference kernels of codebook.Attention (contract in ir/attention.h): every
// query row on its own, the whole score row in double, the oracle of the
// CPU kernel (backends/cpu/attention_kernel.cpp); and of its backward,
// codebook.grad.AttentionGrad (ir/ops/grad.h), one head at a time in double,
// the oracle of backends/cpu/attention_grad_kernel.cpp.
#include "backends/reference/attention.h"

#include <cmath>
#include <limits>
#include <vector>

#include "backends/reference/reference_backend.h"
#include "ir/codebook.h"
#include "ir/ops/grad.h"

namespace cb {

void attention_probabilities_reference(const AttentionCall& c, int64_t b, int64_t h, int64_t i, double* p) {
  const AttentionDims& d = c.d;
  const float* q = c.q_row(b, h, i);
  const float* m = c.mask_row(b, h, i);
  // The scores as the unfused graph has them: f32 scale * dot, plus the mask.
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < d.S; ++j) {
    double dot = 0;
    for (int64_t e = 0; e < d.dh; ++e) dot += double(q[e]) * c.key(b, h, j, e);
    float s = c.scale * float(dot);
    if (m) s += m[j * c.m_j];
    p[j] = s;
    if (s > mx) mx = s;
  }
  double sum = 0;
  for (int64_t j = 0; j < d.S; ++j) {
    p[j] = std::exp(p[j] - mx);  // NaN for a row of -inf (mx = -inf) or at a NaN score
    sum += p[j];
  }
  for (int64_t j = 0; j < d.S; ++j) {
    p[j] /= sum;
    if (c.nan_to_zero && std::isnan(p[j])) p[j] = 0;
  }
}

void attention_row_reference(const AttentionCall& c, int64_t b, int64_t h, int64_t i, float* out_row) {
  const AttentionDims& d = c.d;
  std::vector<double> p(static_cast<size_t>(d.S));
  attention_probabilities_reference(c, b, h, i, p.data());
  std::vector<double> acc(static_cast<size_t>(d.dv), 0.0);
  for (int64_t j = 0; j < d.S; ++j) {
    if (p[size_t(j)] == 0) continue;
    const float* v = c.value_row(b, h, j);
    for (int64_t e = 0; e < d.dv; ++e) acc[size_t(e)] += p[size_t(j)] * v[e];
  }
  for (int64_t e = 0; e < d.dv; ++e) out_row[e] = float(acc[size_t(e)]);
}

void attention_grad_head_reference(const AttentionCall& c, const AttentionGradTensors& t, int64_t b, int64_t h) {
  const AttentionDims& d = c.d;
  const size_t T = size_t(d.T), S = size_t(d.S);
  // The forward's probabilities (f32 scores, Softmax in double), 0 where
  // nan_to_zero drops a NaN: keys of probability 0 pass no gradient.
  std::vector<double> p(T * S), ds(T * S, 0.0), gq(T * size_t(d.dh), 0.0), gk(S * size_t(d.dh), 0.0),
      gv(S * size_t(d.dv), 0.0);
  for (size_t i = 0; i < T; ++i) {
    double* x = &p[i * S];
    attention_probabilities_reference(c, b, h, int64_t(i), x);
    // dP_ij = dy_i . v_j; dS_ij = P_ij (dP_ij - sum_l P_il dP_il).
    const float* g = t.dy_row(b, h, int64_t(i));
    double dot_p = 0;
    for (size_t j = 0; j < S; ++j) {
      if (x[j] == 0) continue;
      const float* v = c.value_row(b, h, int64_t(j));
      double dp = 0;
      for (int64_t e = 0; e < d.dv; ++e) dp += double(g[e]) * v[e];
      ds[i * S + j] = dp;
      dot_p += x[j] * dp;
    }
    for (size_t j = 0; j < S; ++j) {
      if (x[j] == 0) continue;
      ds[i * S + j] = x[j] * (ds[i * S + j] - dot_p);
      for (int64_t e = 0; e < d.dv; ++e) gv[j * size_t(d.dv) + size_t(e)] += x[j] * g[e];
    }
  }
  for (size_t i = 0; i < T; ++i) {
    const float* q = c.q_row(b, h, int64_t(i));
    for (size_t j = 0; j < S; ++j) {
      const double g = double(c.scale) * ds[i * S + j];
      if (g == 0) continue;
      for (int64_t e = 0; e < d.dh; ++e) {
        gq[i * size_t(d.dh) + size_t(e)] += g * c.key(b, h, int64_t(j), e);
        gk[j * size_t(d.dh) + size_t(e)] += g * q[e];
      }
    }
  }
  for (size_t i = 0; i < T; ++i)
    for (int64_t e = 0; e < d.dh; ++e) t.dq_row(b, h, int64_t(i))[e] = float(gq[i * size_t(d.dh) + size_t(e)]);
  float* dk = t.dk_head(b, h);
  for (size_t j = 0; j < S; ++j)
    for (int64_t e = 0; e < d.dh; ++e) dk[e * t.dk_e + int64_t(j) * t.dk_s] = float(gk[j * size_t(d.dh) + size_t(e)]);
  for (size_t j = 0; j < S; ++j)
    for (int64_t e = 0; e < d.dv; ++e) t.dv_row(b, h, int64_t(j))[e] = float(gv[j * size_t(d.dv) + size_t(e)]);
}

namespace {

// codebook.grad.AttentionGrad(dy, Q, Kt, V, mask?) -> (dQ, dKt, dV), in the
// layouts of the node's attributes (ir/ops/grad.h).
void attention_grad_kernel(KernelContext& ctx) {
  const AttentionCall c = attention_call(ctx, 1);
  const AttentionGradTensors t = attention_grad_tensors(ctx, c);
  for (int64_t b = 0; b < c.d.B; ++b)
    for (int64_t h = 0; h < c.d.H; ++h) attention_grad_head_reference(c, t, b, h);
}

void attention_kernel(KernelContext& ctx) {
  const AttentionCall c = attention_call(ctx);
  for (int64_t b = 0; b < c.d.B; ++b)
    for (int64_t h = 0; h < c.d.H; ++h)
      for (int64_t i = 0; i < c.d.T; ++i) attention_row_reference(c, b, h, i, c.out_row(b, h, i));
}

}  // namespace

void register_reference_attention(KernelTable& t) {
  t.add(kAttentionOp, attention_kernel, kCodebookDomain);
  t.add(kAttentionGradOp, attention_grad_kernel, kGradDomain);
}

}  // namespace cb
