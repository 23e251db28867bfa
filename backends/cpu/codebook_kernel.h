// The fast CPU kernel of codebook.Codebook (contract in ir/codebook.h):
// a fused score-and-select sweep over the codebook that never materialises
// the [tokens x K] score matrix, parallel over (member, token block).
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

// Whether a codebook kernel created now ranks codes by bf16 scores. Its
// outputs are the same bits either way: bf16 scoring re-ranks its
// candidates with the f32 sweep's arithmetic (codebook_kernel.cpp). It
// needs AVX512_BF16 and is the default where VDPBF16PS outruns f32 FMAs
// (backends/cpu/bf16_dot_speed.h); CB_CODEBOOK_SCORING=f32 or =bf16 in the
// environment, read each time, overrides that (bf16 still needs the ISA).
bool cpu_codebook_scores_in_bf16();

// Registers codebook.Codebook in the CPU backend's table.
void register_cpu_codebook_kernels(KernelFactoryTable& t);

}  // namespace cb
