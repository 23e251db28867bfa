// Finding the transformer layers of an imported causal LM and the codebook
// sites in each of them, from the graph's structure (node names are only
// hints, used for the architecture label).
//
// The matcher works on canonicalised graphs of GPT-2, GPT-Neo and GPT-NeoX
// (parallel or sequential residual) from any exporter:
//  - a Linear is MatMul(x, W) [+ bias] or Gemm over a [-1, K] Reshape of x
//    (reshaped back), with a constant W;
//  - each attention Softmax over [.., T, T] scores is one layer; following
//    probs @ V through layout ops (Transpose/Reshape) reaches the merged heads
//    `attn_preproj`, consumed by the output-projection Linear whose output is
//    `attn`; following the scores back through Q and K (and V) reaches the
//    QKV Linear(s) and the LayerNorm feeding them, whose input is the block
//    input;
//  - the MLP is the Linear -> elementwise activation -> Linear chain whose
//    first Linear reads a LayerNorm of the block input (parallel residual) or
//    of block input + attn (sequential);
//  - the block output is the Add tree over {block input, attn, mlp}.
// Layers are numbered along the residual stream (block output L feeds
// block L+1), not by graph order or names.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

// The seven placements of the original codebook-features library.
enum class Placement { attn_preproj, attn, mlp, mlp_mid, qkv, transformer_block, attn_plus_mlp };
inline constexpr Placement kAllPlacements[] = {
    Placement::qkv,           Placement::attn_preproj,     Placement::attn, Placement::mlp_mid, Placement::mlp,
    Placement::attn_plus_mlp, Placement::transformer_block};
const char* placement_name(Placement p);
// Throws cb::Error listing the valid names.
Placement parse_placement(const std::string& s);

struct LayerSites {
  int64_t index = -1;
  std::string attention_kind;  // "global", "local" (banded mask) or "" when unknown
  const Node* softmax = nullptr;
  const Node* scores_matmul = nullptr;  // Q @ K^T behind the Softmax (K^T is its input 1, [B,H,dh,T])
  const Node* probs_matmul = nullptr;   // probs @ V after it (V is its input 1, [B,H,T,dh])
  Value* input = nullptr;               // residual stream entering the block [B,T,D]
  Value* attn_preproj = nullptr;        // merged heads before the output projection [B,T,D]
  Value* attn = nullptr;                // attention output projection (with bias) [B,T,D]
  // Fused QKV projection: one value [B,T,3D] (GPT-2 [q|k|v]; GPT-NeoX per
  // head [q_h|k_h|v_h]). Separate projections (GPT-Neo): q, k, v [B,T,D] each.
  std::vector<Value*> qkv;
  Value* mlp_mid = nullptr;        // MLP activation before its output projection [B,T,I]
  Value* mlp = nullptr;            // MLP output projection (with bias) [B,T,D]
  Value* output = nullptr;         // block output = input + attn + mlp [B,T,D]
  bool parallel_residual = false;  // mlp reads LN(input), not LN(input + attn)
};

struct ModelAnatomy {
  std::string architecture;  // "gpt2", "gpt_neo", "gpt_neox" (from names) or "unknown"
  int64_t d_model = -1;      // residual width
  int64_t num_heads = -1;    // from the attention scores [B, H, T, T]; -1 if not static
  int64_t d_mlp = -1;        // MLP hidden width
  std::vector<LayerSites> layers;
  // The readout after the last layer, when the graph has one: the final
  // LayerNormalization of the last block output (with a constant scale), and
  // the unembedding Linear reading it (possibly through Reshape/Identity/Cast)
  // whose output is the logits [B,T,vocab]. Null when not found (a graph cut
  // before its head); finding the layers does not depend on it.
  const Node* final_norm = nullptr;
  Value* logits = nullptr;
};

// The weight of a Linear (as defined at the top of this file) read in place:
// element (i, o) of the [in, out] matrix is alpha * matrix[i, o], or
// alpha * matrix[o, i] when `transposed` (a Gemm with transB = 1, e.g. an
// unembedding that reads a [vocab, D] embedding table). The tied or untied
// lm_head, the attention output projection and the MLP output projection of
// every exporter read this way.
struct LinearWeight {
  const Tensor* matrix = nullptr;  // f32, rank 2; owned by the graph
  bool transposed = false;
  float alpha = 1.f;
  int64_t in() const { return matrix->dim(transposed ? 1 : 0); }
  int64_t out() const { return matrix->dim(transposed ? 0 : 1); }
  float at(int64_t i, int64_t o) const {
    return alpha * matrix->data<float>()[transposed ? o * matrix->dim(1) + i : i * matrix->dim(1) + o];
  }
};
// The weight of the Linear whose output is `y` (e.g. LayerSites::attn, ::mlp,
// ModelAnatomy::logits); nullopt when y is not a Linear with a constant f32
// weight. Its bias, if any, is not part of it.
std::optional<LinearWeight> linear_weight(const Value* y);

// Makes the merged attention heads exist as a [B,T,D] value where an
// exporter flattens heads and tokens in one step (the dynamo exporter's GPT-2:
// Reshape([B,T,H,dh] -> [B*T,D]) straight into the output-projection Gemm).
// Such a Reshape becomes Reshape([B,T,H,dh] -> [B,T,D]) followed by the
// original Reshape, so find_anatomy has an attn_preproj value. Semantics are
// unchanged; idempotent; returns whether anything changed. Run it before
// find_anatomy on any graph that may come from such an exporter (`codebook
// inspect` does).
bool expose_merged_heads(Graph& g);

// "gpt2", "gpt_neo", "gpt_neox" from parameter/node names, else "unknown": a
// label for humans, never used for matching.
std::string architecture_from_names(const Graph& g);

// Finds every layer and its sites. Throws cb::Error naming what it could not
// match (e.g. "attention Softmax 'x': no MLP ... reads ...") when the graph is
// not a transformer it understands, or when the layers do not form one
// residual chain. Every site is checked to be a [B,T,width] value with a
// static width. The Value pointers belong to `g`.
ModelAnatomy find_anatomy(const Graph& g);

// find_anatomy for any model the tools handle: runs expose_merged_heads and
// the fuse-layer-norm pass (passes/fuse_layer_norm.h: exports at opsets
// below 17 spell LayerNorm out), and looks through codebook.Codebook nodes
// (as if each were the identity), so a compiled model has the anatomy of its
// plain model and its site values are the activations its codebooks read.
// The graph is left as it was (apart from those two rewrites).
ModelAnatomy analyze_model(Graph& g);

// A codebook on separate q, k, v is inserted as Concat(q, k, v) -> Codebook ->
// Split (passes/insert_codebooks.h); for such a codebook node, its Concat and
// Split nodes, else nulls.
struct SeparateQkvCodebook {
  Node* concat = nullptr;
  Node* split = nullptr;
};
SeparateQkvCodebook separate_qkv_codebook(const Graph& g, const Node& codebook);

// A site's value(s) in a layer: one value, except qkv of separate projections
// (then q, k, v in that order). transformer_block and attn_plus_mlp both give
// {output}: the block output is where a transformer_block codebook goes, and
// the insertion pass handles attn_plus_mlp itself (it snaps attn + mlp, so it
// rebuilds output from input, attn and mlp).
std::vector<Value*> site_values(const LayerSites& l, Placement p);
// The width D of a site's vector: d_mlp for mlp_mid, 3*d_model for qkv
// (separate q, k, v are quantised as one [q|k|v] vector), else d_model.
int64_t site_width(const ModelAnatomy& a, Placement p);

}  // namespace cb
