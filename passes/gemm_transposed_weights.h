// MatMul(A, Transpose(W)), W a [N, K] matrix (the tied LM head of GPT-2
// exports: the embedding table, transposed), becomes Gemm(A's rows, W,
// transB = 1), reshaped back to A's leading dims: a training step then
// neither copies W transposed (154 MB for GPT-2's table: constant folding
// leaves a copy that large to run time) nor multiplies by a transposed copy
// in the backward (Gemm's gradient reads W as it is). The inference
// pipeline needs no such pass: codebook.FusedMatMul takes transB itself.
//
// Run on training graphs before autodiff (train/training_graph.cpp).
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Rewrites every such MatMul of `g`; returns how many.
int gemm_for_transposed_weights(Graph& g);

class GemmForTransposedWeightsPass : public Pass {
 public:
  std::string name() const override { return "gemm-transposed-weights"; }
  bool run(Graph& g) override { return gemm_for_transposed_weights(g) > 0; }
};

}  // namespace cb
