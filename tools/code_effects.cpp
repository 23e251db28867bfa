#include "tools/code_effects.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "ir/codebook.h"
#include "passes/insert_codebooks.h"
#include "support/error.h"

namespace cb::tools {

namespace {

const Tensor& codes_of(const Node& n, const SiteRef& s) {
  const Value* v = n.input(1);
  CB_CHECK(v && v->constant && v->constant->dtype() == DType::f32 && v->constant->rank() == 3,
           s.site() << ": the codebook's codes are not a constant float32 [G, K, D/G] tensor");
  return *v->constant;
}

// The ids of the n largest values (or smallest, with `largest` false), ties to the lower id.
std::vector<TokenLogit> extreme(const std::vector<double>& v, int64_t n, bool largest) {
  std::vector<int64_t> ids(v.size());
  std::iota(ids.begin(), ids.end(), 0);
  const size_t m = std::min(size_t(std::max<int64_t>(n, 0)), ids.size());
  std::partial_sort(ids.begin(), ids.begin() + ptrdiff_t(m), ids.end(), [&](int64_t a, int64_t b) {
    double x = v[size_t(a)], y = v[size_t(b)];
    if (x != y) return largest ? x > y : x < y;
    return a < b;
  });
  std::vector<TokenLogit> out;
  for (size_t i = 0; i < m; ++i) out.push_back({ids[i], v[size_t(ids[i])]});
  return out;
}

}  // namespace

std::vector<SimilarCode> similar_codes(const Tensor& codes, int64_t member, int64_t code, int64_t n) {
  CB_CHECK(codes.dtype() == DType::f32 && codes.rank() == 3,
           "similar codes: the codes are not a float32 [G, K, D/G] tensor");
  const int64_t G = codes.dim(0), K = codes.dim(1), Dg = codes.dim(2);
  CB_CHECK(member >= 0 && member < G, "similar codes: member " << member << " out of range [0, " << G << ")");
  CB_CHECK(code >= 0 && code < K, "similar codes: code " << code << " out of range [0, " << K << ")");
  const float* c = codes.data<float>() + member * K * Dg;
  auto dot = [&](int64_t a, int64_t b) {
    double s = 0;
    for (int64_t d = 0; d < Dg; ++d) s += double(c[a * Dg + d]) * double(c[b * Dg + d]);
    return s;
  };
  const double self = std::sqrt(dot(code, code));
  std::vector<SimilarCode> all;
  all.reserve(size_t(K));
  for (int64_t j = 0; j < K; ++j) {
    if (j == code) continue;
    const double norm = self * std::sqrt(dot(j, j));
    all.push_back({j, norm > 0 ? dot(code, j) / norm : 0.0});
  }
  const size_t m = std::min(size_t(std::max<int64_t>(n, 0)), all.size());
  std::partial_sort(all.begin(), all.begin() + ptrdiff_t(m), all.end(), [](const SimilarCode& a, const SimilarCode& b) {
    return a.cosine != b.cosine ? a.cosine > b.cosine : a.code < b.code;
  });
  all.resize(m);
  return all;
}

CodeEffects::CodeEffects(Graph& g) : g_(g), anatomy_(analyze_model(g)) {}

const Node& CodeEffects::codebook(const SiteRef& s) const {
  CB_CHECK(s.is_codebook_site(), s.name() << " is an activation, not a codebook site");
  const Node* n = find_codebook_node(g_, s.site());
  CB_CHECK(n, s.site() << " has no codebook (compile the model with --at " << placement_name(s.placement) << " first)");
  return *n;
}

int64_t CodeEffects::member(const SiteRef& s) const {
  const int64_t G = codes_of(codebook(s), s).dim(0);
  if (s.group == kAll) {
    CB_CHECK(G == 1, s.site() << " has " << G << " codebooks; name one member, e.g. " << s.site() << "[0]");
    return 0;
  }
  CB_CHECK(s.group >= 0 && s.group < G, s.name() << ": member " << s.group << " out of range; " << s.site() << " has "
                                                 << G << (G == 1 ? " codebook" : " codebooks"));
  return s.group;
}

void CodeEffects::check_code(const SiteRef& s, int64_t code) const {
  const int64_t K = codes_of(codebook(s), s).dim(1);
  CB_CHECK(code >= 0 && code < K,
           s.name() << ": code " << code << " out of range; the codebook has " << K << " codes (0.." << K - 1 << ")");
}

std::vector<SimilarCode> CodeEffects::similar(const SiteRef& s, int64_t code, int64_t n) const {
  const int64_t g = member(s);
  check_code(s, code);
  return similar_codes(codes_of(codebook(s), s), g, code, n);
}

LogitEffect CodeEffects::logit_effect(const SiteRef& s, int64_t code, int64_t n) const {
  const int64_t g = member(s);
  check_code(s, code);
  const Tensor& codes = codes_of(codebook(s), s);
  const int64_t K = codes.dim(1), Dg = codes.dim(2), D = anatomy_.d_model;
  const float* c = codes.data<float>() + (g * K + code) * Dg;
  CB_CHECK(s.layer >= 0 && s.layer < int64_t(anatomy_.layers.size()),
           s.name() << ": layer " << s.layer << " does not exist");
  const LayerSites& layer = anatomy_.layers[size_t(s.layer)];

  LogitEffect e;
  // What the code writes into the residual stream.
  std::vector<double> write(static_cast<size_t>(D), 0.0);
  switch (s.placement) {
    case Placement::qkv:
      e.reason = s.name() +
                 ": a qkv code is part of the queries, keys and values, which reach the residual stream only through "
                 "the attention softmax, so it has no direct (linear) effect on the logits";
      return e;
    case Placement::mlp:
    case Placement::attn:
    case Placement::attn_plus_mlp:
    case Placement::transformer_block:
      for (int64_t d = 0; d < Dg; ++d) write[size_t(g * Dg + d)] = c[d];
      break;
    case Placement::attn_preproj:
    case Placement::mlp_mid: {
      // Through the output projection: the rows of its weight that the member's slice meets.
      const bool attn = s.placement == Placement::attn_preproj;
      std::optional<LinearWeight> w = linear_weight(attn ? layer.attn : layer.mlp);
      if (!w || w->out() != D) {
        e.reason = s.name() + ": the " + (attn ? "attention" : "MLP") +
                   " output projection has no constant float32 weight this tool can read";
        return e;
      }
      CB_CHECK(w->in() == codes.dim(0) * Dg, s.name() << ": the output projection reads " << w->in()
                                                      << " values, the codebook has " << codes.dim(0) * Dg);
      for (int64_t i = 0; i < Dg; ++i)
        for (int64_t o = 0; o < D; ++o) write[size_t(o)] += double(c[i]) * w->at(g * Dg + i, o);
      break;
    }
  }

  // Through the final LayerNorm's scale and the unembedding.
  std::optional<LinearWeight> unembed = linear_weight(anatomy_.logits);
  const Value* scale = anatomy_.final_norm ? anatomy_.final_norm->input(1) : nullptr;
  if (!unembed || !scale || !scale->constant || scale->constant->dtype() != DType::f32 ||
      scale->constant->numel() != D || unembed->in() != D) {
    e.reason = s.name() +
               ": the model has no final LayerNorm followed by an unembedding (a constant float32 lm_head) after "
               "its last layer";
    return e;
  }
  const float* gamma = scale->constant->data<float>();
  const int64_t V = unembed->out();
  std::vector<double> x(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d) x[size_t(d)] = write[size_t(d)] * double(gamma[d]);
  e.logits.assign(size_t(V), 0.0);
  // In the order the matrix is stored (a tied [vocab, D] table is read row by row).
  if (unembed->transposed) {
    for (int64_t v = 0; v < V; ++v)
      for (int64_t d = 0; d < D; ++d) e.logits[size_t(v)] += x[size_t(d)] * unembed->at(d, v);
  } else {
    for (int64_t d = 0; d < D; ++d)
      for (int64_t v = 0; v < V; ++v) e.logits[size_t(v)] += x[size_t(d)] * unembed->at(d, v);
  }
  e.available = true;
  e.write = std::move(write);
  e.promoted = extreme(e.logits, n, true);
  e.suppressed = extreme(e.logits, n, false);
  return e;
}

LogitEffect code_logit_effect(Graph& g, const SiteRef& s, int64_t code, int64_t n) {
  return CodeEffects(g).logit_effect(s, code, n);
}

}  // namespace cb::tools
