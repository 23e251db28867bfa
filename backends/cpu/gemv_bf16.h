// The one-row product of precision bf16 (every decode step of generation):
// y = x W^T + bias with x and W rounded to bf16 (ir/precision.h), summed in
// f32. Decode is memory-bound, and bf16 weights are half the bytes of f32
// ones: the weights are packed once as bf16 rows [N][K] and streamed once
// per step. AVX512_BF16 (VDPBF16PS) where the CPU has it, portable C++
// otherwise; each y[n] is summed in one fixed order whatever the thread count.
#pragma once
#include <cstdint>

namespace cb {

// y[n] = bias[n] (0 without bias) + sum_k x[k] * w[n * K + k] for n in
// [n0, n1), x and w bf16 bits.
void gemv_bf16_rows(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int64_t K, int64_t n0,
                    int64_t n1);

}  // namespace cb
