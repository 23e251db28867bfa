// The fast CPU kernel of codebook.Attention (contract in ir/attention.h):
// flash-style, blocked over query rows and keys with an online softmax, so
// the [T x S] score and probability matrices never exist.
#pragma once
#include "backends/backend.h"

namespace cb {

// Registers codebook.Attention in the CPU backend's table.
void register_cpu_attention_kernels(KernelFactoryTable& t);

// Registers its backward, codebook.grad.AttentionGrad
// (backends/cpu/attention_grad_kernel.cpp: one head per task, the
// probabilities recomputed in blocks of query rows).
void register_cpu_attention_grad_kernel(KernelFactoryTable& t);

}  // namespace cb
