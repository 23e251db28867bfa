// Control-flow kernels (If, Loop). They run their subgraphs as nested
// Executables on the same backend, so they live in the runtime rather than in
// a backend; subgraphs read values of enclosing graphs through
// KernelContext::outer_values.
#pragma once
#include <memory>

#include "backends/backend.h"
#include "runtime/executable.h"

namespace cb {

bool is_control_flow_op(const Node& node);
std::unique_ptr<Kernel> make_control_flow_kernel(const Node& node, const Backend& backend, const CompileOptions& opts);

}  // namespace cb
