// Fused optimizer ops (domain "codebook.train"): one parameter's whole update
// as one node, so a step reads and writes each parameter, gradient and state
// once instead of through ~15 elementwise nodes (each a full pass over
// memory: for GPT-2 small's 92M codebook floats that is the difference between
// a memory-bound second and a few hundred milliseconds). train/optimizer.cpp
// emits them; the formula is exactly the unfused one's, in float.
//
//   codebook.train.AdamW(p, g, m, v, lr, step[, clip]) -> (p', m', v')
//     attributes beta1, beta2, epsilon, weight_decay (floats)
//     lr, step, clip: f32 scalars (step 1-based; clip multiplies g)
//     g' = g * clip
//     m' = m * b1 + g' * (1 - b1);   v' = v * b2 + (g' * g') * (1 - b2)
//     p' = p * (1 - lr * wd) - (lr / (1 - b1^t)) * (m' / (sqrt(v') / sqrt(1 - b2^t) + eps))
//   (PyTorch's AdamW; the decay factor is skipped when wd = 0.)
#pragma once

namespace cb {

class OpRegistry;
inline constexpr const char* kTrainDomain = "codebook.train";
void register_optim_ops(OpRegistry& r);

}  // namespace cb
