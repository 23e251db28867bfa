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

// AVX512F/BW/VL with the BF16 extension (VCVTNEPS2BF16, VDPBF16PS): our
// own bf16 kernels' fast path (capped by CB_MAX_CPU_ISA like the others).
inline bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = !cpu_isa_capped_to_portable() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

// Whether this CPU multiplies bf16 in hardware, which `--precision bf16`
// needs (oneDNN's bf16 matmuls; without it they would be emulated, slower
// than f32). Not capped by CB_MAX_CPU_ISA: that selects our kernels' paths,
// not what the machine can do.
inline bool cpu_supports_bf16_matmuls() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  return has;
#else
  return false;
#endif
}

}  // namespace cb
