// oneDNN-backed MatMul and Gemm kernels for the CPU backend.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Registers MatMul and Gemm in the CPU backend's table. Inputs oneDNN does
// not take (e.g. integer dtypes) run the reference kernel at run time.
void register_dnnl_matmul_kernels(KernelFactoryTable& t);

}  // namespace cb
