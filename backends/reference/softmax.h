// Numerically stable softmax / log-softmax along one axis, shared by the
// Softmax, LogSoftmax and SoftmaxCrossEntropyLoss reference kernels (and
// usable by other backends for f32). The last-axis f32 case is a tight loop
// over contiguous rows.
#pragma once
#include <cstdint>

#include "ir/tensor.h"

namespace cb {

// y = softmax(x) (or log_softmax when `log`) along `axis` (already normalised).
// x and y have the same float dtype and dims; y must not alias x.
void softmax_along_axis(const Tensor& x, Tensor& y, int64_t axis, bool log);

// One contiguous f32 row of n elements.
void softmax_row_f32(const float* x, float* y, int64_t n, bool log);

}  // namespace cb
