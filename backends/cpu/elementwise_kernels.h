// Fast CPU kernels for the f32 elementwise ops that dominate a training step
// (GELU, bias adds, scalings, optimizer arithmetic): binary Add, Sub, Mul,
// Div, Min, Max (numpy broadcasting), Pow with one exponent, Where, Sum of
// same-shape inputs, and unary Neg, Abs, Relu, Sqrt, Reciprocal, Exp, Tanh,
// Erf and Gelu (both forms; its gradient is codebook.grad.GeluGrad,
// grad_kernels.h). Vectorised loops; only big jobs are shared with up to
// KernelContext::num_threads - 1 helper threads, small ones run on the
// calling thread alone. Results do not depend on the thread count.
// Other dtypes and other cases (variadic Min/Max, broadcast Sum, tensor
// exponents) use the reference kernel at run time.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Registers the ops above in the CPU backend's table.
void register_cpu_elementwise_kernels(KernelFactoryTable& t);

}  // namespace cb
