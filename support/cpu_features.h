// Run-time CPU feature queries for the kernels that carry an AVX2 path next to
// a portable one and pick between them at run time. Each answer is computed
// once; on other architectures they are false.
#pragma once

namespace cb {

inline bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

// AVX2 and FMA together (the register-tile kernels use both).
inline bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
#else
  return false;
#endif
}

}  // namespace cb
