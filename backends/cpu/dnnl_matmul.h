// oneDNN-backed MatMul and Gemm kernels for the CPU backend.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Null when oneDNN cannot serve this node (e.g. integer dtypes); the caller
// then falls back to the reference kernel.
std::unique_ptr<Kernel> make_dnnl_matmul_kernel(const Node& node);
std::unique_ptr<Kernel> make_dnnl_gemm_kernel(const Node& node);

}  // namespace cb
