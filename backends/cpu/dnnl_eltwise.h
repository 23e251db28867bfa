// oneDNN eltwise kernels for the transcendental unary ops (Tanh, Exp, Gelu,
// Sigmoid, ...) in f32: vectorised, within a few ulp of the reference.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Null when oneDNN has no equivalent algorithm for this node.
std::unique_ptr<Kernel> make_dnnl_eltwise_kernel(const Node& node);

}  // namespace cb
