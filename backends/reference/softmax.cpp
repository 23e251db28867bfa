// Softmax and log-softmax along an axis (see softmax.h). Rows are computed as
// exp(x - max) / sum with the sum accumulated in double; rows that are not
// contiguous f32 are gathered into a scratch row first.
#include "backends/reference/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backends/reference/accumulate.h"

namespace cb {
namespace {

// C is float or double, the type the row is computed in.
template <typename C>
void softmax_row(const C* x, C* y, int64_t n, bool log) {
  C mx = -std::numeric_limits<C>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  if (log) {
    for (int64_t i = 0; i < n; ++i) sum += double(std::exp(x[i] - mx));
    C shift = mx + C(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - shift;
  } else {
    for (int64_t i = 0; i < n; ++i) {
      C e = std::exp(x[i] - mx);
      y[i] = e;
      sum += double(e);
    }
    C inv = C(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

template <typename T>
void softmax_typed(const Tensor& x, Tensor& y, int64_t axis, bool log) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  int64_t outer = 1, n = 1, inner = 1;
  for (size_t i = 0; i < x.rank(); ++i) {
    if (int64_t(i) < axis) outer *= x.dim(i);
    else if (int64_t(i) == axis) n = x.dim(i);
    else inner *= x.dim(i);
  }
  const T* in = x.data<T>();
  T* out = y.data<T>();
  if constexpr (std::is_same_v<T, C>) {
    if (inner == 1) {
      for (int64_t o = 0; o < outer; ++o) softmax_row<C>(in + o * n, out + o * n, n, log);
      return;
    }
  }
  std::vector<C> src(static_cast<size_t>(n)), dst(static_cast<size_t>(n));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T* p = in + o * n * inner + i;
      for (int64_t k = 0; k < n; ++k) src[size_t(k)] = C(load(p[k * inner]));
      softmax_row<C>(src.data(), dst.data(), n, log);
      T* q = out + o * n * inner + i;
      for (int64_t k = 0; k < n; ++k) q[k * inner] = from_double<T>(double(dst[size_t(k)]));
    }
}

}  // namespace

void softmax_row_f32(const float* x, float* y, int64_t n, bool log) { softmax_row<float>(x, y, n, log); }

void softmax_along_axis(const Tensor& x, Tensor& y, int64_t axis, bool log) {
  switch (x.dtype()) {
    case DType::f32: return softmax_typed<float>(x, y, axis, log);
    case DType::f64: return softmax_typed<double>(x, y, axis, log);
    case DType::f16: return softmax_typed<Half>(x, y, axis, log);
    case DType::bf16: return softmax_typed<BFloat16>(x, y, axis, log);
    default: CB_FAIL("softmax: unsupported dtype " << dtype_name(x.dtype()));
  }
}

}  // namespace cb
