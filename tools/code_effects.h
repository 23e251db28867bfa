// What one code is, read off the weights without running the model
// (docs/analysis.md, "What a code writes; similar codes"):
//  - similar codes: the codes of the same codebook member whose vectors have
//    the highest cosine similarity with it (the original's
//    find_similar_codes is broken: spec §6.4);
//  - its direct logit effect, as Neuronpedia's feature dashboards show a
//    feature's: the vector w the code writes into the residual stream, times
//    the final LayerNorm's scale γ, times the unembedding W_U:
//        logit change of token v = Σ_d w[d] · γ[d] · W_U[d, v].
//    The final LayerNorm's normalisation (centering and division by the
//    standard deviation of the whole residual stream) and its bias are
//    ignored: they depend on the rest of the stream, not on the code.
//
// What a code writes, by placement (C the code vector, slice g of a D-wide
// vector for member g of a group codebook, the rest zero):
//    mlp, attn, attn_plus_mlp   C is added to the residual stream;
//    transformer_block          C is (the code's part of) the residual stream itself;
//    attn_preproj               C goes through the attention output projection: C · W_O[slice g, :];
//    mlp_mid                    C goes through the MLP output projection: C · W_out[slice g, :]
//                               (the activation is taken after the nonlinearity, so this is linear);
//    qkv                        not available: q, k and v reach the stream only through attention.
// The projections' biases are no part of a code's effect. A codebook's output
// is the MEAN of its k selected codes, so one selected code contributes C/k;
// the effect reported is that of the full vector C, whatever k is.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/codebook_sites.h"
#include "passes/transformer_anatomy.h"

namespace cb::tools {

struct SimilarCode {
  int64_t code = 0;
  double cosine = 0;
};

// The n codes of member `member` of `codes` (float32 [G, K, D/G], a Codebook
// node's codes) with the highest cosine similarity to code `code`, most
// similar first, ties to the lower id; the code itself is excluded, so at
// most K - 1 come back. A zero code has cosine 0 with every code. Throws
// cb::Error when member or code is out of range.
std::vector<SimilarCode> similar_codes(const Tensor& codes, int64_t member, int64_t code, int64_t n);

struct TokenLogit {
  int64_t token = 0;
  double logit = 0;
};

struct LogitEffect {
  bool available = false;
  std::string reason;                  // why not, when !available
  std::vector<double> write;           // what the code writes into the residual stream [D]
  std::vector<double> logits;          // the logit change of every token [vocab]
  std::vector<TokenLogit> promoted;    // the n largest, largest first (ties to the lower id)
  std::vector<TokenLogit> suppressed;  // the n smallest, smallest first (ties to the lower id)
};

// The parts of one model that code effects read, found once (from the
// graph's structure: passes/transformer_anatomy.h) and reused for any number
// of codes. The graph must outlive this object.
class CodeEffects {
 public:
  // `g`: a compiled model (analyze_model runs on it). Throws cb::Error when
  // its layers are not found; a model without a recognisable readout (final
  // LayerNorm -> unembedding) gives effects that are not available.
  explicit CodeEffects(Graph& g);

  const ModelAnatomy& anatomy() const { return anatomy_; }
  // The codebook node of s's site; throws cb::Error naming the site when it
  // has none.
  const Node& codebook(const SiteRef& s) const;
  // s's member: s.group, or 0 when s names no member of a single codebook.
  // Throws cb::Error naming the site when s names no member of a group
  // codebook, or one out of range.
  int64_t member(const SiteRef& s) const;
  // Throws cb::Error naming the site and code when `code` is out of range.
  void check_code(const SiteRef& s, int64_t code) const;

  std::vector<SimilarCode> similar(const SiteRef& s, int64_t code, int64_t n) const;
  LogitEffect logit_effect(const SiteRef& s, int64_t code, int64_t n) const;

 private:
  Graph& g_;
  ModelAnatomy anatomy_;
};

// One-shot form of CodeEffects(g).logit_effect(s, code, n).
LogitEffect code_logit_effect(Graph& g, const SiteRef& s, int64_t code, int64_t n);

}  // namespace cb::tools
