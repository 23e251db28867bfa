// Softmax and log-softmax along an axis (see softmax.h). Rows are computed as
// exp(x - max) / sum with the sum accumulated in double; f32 rows use a
// vectorisable exp. Rows that are not contiguous are gathered into a scratch
// row first (f16/bf16 are computed in f32, f64 in f64).
#include "backends/reference/softmax.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/reference/accumulate.h"

namespace cb {
namespace {

// 8 floats as one value (GCC/Clang vector extensions: one AVX register where
// available, two SSE registers otherwise).
typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));

// x = exp(x) for 8 floats with Cephes' polynomial (about 1 ulp). Exactly 0 below
// -87.3 (so masked -inf logits give 0) and NaN stays NaN. Meant for x <= 0
// (x - max of the row); larger x would overflow the exponent.
inline void exp_nonpositive_v8(v8sf& x) {
  const float lo = -87.33654f;
  const v8si in_range = x >= lo;
  const v8sf xc = in_range ? x : v8sf{} + lo;
  const v8sf t = xc * 1.44269504088896341f + 0.5f;
  v8si n = __builtin_convertvector(t, v8si);  // truncates toward zero...
  n += __builtin_convertvector(n, v8sf) > t;  // ...so step down to floor(t)
  const v8sf nf = __builtin_convertvector(n, v8sf);
  const v8sf r = xc - nf * 0.693359375f + nf * 2.12194440e-4f;
  v8sf p = v8sf{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const v8si bits = (n + 127) << 23;  // 2^n
  v8sf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const v8sf y = in_range ? p * scale : v8sf{};
  x = x == x ? y : x;
}

// y[i] = exp(x[i] - shift) for a row.
void exp_shifted_row_f32(const float* x, float* y, int64_t n, float shift) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8sf v;
    std::memcpy(&v, x + i, sizeof v);
    v -= shift;
    exp_nonpositive_v8(v);
    std::memcpy(y + i, &v, sizeof v);
  }
  if (i < n) {
    v8sf v = {};
    std::memcpy(&v, x + i, size_t(n - i) * sizeof(float));
    v -= shift;
    exp_nonpositive_v8(v);
    std::memcpy(y + i, &v, size_t(n - i) * sizeof(float));
  }
}

float max_row_f32(const float* x, int64_t n) {
  float lane[8];
  for (float& l : lane) l = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
  float m = -std::numeric_limits<float>::infinity();
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  for (float l : lane) m = l > m ? l : m;
  return m;
}

// A NaN anywhere in the row makes the sum NaN and so every output NaN.
void softmax_row(const float* x, float* y, int64_t n, bool log) {
  const float mx = max_row_f32(x, n);
  exp_shifted_row_f32(x, y, n, mx);
  const double sum = sum_row_f32(y, n);
  if (log) {
    const float shift = mx + float(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - shift;
  } else {
    const float inv = float(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

void softmax_row(const double* x, double* y, int64_t n, bool log) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (y[i] = std::exp(x[i] - mx));
  if (log) {
    double shift = mx + std::log(sum);
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - shift;
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] /= sum;
  }
}

template <typename T>
void softmax_typed(const Tensor& x, Tensor& y, int64_t axis, bool log) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  int64_t outer = 1, n = 1, inner = 1;
  for (size_t i = 0; i < x.rank(); ++i) {
    if (int64_t(i) < axis)
      outer *= x.dim(i);
    else if (int64_t(i) == axis)
      n = x.dim(i);
    else
      inner *= x.dim(i);
  }
  const T* in = x.data<T>();
  T* out = y.data<T>();
  if constexpr (std::is_same_v<T, C>) {
    if (inner == 1) {
      for (int64_t o = 0; o < outer; ++o) softmax_row(in + o * n, out + o * n, n, log);
      return;
    }
  }
  std::vector<C> src(static_cast<size_t>(n)), dst(static_cast<size_t>(n));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const T* p = in + o * n * inner + i;
      for (int64_t k = 0; k < n; ++k) src[size_t(k)] = C(load(p[k * inner]));
      softmax_row(src.data(), dst.data(), n, log);
      T* q = out + o * n * inner + i;
      for (int64_t k = 0; k < n; ++k) q[k * inner] = from_double<T>(double(dst[size_t(k)]));
    }
}

}  // namespace

void softmax_row_f32(const float* x, float* y, int64_t n, bool log) { softmax_row(x, y, n, log); }

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
