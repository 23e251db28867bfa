// The scores of the codes `run --show-codes SITE --scores` prints, and their
// cosine similarity. The kernel's score of code c is u·C_c/‖C_c‖ (metric
// inner_product), with u = LayerNorm(x_g)·ln_scale[g] + ln_bias[g]: it scales
// with ‖u‖, so scores of different tokens are not comparable as they are.
// cos = score / ‖u‖ is; ‖u‖ is recomputed here from the site's tapped input
// and the codebook node's LayerNorm parameters (ir/codebook.h).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "passes/codebook_sites.h"

namespace cb::tools {

struct CodeScores {
  bool inner_product = true;   // euclidean otherwise: score = -‖u - C‖, no cosine
  Tensor scores;               // float32 [B, T, G, k] as the kernel reports them (-inf for a blocked slot)
  std::vector<double> u_norm;  // ‖u‖ per (b, t, g), row-major; inner_product only

  int64_t G() const { return scores.dim(2); }
  int64_t k() const { return scores.dim(3); }
  float score(int64_t bt, int64_t g, int64_t j) const { return scores.data<float>()[(bt * G() + g) * k() + j]; }
  // cos of slot j (inner_product only); 0 when ‖u‖ is 0.
  double cosine(int64_t bt, int64_t g, int64_t j) const;
};

// The scores of shown site `s` (a member site[g] gets its member alone,
// G = 1) from a run's outputs SITE.input and SITE.scores (--tap SITE gives
// them); `g` is the graph that ran (for the codebook node). Throws cb::Error
// naming --scores and the site when an output is missing.
CodeScores code_scores(const Graph& g, const SiteRef& s, const std::vector<std::string>& names,
                       const std::vector<Tensor>& outs);

// The header line saying what the numbers are, e.g. "score = u·C/‖C‖ (u: ...), cos = cosine similarity".
std::string scores_label(const CodeScores& sc);

// One slot as printed beside its code: "(3.412, cos 0.821)", "(-1.234)", or "(-)" for a blocked slot.
std::string score_text(const CodeScores& sc, int64_t bt, int64_t g, int64_t j);

// Row 0 as JSON arrays shaped like the codes [T][G][k]: scores, and cosines
// ("null" for a euclidean site); a blocked slot is null.
std::string json_scores(const CodeScores& sc);
std::string json_cosines(const CodeScores& sc);

}  // namespace cb::tools
