// The first CUDA compute kernels (docs/cuda.md), f32 only: Add/Sub/Mul/Div
// with numpy broadcasting, LayerNormalization and Softmax over the last axis,
// and MatMul by a 2-D right operand on cuBLAS (full fp32, no TF32). Every
// launch is queued on the backend's stream.
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
