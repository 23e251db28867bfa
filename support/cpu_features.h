// Run-time CPU feature queries for the kernels that carry an AVX2 path next to
// a portable one and pick between them at run time. Each answer is computed
// once; on other architectures they are false.
//
// CB_MAX_CPU_ISA=portable in the environment makes every answer false, so the
// portable paths run (and are tested: tests/CMakeLists.txt runs the kernel
// tests both ways) on any machine, like oneDNN's ONEDNN_MAX_CPU_ISA.
#pragma once
#include <cstdlib>
#include <cstring>

namespace cb {

inline bool cpu_isa_capped_to_portable() {
  static const bool capped = [] {
    const char* v = std::getenv("CB_MAX_CPU_ISA");
    return v && std::strcmp(v, "portable") == 0;
  }();
  return capped;
}

inline bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = !cpu_isa_capped_to_portable() && __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

// AVX2 and FMA together (the register-tile kernels use both).
inline bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has =
      !cpu_isa_capped_to_portable() && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

}  // namespace cb
