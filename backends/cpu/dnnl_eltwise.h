// oneDNN eltwise kernels for Sigmoid and LeakyRelu in f32: vectorised,
// within a few ulp of the reference.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Registers Sigmoid and LeakyRelu in the CPU backend's table.
void register_dnnl_eltwise_kernels(KernelFactoryTable& t);

}  // namespace cb
