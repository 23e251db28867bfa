// The fast CPU kernel of codebook.Attention (contract in ir/attention.h):
// flash-style, blocked over query rows and keys with an online softmax, so
// the [T x S] score and probability matrices never exist.
#pragma once
#include "backends/backend.h"

namespace cb {

// Registers codebook.Attention in the CPU backend's table.
void register_cpu_attention_kernels(KernelFactoryTable& t);

}  // namespace cb
