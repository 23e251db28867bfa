// Accumulation types for reference kernels: each storage type is summed,
// multiplied and compared in a wide type (double for floats, 64-bit integers
// for integers and bool), then rounded back once.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "ir/dtype.h"

namespace cb {

template <typename T>
constexpr bool is_float_storage =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

template <typename T>
using AccOf =
    std::conditional_t<is_float_storage<T>, double, std::conditional_t<std::is_unsigned_v<T>, uint64_t, int64_t>>;

template <typename T>
inline AccOf<T> load(T v) {
  if constexpr (is_float_storage<T>)
    return to_double(v);
  else
    return AccOf<T>(v);
}

template <typename T>
inline T store(AccOf<T> a) {
  if constexpr (is_float_storage<T>)
    return from_double<T>(double(a));
  else
    return T(a);
}

template <typename A>
inline bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>)
    return std::isnan(v);
  else
    return false;
}

}  // namespace cb

namespace cb {

// Sum of a contiguous f32 row in double, over 8 independent lanes so that the
// compiler can vectorise it (the lanes are added at the end).
inline double sum_row_f32(const float* x, int64_t n) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += double(x[i + j]);
  double s = 0;
  for (; i < n; ++i) s += double(x[i]);
  for (int j = 0; j < 8; ++j) s += lane[j];
  return s;
}

// Sum of squared differences from `mean`, as sum_row_f32.
inline double sum_sq_diff_row_f32(const float* x, int64_t n, double mean) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      double d = double(x[i + j]) - mean;
      lane[j] += d * d;
    }
  double s = 0;
  for (; i < n; ++i) s += (double(x[i]) - mean) * (double(x[i]) - mean);
  for (int j = 0; j < 8; ++j) s += lane[j];
  return s;
}

}  // namespace cb
