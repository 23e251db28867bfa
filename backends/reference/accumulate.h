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
constexpr bool is_float_storage = std::is_same_v<T, float> || std::is_same_v<T, double> ||
                                  std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

template <typename T>
using AccOf = std::conditional_t<is_float_storage<T>, double,
                                 std::conditional_t<std::is_unsigned_v<T>, uint64_t, int64_t>>;

template <typename T> inline AccOf<T> load(T v) {
  if constexpr (is_float_storage<T>) return to_double(v);
  else return AccOf<T>(v);
}

template <typename T> inline T store(AccOf<T> a) {
  if constexpr (is_float_storage<T>) return from_double<T>(double(a));
  else return T(a);
}

template <typename A> inline bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return std::isnan(v);
  else return false;
}

}  // namespace cb
