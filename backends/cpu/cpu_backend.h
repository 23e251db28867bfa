// The CPU backend: oneDNN for matrix products and a few eltwise ops, fast
// kernels of our own for the ops that dominate inference and training
// (elementwise, layout, backward, the codebook op, the fused optimizer), and
// the reference kernels for every other op. Each fast kernel is tested against
// the reference on random inputs (tests/test_op_harness.cpp).
#pragma once
#include "backends/backend.h"

namespace cb {

// The ops the CPU backend has kernels of its own for; the others run the
// reference kernel. Each kernel file registers its ops (backends/cpu/*.h).
const KernelFactoryTable& cpu_kernels();

}  // namespace cb
