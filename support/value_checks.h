// Range checks of numbers a user gives (command-line options, training-config
// keys), in one place so that every message reads the same:
// "NAME: must be > 0, got -1", NAME being the option ("--top") or the config
// key ("training_args.learning_rate"). Each returns the value it checked.
// Floating-point values must also be finite (NaN and infinity are refused).
#pragma once
#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include "support/error.h"

namespace cb {

namespace value_checks_detail {

template <typename T>
[[noreturn]] void fail(const std::string& name, const std::string& rule, T got) {
  std::ostringstream os;
  os << name << ": must be " << rule << ", got " << got;
  throw Error(os.str());
}

template <typename T>
std::string text(T v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

template <typename T>
void check_finite(T v, const std::string& name) {
  if constexpr (std::is_floating_point_v<T>)
    if (!std::isfinite(v)) fail(name, "a finite number", v);
}

}  // namespace value_checks_detail

// v > 0.
template <typename T>
T positive(T v, const std::string& name) {
  value_checks_detail::check_finite(v, name);
  if (!(v > T(0))) value_checks_detail::fail(name, "> 0", v);
  return v;
}

// v >= 0.
template <typename T>
T non_negative(T v, const std::string& name) {
  value_checks_detail::check_finite(v, name);
  if (!(v >= T(0))) value_checks_detail::fail(name, ">= 0", v);
  return v;
}

// v >= lo.
template <typename T>
T at_least(T v, T lo, const std::string& name) {
  value_checks_detail::check_finite(v, name);
  if (!(v >= lo)) value_checks_detail::fail(name, ">= " + value_checks_detail::text(lo), v);
  return v;
}

// lo <= v <= hi.
template <typename T>
T in_range(T v, T lo, T hi, const std::string& name) {
  value_checks_detail::check_finite(v, name);
  if (!(v >= lo && v <= hi))
    value_checks_detail::fail(name,
                              "between " + value_checks_detail::text(lo) + " and " + value_checks_detail::text(hi), v);
  return v;
}

// lo <= v < hi.
template <typename T>
T in_half_open_range(T v, T lo, T hi, const std::string& name) {
  value_checks_detail::check_finite(v, name);
  if (!(v >= lo && v < hi))
    value_checks_detail::fail(name, ">= " + value_checks_detail::text(lo) + " and < " + value_checks_detail::text(hi),
                              v);
  return v;
}

// v == -1 (meaning "all" or "the default", as `meaning` says) or v > 0.
template <typename T>
T minus_one_or_positive(T v, const std::string& meaning, const std::string& name) {
  if (!(v == T(-1) || v > T(0))) value_checks_detail::fail(name, "> 0, or -1 for " + meaning, v);
  return v;
}

}  // namespace cb
