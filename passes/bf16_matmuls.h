// The bf16-matmuls pass (`--precision bf16`, docs/precision.md): marks every
// f32 product with a weight (Gemm, codebook.FusedMatMul, MatMul with a 2-D
// B) of the graph (not inside subgraphs) with precision = "bf16"
// (ir/precision.h): each then multiplies bf16 roundings of its factors with
// f32 accumulation, and everything else (LayerNorm, softmax, attention's
// batched products, the codebooks' scores, the residual stream) stays f32,
// like PyTorch's bf16 autocast for linear layers.
//
// It runs last on a graph about to be compiled (the inference pipeline, the
// training step), so it sees the fused matmuls, and never on a graph that
// is written out: a marked MatMul is not standard ONNX. On the CPU backend a
// marked node needs AVX512_BF16 (cpu_supports_bf16_matmuls()).
#pragma once
#include "passes/pass.h"

namespace cb {

class Bf16MatMulsPass : public Pass {
 public:
  std::string name() const override { return "bf16-matmuls"; }
  bool run(Graph& g) override;
  int marked() const { return marked_; }

 private:
  int marked_ = 0;
};

}  // namespace cb
