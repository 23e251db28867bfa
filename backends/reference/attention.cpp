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

void attention_row_reference(const AttentionCall& c, int64_t b, int64_t h, int64_t i, float* out_row) {
  const AttentionDims& d = c.d;
  const float* q = c.q_row(b, h, i);
  const float* m = c.mask_row(b, h, i);
  // The scores as the unfused graph has them: f32 scale * dot, plus the mask.
  std::vector<double> x(static_cast<size_t>(d.S));
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < d.S; ++j) {
    double dot = 0;
    for (int64_t e = 0; e < d.dh; ++e) dot += double(q[e]) * c.key(b, h, j, e);
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
    const float* v = c.value_row(b, h, j);
    for (int64_t e = 0; e < d.dv; ++e) acc[size_t(e)] += p * v[e];
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
