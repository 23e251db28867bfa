// The f32 row arithmetic of the reference LayerNormalization kernel
// (backends/reference/normalization.cpp), shared with the CPU backend's
// row-parallel kernel (backends/cpu/row_kernels.cpp), so both give the same
// bits.
#pragma once
#include <cstdint>

namespace cb {

struct LayerNormStats {
  double mean = 0, inv = 0;  // inv = 1 / sqrt(variance + eps), biased variance
};

// The mean and inverse deviation of one row of n floats, in double over
// vectorisable lanes (backends/reference/accumulate.h).
LayerNormStats layer_norm_stats_f32(const float* x, int64_t n, double eps);

// y[k] = (x[k] - mean) * inv * scale[k] + bias[k] in f32, for scale and
// bias covering exactly the normalized dims.
void layer_norm_affine_row_f32(const float* x, float* y, int64_t n, LayerNormStats s, const float* scale,
                               const float* bias);

}  // namespace cb
