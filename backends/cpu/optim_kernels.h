// CPU kernels of the fused optimizer ops (ir/ops/optim.h): the reference
// element update (backends/reference/optim.h) threaded over element ranges.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Registers the fused optimizer ops in the CPU backend's table.
void register_cpu_optim_kernels(KernelFactoryTable& t);

}  // namespace cb
