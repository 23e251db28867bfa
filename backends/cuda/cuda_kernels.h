// The CUDA compute kernels (docs/cuda.md), f32: elementwise ops with numpy
// broadcasting, Where, Softmax and LayerNormalization over the last axis,
// MatMul / Gemm / codebook.FusedMatMul on cuBLAS (full fp32, no TF32),
// codebook.Attention, Transpose, Concat, Split, Gather and Cast. Every
// launch is queued on the backend's stream. The kernels live one concern
// per file (cuda_common.h lists them); this is their one dispatch table.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <memory>

#include "backends/backend.h"

namespace cb {

// Whether make_cuda_kernel serves this node (from its IR types and attributes).
bool cuda_kernel_supports(const Node& node);
// Null when cuda_kernel_supports is false.
std::unique_ptr<Kernel> make_cuda_kernel(const Node& node, cudaStream_t stream, cublasHandle_t cublas);

}  // namespace cb
