// MatMul epilogue fusion: Gemm, and MatMul by a 2-D B followed by a bias Add
// and a Gelu, become one codebook.FusedMatMul (ir/fused_matmul.h), so the CPU
// backend runs one oneDNN primitive (bias and GELU as post-ops, the weight
// prepacked) instead of a GEMM and two passes over its output.
//
// Inference only (passes/inference_pipeline.h): autodiff has no rule for the
// fused op, and a fused graph is no longer the model as exported.
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Rewrites `g` (not inside subgraphs). Returns how many FusedMatMul nodes it made.
int64_t fuse_matmul_epilogue(Graph& g);

// fuse_matmul_epilogue as a pass ("fuse-matmul-epilogue"); fused() counts
// the nodes the last run made.
class FuseMatMulEpiloguePass : public Pass {
 public:
  std::string name() const override { return "fuse-matmul-epilogue"; }
  bool run(Graph& g) override {
    fused_ = fuse_matmul_epilogue(g);
    return fused_ > 0;
  }
  int64_t fused() const { return fused_; }

 private:
  int64_t fused_ = 0;
};

}  // namespace cb
