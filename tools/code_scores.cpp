#include "tools/code_scores.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "ir/codebook.h"
#include "passes/insert_codebooks.h"
#include "support/error.h"

namespace cb::tools {

namespace {

const Tensor& output_named(const std::vector<std::string>& names, const std::vector<Tensor>& outs,
                           const std::string& name, const SiteRef& s) {
  size_t i = size_t(std::find(names.begin(), names.end(), name) - names.begin());
  CB_CHECK(i < outs.size(), "--scores " << s.name() << ": the run has no output " << name);
  return outs[i];
}

const Tensor& constant_of(const Node& n, size_t input, const SiteRef& s) {
  const Value* v = n.input(input);
  CB_CHECK(v && v->constant, "--scores " << s.name() << ": the codebook's LayerNorm parameters are not constants");
  return *v->constant;
}

// The JSON number of a float (JSON has no infinities: null).
void json_number(std::ostringstream& o, double v) {
  if (std::isfinite(v))
    o << v;
  else
    o << "null";
}

// Row 0 as [T][G][k], each entry from `value(bt, g, j)`.
template <typename F>
std::string json_nested(const CodeScores& sc, F value) {
  std::ostringstream o;
  o.precision(7);
  o << "[";
  for (int64_t t = 0; t < sc.scores.dim(1); ++t) {
    o << (t ? ", [" : "[");
    for (int64_t g = 0; g < sc.G(); ++g) {
      o << (g ? ", [" : "[");
      for (int64_t j = 0; j < sc.k(); ++j) {
        o << (j ? ", " : "");
        json_number(o, value(t, g, j));
      }
      o << "]";
    }
    o << "]";
  }
  return o.str() + "]";
}

}  // namespace

double CodeScores::cosine(int64_t bt, int64_t g, int64_t j) const {
  double n = u_norm[size_t(bt * G() + g)];
  return n > 0 ? score(bt, g, j) / n : 0.0;
}

CodeScores code_scores(const Graph& graph, const SiteRef& s, const std::vector<std::string>& names,
                       const std::vector<Tensor>& outs) {
  const Node* n = find_codebook_node(graph, s.site());
  CB_CHECK(n, "--scores " << s.name() << ": no codebook at " << s.site());
  CodebookAttrs attrs = CodebookAttrs::from_node(*n);
  const Tensor& all = output_named(names, outs, s.site() + ".scores", s);
  const Tensor& x = output_named(names, outs, s.site() + ".input", s);
  const int64_t B = all.dim(0), T = all.dim(1), G = all.dim(2), k = all.dim(3), D = x.dim(2), Dg = D / G;
  const int64_t g0 = s.group == kAll ? 0 : s.group, Gs = s.group == kAll ? G : 1;

  CodeScores sc;
  sc.inner_product = attrs.metric == CodebookMetric::inner_product;
  sc.scores = Tensor::empty(DType::f32, {B, T, Gs, k});
  for (int64_t bt = 0; bt < B * T; ++bt)
    std::copy_n(all.data<float>() + (bt * G + g0) * k, Gs * k, sc.scores.data<float>() + bt * Gs * k);
  if (!sc.inner_product) return sc;

  // ‖u‖ with u = LayerNorm(x_g) * ln_scale[g] + ln_bias[g], biased variance, as the kernels compute it.
  const float* scale = constant_of(*n, 2, s).data<float>();
  const float* bias = constant_of(*n, 3, s).data<float>();
  sc.u_norm.resize(size_t(B * T * Gs));
  for (int64_t bt = 0; bt < B * T; ++bt)
    for (int64_t m = 0; m < Gs; ++m) {
      const int64_t g = g0 + m;
      const float* xg = x.data<float>() + bt * D + g * Dg;
      double sq = 0;
      for (double u : codebook_layer_norm(xg, scale + g * Dg, bias + g * Dg, Dg, attrs.epsilon)) sq += u * u;
      sc.u_norm[size_t(bt * Gs + m)] = std::sqrt(sq);
    }
  return sc;
}

std::string scores_label(const CodeScores& sc) {
  return sc.inner_product
             ? "score = u·C/‖C‖ (u: LayerNorm'd input; scales with ‖u‖), cos = cosine similarity of u and C"
             : "score = −‖u − C‖ (u: LayerNorm'd input; metric euclidean, no cosine)";
}

std::string score_text(const CodeScores& sc, int64_t bt, int64_t g, int64_t j) {
  float v = sc.score(bt, g, j);
  if (!std::isfinite(v)) return "(-)";
  std::ostringstream o;
  o << std::fixed;
  o.precision(3);
  o << "(" << v;
  if (sc.inner_product) o << ", cos " << sc.cosine(bt, g, j);
  o << ")";
  return o.str();
}

std::string json_scores(const CodeScores& sc) {
  return json_nested(sc, [&](int64_t bt, int64_t g, int64_t j) { return double(sc.score(bt, g, j)); });
}

std::string json_cosines(const CodeScores& sc) {
  if (!sc.inner_product) return "null";
  return json_nested(sc, [&](int64_t bt, int64_t g, int64_t j) {
    return std::isfinite(sc.score(bt, g, j)) ? sc.cosine(bt, g, j) : NAN;
  });
}

}  // namespace cb::tools
