#include "tools/next_token.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "support/error.h"

namespace cb::tools {

std::vector<double> next_token_probs(const Tensor& logits, int64_t row, int64_t position) {
  CB_CHECK(logits.rank() == 3 && dtype_is_float(logits.dtype()),
           "expected logits [batch, seq, vocab], got " << dtype_name(logits.dtype()) << dims_str(logits.dims()));
  int64_t seq = logits.dim(1), vocab = logits.dim(2);
  if (position < 0) position += seq;
  CB_CHECK(row >= 0 && row < logits.dim(0) && position >= 0 && position < seq,
           "no logits at row " << row << ", position " << position);
  std::vector<double> p(static_cast<size_t>(vocab));
  int64_t base = (row * seq + position) * vocab;
  for (int64_t v = 0; v < vocab; ++v) p[size_t(v)] = logits.get_double(base + v);
  double mx = *std::max_element(p.begin(), p.end()), z = 0;
  for (double& x : p) z += (x = std::exp(x - mx));
  for (double& x : p) x /= z;
  return p;
}

double jensen_shannon(const std::vector<double>& p, const std::vector<double>& q) {
  CB_CHECK(p.size() == q.size(), "JSD of distributions over " << p.size() << " and " << q.size() << " tokens");
  double s = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    double m = 0.5 * (p[i] + q[i]);
    if (p[i] > 0) s += p[i] * std::log2(p[i] / m);
    if (q[i] > 0) s += q[i] * std::log2(q[i] / m);
  }
  return 0.5 * s;
}

double jensen_shannon_batchmean(const Tensor& a, const Tensor& b, int64_t position) {
  CB_CHECK(a.dims() == b.dims(), "cannot compare logits " << dims_str(a.dims()) << " and " << dims_str(b.dims()));
  double s = 0;
  for (int64_t r = 0; r < a.dim(0); ++r)
    s += jensen_shannon(next_token_probs(a, r, position), next_token_probs(b, r, position));
  return s / double(a.dim(0));
}

std::vector<double> jensen_shannon_per_position(const Tensor& a, const Tensor& b) {
  CB_CHECK(a.rank() == 3, "expected logits [batch, seq, vocab], got " << dims_str(a.dims()));
  std::vector<double> out;
  for (int64_t t = 0; t < a.dim(1); ++t) out.push_back(jensen_shannon_batchmean(a, b, t));
  return out;
}

std::vector<int64_t> top_tokens(const std::vector<double>& probs, int k) {
  std::vector<int64_t> idx(probs.size());
  std::iota(idx.begin(), idx.end(), 0);
  k = int(std::min<size_t>(size_t(std::max(k, 0)), probs.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return probs[size_t(a)] != probs[size_t(b)] ? probs[size_t(a)] > probs[size_t(b)] : a < b;
  });
  idx.resize(size_t(k));
  return idx;
}

}  // namespace cb::tools
