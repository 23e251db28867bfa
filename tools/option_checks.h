// The range checks of numeric command-line options, declared with the option
// they check:
//   ("top", po::value<int>()->default_value(5)->notifier(must_be_positive("--top")), ...)
// boost runs notifiers in po::notify (tools/options.h parse_command_line), so
// a bad value stops the command before it reads any file, with one message
// naming the option ("--top: must be > 0, got -3") and exit code 2. The
// wording is support/value_checks.h's, which the training config shares.
// docs/reliability.md lists every option's range.
#pragma once
#include <cstdint>
#include <string>

#include "support/thread_count.h"
#include "support/value_checks.h"

namespace cb::tools {

// Notifiers: each takes the option's name as the user writes it ("--top", "-n").
inline auto must_be_positive(std::string option) {
  return [option](const auto& v) { positive(v, option); };
}
inline auto must_be_non_negative(std::string option) {
  return [option](const auto& v) { non_negative(v, option); };
}
template <typename T>
auto must_be_in_range(T lo, T hi, std::string option) {
  return [lo, hi, option](const T& v) { in_range(v, lo, hi, option); };
}
template <typename T>
auto must_be_at_least(T lo, std::string option) {
  return [lo, option](const T& v) { at_least(v, lo, option); };
}
// -1 means `meaning` ("all", "the default"); otherwise > 0.
inline auto must_be_minus_one_or_positive(std::string meaning, std::string option) {
  return [meaning, option](const auto& v) { minus_one_or_positive(v, meaning, option); };
}
// A thread count: 1..max_threads() (support/thread_count.h), or 0 for all cores
// when `zero_is_default`.
inline auto must_be_thread_count(std::string option, bool zero_is_default) {
  return [option, zero_is_default](const auto& v) { checked_thread_count(int64_t(v), option, zero_is_default); };
}

}  // namespace cb::tools
