// CPU kernels of the fused optimizer ops (ir/ops/optim.h): the reference
// element update (backends/reference/optim.h) threaded over element ranges.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// nullptr for nodes that are not fused optimizer ops.
std::unique_ptr<Kernel> make_cpu_optim_kernel(const Node& node);

}  // namespace cb
