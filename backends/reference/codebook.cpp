// Reference kernel of codebook.Codebook (contract in ir/codebook.h): the
// oracle the fast CPU kernel is tested against. It follows the contract line
// by line for every token and group member: LayerNorm, the score of every
// code, a full stable ranking, the Mode A / Mode B interventions, the forced
// codes, then the mean of the selected rows. Sums are taken in double.
#include "ir/codebook.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "backends/reference/reference_backend.h"

namespace cb {

void register_reference_codebook(KernelTable& t);

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The similarity of u to one code (ir/codebook.h): cosine-ranking inner
// product (a zero code scores 0) or minus the Euclidean distance.
double similarity(const std::vector<double>& u, const float* code, CodebookMetric metric) {
  if (metric == CodebookMetric::inner_product) {
    double dot = 0, norm2 = 0;
    for (size_t i = 0; i < u.size(); ++i) {
      dot += u[i] * code[i];
      norm2 += double(code[i]) * code[i];
    }
    return norm2 == 0 ? 0.0 : dot / std::sqrt(norm2);
  }
  double dist2 = 0;
  for (size_t i = 0; i < u.size(); ++i) dist2 += (u[i] - code[i]) * (u[i] - code[i]);
  return -std::sqrt(dist2);
}

void codebook_kernel(KernelContext& ctx) {
  const Node& node = ctx.node;
  const Tensor& x = ctx.in(0);
  const Tensor& codes = ctx.in(1);
  const Tensor& ln_scale = ctx.in(2);
  const Tensor& ln_bias = ctx.in(3);
  CB_CHECK(x.rank() == 3 && codes.rank() == 3, node.describe() << ": x " << dims_str(x.dims()) << " and codes "
                                                               << dims_str(codes.dims()) << " must have rank 3");
  const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
  const int64_t G = codes.dim(0), K = codes.dim(1), Dg = codes.dim(2);
  CB_CHECK(G * Dg == D && ln_scale.numel() == G * Dg && ln_bias.numel() == G * Dg,
           node.describe() << ": x " << dims_str(x.dims()) << ", codes " << dims_str(codes.dims()) << ", ln_scale "
                           << dims_str(ln_scale.dims()) << " and ln_bias " << dims_str(ln_bias.dims())
                           << " do not agree on [G, D/G]");
  const CodebookAttrs a = CodebookAttrs::from_node(node, G, K);
  const int64_t k = a.k;

  Tensor* ids_out = ctx.outputs.size() > 1 ? ctx.outputs[1] : nullptr;
  Tensor* scores_out = ctx.outputs.size() > 2 ? ctx.outputs[2] : nullptr;
  float* y = ctx.out(0).data<float>();

  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t g = 0; g < G; ++g) {
        const int64_t token = b * T + t;
        const float* xg = x.data<float>() + token * D + g * Dg;
        const float* Cg = codes.data<float>() + g * K * Dg;
        std::vector<double> u =
            codebook_layer_norm(xg, ln_scale.data<float>() + g * Dg, ln_bias.data<float>() + g * Dg, Dg, a.epsilon);

        // What applies at (g, t).
        std::vector<bool> ablated(static_cast<size_t>(K), false);
        for (auto& r : a.ablate)
          if (group_matches(r.group, g) && position_matches(r.position, t, T)) ablated[size_t(r.code)] = true;
        int64_t m = 0;
        for (auto& r : a.disable_topk)
          if (group_matches(r.group, g) && position_matches(r.position, t, T)) m = std::max(m, r.m);

        std::vector<double> score(static_cast<size_t>(K));
        for (int64_t c = 0; c < K; ++c) score[size_t(c)] = similarity(u, Cg + c * Dg, a.metric);

        // Ranking: best first, ties to the lower code id (stable sort of ids
        // in code order). Mode A ranks ablated codes last (score -inf).
        std::vector<double> rank_score = score;
        if (a.keep_k_codes)
          for (int64_t c = 0; c < K; ++c)
            if (ablated[size_t(c)]) rank_score[size_t(c)] = -std::numeric_limits<double>::infinity();
        std::vector<int64_t> order(static_cast<size_t>(K));
        std::iota(order.begin(), order.end(), int64_t(0));
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t p, int64_t q) { return rank_score[size_t(p)] > rank_score[size_t(q)]; });

        std::vector<int64_t> ids(static_cast<size_t>(k));
        if (a.keep_k_codes) {
          // Mode A: ranks m .. m+k-1 of the top k+m.
          for (int64_t j = 0; j < k; ++j) ids[size_t(j)] = order[size_t(m + j)];
        } else {
          // Mode B: plain top-k, then block ablated codes and ranks < m.
          for (int64_t j = 0; j < k; ++j) {
            int64_t c = order[size_t(j)];
            ids[size_t(j)] = (ablated[size_t(c)] || j < m) ? -1 : c;
          }
        }
        for (auto& r : a.force)
          if (group_matches(r.group, g) && position_matches(r.position, t, T))
            ids[size_t(r.slot < 0 ? r.slot + k : r.slot)] = r.code;

        // y_g = (1/k) * sum of the selected rows; blocked slots add nothing.
        float* yg = y + token * D + g * Dg;
        for (int64_t i = 0; i < Dg; ++i) {
          double sum = 0;
          for (int64_t j = 0; j < k; ++j)
            if (ids[size_t(j)] != -1) sum += Cg[ids[size_t(j)] * Dg + i];
          yg[i] = float(sum / double(k));
        }
        const int64_t slot0 = (token * G + g) * k;
        for (int64_t j = 0; j < k; ++j) {
          int64_t c = ids[size_t(j)];
          if (ids_out) ids_out->data<int64_t>()[slot0 + j] = c;
          if (scores_out) scores_out->data<float>()[slot0 + j] = c == -1 ? kNegInf : float(score[size_t(c)]);
        }
      }
}

}  // namespace

void register_reference_codebook(KernelTable& t) { t.add(kCodebookOp, codebook_kernel, kCodebookDomain); }

}  // namespace cb
