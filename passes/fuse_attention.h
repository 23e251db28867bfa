// Attention fusion: replaces each attention's Q Kt MatMul, score scaling,
// masking, Softmax and probs V MatMul (8-10 nodes per layer in the exports
// of GPT-2, GPT-Neo and GPT-NeoX) by one codebook.Attention node
// (ir/attention.h), whose CPU kernel never materialises the [T x S] scores
// and skips the keys the mask removes (the causal triangle, local windows).
//
// For inference graphs only (autodiff has no gradient for codebook.Attention):
// the first pass of the inference pipeline (passes/inference_pipeline.h), run
// after codebook insertion, interventions and taps, just before compiling. A
// kv-cache graph's attention over [cache | new] (passes/kv_cache.h) fuses
// too: the cached keys and values become the op's inputs 4 and 5.
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

class FuseAttentionPass : public Pass {
 public:
  std::string name() const override { return "fuse-attention"; }
  bool run(Graph& g) override;
  // After run(): how many attentions were fused.
  int fused() const { return fused_; }

 private:
  int fused_ = 0;
};

// Runs the pass (through a PassManager) and returns how many it fused.
int fuse_attention(Graph& g);

}  // namespace cb
