// f32 -> bf16 conversion for the CPU backend's bf16 matmuls: the rounding of
// ir/precision.h (to nearest even, denormals to zero), so a converted factor
// has exactly the bits the reference backend multiplies. AVX512_BF16
// (VCVTNEPS2BF16) where the CPU has it, portable C++ otherwise; both give
// the same bits (tests/test_bf16_matmuls.cpp).
#pragma once
#include <cstdint>

namespace cb {

// dst[i] = bf16_round_bits(src[i]) for i in [0, n).
void convert_to_bf16(const float* src, uint16_t* dst, int64_t n);

// The same on up to `threads` threads of the pool, for large n.
void convert_to_bf16_parallel(const float* src, uint16_t* dst, int64_t n, int threads);

// dst[i] = bf16_round(src[i]): the rounding kept as an f32 value (for f32
// kernels multiplying bf16 factors), on up to `threads` threads.
void round_to_bf16_parallel(const float* src, float* dst, int64_t n, int threads);

}  // namespace cb
