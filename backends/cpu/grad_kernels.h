// Fast CPU kernels of the backward-pass ops (domain "codebook.grad",
// semantics in ir/ops/grad.h): SoftmaxGrad, GeluGrad, LayerNormalizationGrad,
// GatherGrad, SliceGrad and CodebookGrad, OpenMP-threaded over the
// KernelContext's num_threads. The reference kernels in
// backends/reference/grad.cpp are their oracle; inputs these kernels do not
// take (other float dtypes) go to them at run time.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// The kernel for a codebook.grad node; null for other nodes.
std::unique_ptr<Kernel> make_cpu_grad_kernel(const Node& node);

}  // namespace cb
