// CPU kernels of reductions the training step spends time in: a
// ReduceSumSquare over every element of an f32 tensor (the optimizer's
// gradient norm, train/optimizer.cpp), threaded over fixed blocks; ReduceSum
// and ReduceMean over one block of axes (bias gradients, row sums), threaded
// over outputs with the reference's bits. Other reductions run the reference
// kernel.
#pragma once
#include "backends/backend.h"

namespace cb {

// Registers the reduction kernels in the CPU backend's table.
void register_cpu_reduce_kernels(KernelFactoryTable& t);

}  // namespace cb
