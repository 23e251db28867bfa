// The codebook operator: the contract every part of the system shares (the
// schema in ir/ops/codebook.cpp, the reference and fast kernels, the
// insertion, intervention and lowering passes). docs/codebooks.md ("The
// operator codebook.Codebook") is the user-facing version of this comment.
//
//   codebook.Codebook(x, codes, ln_scale, ln_bias) -> (y, ids?, scores?)
//
//   x         float32 [B, T, D]   activations at one site (T = sequence axis)
//   codes     float32 [G, K, D/G] G codebooks (group members) of K codes each
//   ln_scale  float32 [G, D/G]    LayerNorm affine of each member
//   ln_bias   float32 [G, D/G]
//   y         float32 [B, T, D]
//   ids       int64   [B, T, G, k] selected codes, slot 0 = most similar; -1 = blocked slot
//   scores    float32 [B, T, G, k] similarity of each selected code (-inf for -1)
//
// Per token t and member g (chunk x_g = x[t, g*D/G : (g+1)*D/G]):
//   u = LayerNorm(x_g) * ln_scale[g] + ln_bias[g]   (biased variance, `epsilon`)
//   score(c) = u . C_c / |C_c|     metric "inner_product" (cosine ranking;
//                                  a zero code scores 0)
//            = -|u - C_c|          metric "euclidean"
//   ids = the k best codes by score, ties to the lower code id;
//   y_g = (1/k) * sum over slots j with ids[j] != -1 of C[ids[j]]
// so a blocked slot contributes zero and the divisor stays k.
//
// Interventions live in attributes (absent = none). Every record names a
// member g (or kAll) and, where it has one, a sequence position p (or kAll;
// negative p counts from the end like Python; positions outside [-T, T) of
// the current call match nothing):
//   ablate        (g, p, code) triples: the code is ablated at (g, p).
//   disable_topk  (g, p, m) triples: the m best codes are ablated at (g, p)
//                 (several records on one (g, p): the largest m counts).
//   keep_k_codes  1 (default, "skip"): ablated codes score -inf before top-k
//                 and top-(k+m) is taken, keeping ranks m..m+k-1 — the next
//                 best codes fill in. 0 ("zero"): plain top-k, then every slot
//                 holding an ablated code or with rank < m becomes -1.
//   force         (g, p, slot, code) quads, applied after selection in order:
//                 ids[slot] = code (slot < 0 counts from k; code -1 blocks the
//                 slot). Forcing all k slots makes y the mean of the forced codes.
// A graph whose codebook nodes carry none of these attributes is the plain
// compiled model.
//
// Training: the attribute `loss` (base | aeloss (default) | fullaeloss[-β] |
// vqvae[-β]) selects the backward (ir/ops/grad.h, passes/gradients/codebook.cpp,
// op codebook.grad.CodebookGrad); it is per node, not process-global as in
// the original (docs/original.md#codebook-loss-modes-backward).
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

inline constexpr const char* kCodebookDomain = "codebook";
inline constexpr const char* kCodebookOp = "Codebook";
// "Every member" / "every position" in intervention records.
inline constexpr int64_t kAll = std::numeric_limits<int64_t>::min();

enum class CodebookMetric { inner_product, euclidean };

struct CodebookAblation {
  int64_t group = kAll, position = kAll, code = 0;
};
struct CodebookTopkBlock {
  int64_t group = kAll, position = kAll, m = 0;
};
struct CodebookForce {
  int64_t group = kAll, position = kAll, slot = -1, code = 0;
};

// The attributes of one Codebook node, parsed and checked.
struct CodebookAttrs {
  int64_t k = 1;
  CodebookMetric metric = CodebookMetric::inner_product;
  float epsilon = 1e-5f;
  bool keep_k_codes = true;
  std::vector<CodebookAblation> ablate;
  std::vector<CodebookTopkBlock> disable_topk;
  std::vector<CodebookForce> force;

  bool has_interventions() const { return !ablate.empty() || !disable_topk.empty() || !force.empty(); }
  // The largest m of any disable_topk record (how many extra ranks to keep).
  int64_t max_disable_topk() const;

  // Reads a node's attributes; throws cb::Error naming the node when one is
  // malformed. G and K (from the codes input) are checked when known (> 0).
  static CodebookAttrs from_node(const Node& n, int64_t G = -1, int64_t K = -1);
  // Writes these attributes onto a node, replacing the codebook ones it has;
  // empty intervention lists are not written.
  void to_node(Node& n) const;
};

const char* metric_name(CodebookMetric m);
CodebookMetric parse_metric(const std::string& s);  // throws on unknown names

bool is_codebook_node(const Node& n);

// Step 1 of the op for one member: u = LayerNorm(x) * scale + bias over its
// n values (biased variance, eps), in double (the reference kernel's oracle;
// `run --scores` recomputes ‖u‖ with it).
std::vector<double> codebook_layer_norm(const float* x, const float* scale, const float* bias, int64_t n, double eps);

// Python-style position match: does record position p (or kAll) select
// position t of a sequence of length T?
inline bool position_matches(int64_t p, int64_t t, int64_t T) { return p == kAll || p == t || (p < 0 && p + T == t); }
inline bool group_matches(int64_t rec, int64_t g) { return rec == kAll || rec == g; }

}  // namespace cb
