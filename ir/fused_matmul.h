// codebook.FusedMatMul: a matrix product with its epilogue, the one form
// that Gemm and MatMul (+ bias Add) (+ Gelu) take in inference graphs
// (passes/fuse_matmul_epilogue.h makes it; it never appears in a model file).
//
//   Y = act(A · op(B) + bias)
//
//   A     [..., M, K]  (rank >= 2; leading dims are batch dims, kept)
//   B     [K, N], or [N, K] with transB = 1 (always 2-D: a weight)
//   bias  [N], optional
//   act   attribute `activation`: "none" (default), "gelu_tanh" or "gelu_erf"
//         (ONNX Gelu with approximate = "tanh" / "none")
//   Y     [..., M, N]; every tensor f32
//
// Backends: the reference kernel (backends/reference/matmul.cpp) and the CPU
// backend's oneDNN kernel (backends/cpu/dnnl_matmul.cpp: bias and GELU as
// post-ops, a constant B packed once into oneDNN's preferred layout).
#pragma once
#include <cmath>
#include <string>

#include "ir/graph.h"

namespace cb {

inline constexpr const char* kFusedMatMulOp = "FusedMatMul";  // in kCodebookDomain ("codebook")

enum class MatMulActivation { none, gelu_tanh, gelu_erf };

// The node's `activation` attribute; throws cb::Error naming the node for an unknown one.
MatMulActivation matmul_activation(const Node& n);
const char* matmul_activation_name(MatMulActivation a);

// act(x) in f32, as the reference Gelu computes it (ONNX's formulas).
inline float matmul_activation_value(MatMulActivation a, float x) {
  switch (a) {
    case MatMulActivation::gelu_tanh:
      return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case MatMulActivation::gelu_erf: return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
    default: return x;
  }
}

class OpRegistry;
// Adds the schema (ir/ops/fused_matmul.cpp); called by OpRegistry::global().
void register_fused_matmul_op(OpRegistry& r);

}  // namespace cb
