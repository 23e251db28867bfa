// Row-parallel CPU kernels of ops whose reference computes each row on its
// own: Softmax and LogSoftmax over a contiguous last axis, and
// LayerNormalization with a scale and bias of the normalized dims (the
// transformer case, with or without its mean and inverse-deviation outputs).
// Each row runs the reference's own row arithmetic (backends/reference/
// softmax.h, normalization.h), so the outputs are the reference's bits for
// any thread count; other cases run the reference kernel.
#pragma once
#include "backends/backend.h"

namespace cb {

// Registers Softmax, LogSoftmax and LayerNormalization in the CPU backend's table.
void register_cpu_row_kernels(KernelFactoryTable& t);

}  // namespace cb
