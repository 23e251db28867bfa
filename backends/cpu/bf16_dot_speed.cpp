#include "backends/cpu/bf16_dot_speed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_BF16_SPEED_X86 1
#endif

#include "support/cpu_features.h"

namespace cb {

namespace {

#ifdef CB_BF16_SPEED_X86
constexpr int kChains = 12;     // independent accumulators: enough to hide either latency
constexpr long kIters = 20000;  // x 12 instructions: ~0.1-0.2 ms a trial

// Seconds for kIters x kChains VDPBF16PS (64 flops each: 16 lanes x 2 multiply-adds).
__attribute__((target("avx512f,avx512bw,avx512bf16"), noinline)) double time_dot() {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  __m512bh x = (__m512bh)_mm512_set1_epi16(0x3f80), y = (__m512bh)_mm512_set1_epi16(0x3c00);
  const auto t0 = std::chrono::steady_clock::now();
  for (long k = 0; k < kIters; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], x, y);
    asm volatile("" : "+v"(x));
  }
  const auto t1 = std::chrono::steady_clock::now();
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return std::chrono::duration<double>(t1 - t0).count();
}

// Seconds for kIters x kChains 512-bit FMAs (32 flops each).
__attribute__((target("avx512f,fma"), noinline)) double time_fma() {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  __m512 x = _mm512_set1_ps(1.0f), y = _mm512_set1_ps(1e-3f);
  const auto t0 = std::chrono::steady_clock::now();
  for (long k = 0; k < kIters; ++k) {
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(x, y, acc[i]);
    asm volatile("" : "+v"(x));
  }
  const auto t1 = std::chrono::steady_clock::now();
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  volatile float sink = _mm512_reduce_add_ps(s);
  (void)sink;
  return std::chrono::duration<double>(t1 - t0).count();
}
#endif

}  // namespace

bool cpu_bf16_dot_is_fast() {
#ifdef CB_BF16_SPEED_X86
  static const bool fast = [] {
    if (!cpu_supports_bf16_matmuls()) return false;
    if (const char* v = std::getenv("CB_BF16_KERNELS")) {  // tests and benchmarks pick a path
      if (std::strcmp(v, "bf16") == 0) return true;
      if (std::strcmp(v, "f32") == 0) return false;
    }
    double dot = 1e9, fma = 1e9;
    for (int trial = 0; trial < 5; ++trial) {
      dot = std::min(dot, time_dot());
      fma = std::min(fma, time_fma());
    }
    // Flops per second: a dot instruction does twice an FMA's work. Faster
    // means by a margin (1.3x) that noise does not cross; the machines
    // measured so far are at 0.5x (Emerald Rapids) and 2x (Zen 4).
    return (64.0 / dot) > 1.3 * (32.0 / fma);
  }();
  return fast;
#else
  return false;
#endif
}

}  // namespace cb
