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
void register_reference_optim(KernelTable& t);

// The sizes of a codebook.grad.CodebookGrad node's inputs (dy, x, codes,
// ln_scale, ln_bias, ids), checked to agree; throws cb::Error naming the node.
// Shared by the reference and CPU kernels.
struct CodebookGradDims {
  int64_t B, T, D, G, K, Dg, k;
};
CodebookGradDims codebook_grad_dims(const KernelContext& ctx);  // codebook.train (ir/ops/optim.h)

}  // namespace cb
