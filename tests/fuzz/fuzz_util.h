// Shared by the fuzz harnesses (tests/fuzz/fuzz_*.cpp; docs/reliability.md#fuzzing).
//
// A harness may only fail in the ways the tool promises: a cb::Error with a
// message. Every other outcome (a crash, a sanitizer report, any other
// exception, a broken round trip) is a finding: libFuzzer stops and saves the
// input, and the replay test fails.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "support/error.h"

namespace cb::fuzz {

// Runs `body`; a cb::Error (the promised clear error) ends it quietly.
template <typename Body>
void expect_only_cb_errors(Body&& body) {
  try {
    body();
  } catch (const cb::Error&) {
  }
}

// An invariant the input broke: prints it and aborts, so libFuzzer keeps the input.
[[noreturn]] inline void broken(const std::string& what) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what.c_str());
  std::abort();
}

inline std::string to_string(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace cb::fuzz
