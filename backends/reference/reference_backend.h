// The reference backend: plain, single-threaded C++ for every op. It is the
// oracle that every other backend is tested against; clarity over speed.
#pragma once
#include "backends/backend.h"

namespace cb {

// The table of reference kernels (populated on first use).
const KernelTable& reference_kernels();

// Registration functions, one per kernel family (backends/reference/*.cpp).
void register_reference_elementwise(KernelTable& t);
void register_reference_tensor(KernelTable& t);
void register_reference_reduction(KernelTable& t);
void register_reference_nn(KernelTable& t);
void register_reference_codebook(KernelTable& t);  // codebook.Codebook
void register_reference_grad(KernelTable& t);      // codebook.grad (ir/ops/grad.h)
void register_reference_optim(KernelTable& t);     // codebook.train (ir/ops/optim.h)

}  // namespace cb
