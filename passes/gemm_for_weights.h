// Products by a weight matrix as Gemms, for training graphs: MatMul(A, W)
// with W a 2-D matrix, given transposed (Transpose(W), as the tied LM head of
// GPT-2 exports reads the embedding table) and/or followed by the Add of an
// [N] bias (GPT-NeoX exports' linear layers), becomes Gemm(A's rows, W,
// bias, transB), reshaped back to A's leading dims. A training step then
// neither copies W transposed (154 MB for GPT-2's table: constant folding
// leaves a copy that large to run time) nor multiplies by a transposed copy
// in the backward (Gemm's gradient reads W as it is), and adds the bias in
// the product's epilogue instead of another pass over the output. A plain
// MatMul by W (no transpose, no bias) is left as it is.
//
// The inference pipeline needs no such pass: codebook.FusedMatMul takes
// transB and the bias itself. Run on training graphs before autodiff
// (train/training_graph.cpp).
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Rewrites every such product of `g`; returns how many.
int gemm_for_weights(Graph& g);

class GemmForWeightsPass : public Pass {
 public:
  std::string name() const override { return "gemm-for-weights"; }
  bool run(Graph& g) override { return gemm_for_weights(g) > 0; }
};

}  // namespace cb
