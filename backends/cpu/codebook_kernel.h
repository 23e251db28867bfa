// The fast CPU kernel of codebook.Codebook (contract in ir/codebook.h):
// a fused score-and-select sweep over the codebook that never materialises
// the [tokens x K] score matrix, parallel over (member, token block).
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Registers codebook.Codebook in the CPU backend's table.
void register_cpu_codebook_kernels(KernelFactoryTable& t);

}  // namespace cb
