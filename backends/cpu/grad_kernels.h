// Fast CPU kernels of the backward-pass ops (domain "codebook.grad",
// semantics in ir/ops/grad.h): SoftmaxGrad, GeluGrad, LayerNormalizationGrad,
// GatherGrad, SliceGrad and CodebookGrad, threaded on the pool
// (support/thread_pool.h) over the KernelContext's num_threads. The reference kernels in
// backends/reference/grad.cpp are their oracle; inputs these kernels do not
// take (other float dtypes) go to them at run time.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Registers the kernels above in the CPU backend's table.
void register_cpu_grad_kernels(KernelFactoryTable& t);

}  // namespace cb
