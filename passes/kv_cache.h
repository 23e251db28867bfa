// The kv-cache pass: turns a causal LM (GPT-2, GPT-Neo with global and local
// attention, GPT-NeoX with rotary embeddings, from any exporter the anatomy
// understands) into a graph that processes only the new tokens of a sequence
// whose earlier keys and values are cached. One graph serves as the prefill
// (past_length 0) and as the decode step (one new token); docs/generation.md.
//
// New inputs and outputs (L = layer, B = batch, H = heads, dh = head size,
// C = the cache's capacity, N = new tokens):
//   past_length      i64 [1]             how many cached positions are valid
//   past.L.key       f32 [B, H, dh, C]   keys as the scores MatMul reads them
//                                        (transposed; after rotary for NeoX)
//   past.L.value     f32 [B, H, C, dh]
//   present.L.key    f32 [B, H, dh, N]   the new tokens' keys and values: the
//   present.L.value  f32 [B, H, N, dh]   caller writes them at past_length..
// Cache slots at or after past_length may hold anything finite; they are
// masked. The caller owns the cache and appends only the new columns, so no
// step copies the whole cache (tools/generate.h).
//
// Algorithm, per layer (found by the anatomy: passes/transformer_anatomy.h):
//  1. Attention over [cache | new]: scores = Concat(Q @ past_key, Q @ K^T_new)
//     along the key axis; out = probs[.., :C] @ past_value + probs[.., C:] @ V_new.
//  2. Masks: every non-constant value that the path from Q @ K^T to the
//     Softmax reads besides the scores (the causal mask, GPT-Neo's local band,
//     the padding mask, in whatever form the exporter built them) is
//     tabulated once: a copy of the graph computes it for a full sequence of
//     `context` tokens (batch 1, no padding); the graph then reads rows
//     past_length.. of that table, columns 0..C-1 (the cache) and
//     past_length..past_length+N-1 (the new keys). Masks depend on absolute
//     positions only, so this is exact, local windows included.
//  3. Cache slots >= past_length are masked just before the Softmax.
//  4. Positions: every Range(0, n, 1) of the original graph (the positions
//     GPT-Neo and models without a position_ids input make themselves, and
//     what feeds rotary tables) is offset by past_length; a position_ids
//     input is fed by the caller with past_length.. .
//  5. Dead code goes (the original mask computations), and graph inputs no
//     node reads any more (attention_mask) are dropped.
// Codebooks and their interventions are untouched: they run on the new
// tokens only, and their position records are relative to the new tokens
// (tools/generate.h remaps absolute positions).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

inline constexpr const char* kPastLengthInput = "past_length";
std::string past_key_name(int64_t layer);       // "past.L.key"
std::string past_value_name(int64_t layer);     // "past.L.value"
std::string present_key_name(int64_t layer);    // "present.L.key"
std::string present_value_name(int64_t layer);  // "present.L.value"

struct KvCacheOptions {
  // The longest sequence the mask tables cover; -1: the rows of the model's
  // learned position table (an error for rotary models, which have none).
  int64_t context = -1;
};

// The rows of the learned position table (a Gather of a constant [P, D]
// table by position_ids or an in-graph Range), or -1 when there is none.
int64_t position_table_rows(const Graph& g);

class KvCachePass : public Pass {
 public:
  explicit KvCachePass(KvCacheOptions o = {}) : opts_(o) {}
  std::string name() const override { return "kv-cache"; }
  bool run(Graph& g) override;

  // After run(): layers, heads, head size, the context the masks cover.
  int64_t num_layers() const { return layers_; }
  int64_t num_heads() const { return heads_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t context() const { return context_; }
  // How many distinct mask tables were made.
  int64_t mask_tables() const { return tables_; }

 private:
  KvCacheOptions opts_;
  int64_t layers_ = 0, heads_ = 0, head_dim_ = 0, context_ = 0, tables_ = 0;
};

}  // namespace cb
