#include "backends/cpu/gemv_bf16.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_GEMV_BF16_X86 1
#endif

#include "ir/precision.h"
#include "support/cpu_features.h"

namespace cb {

namespace {

// Sixteen lanes (lane k % 16 of each 32-element block, as VDPBF16PS pairs
// them), summed pairwise at the end.
void rows_portable(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int64_t K, int64_t n0,
                   int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const uint16_t* row = w + n * K;
    float lane[16] = {};
    for (int64_t k = 0; k < K; ++k) lane[(k % 32) / 2] += bf16_to_float(x[k]) * bf16_to_float(row[k]);
    for (int width = 8; width > 0; width /= 2)
      for (int j = 0; j < width; ++j) lane[j] += lane[j + width];
    y[n] = lane[0] + (bias ? bias[n] : 0.0f);
  }
}

#ifdef CB_GEMV_BF16_X86
constexpr int kRows = 4;  // rows per pass over x: x stays in L1, four weight streams

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void rows_avx512(const uint16_t* x, const uint16_t* w,
                                                                                 const float* bias, float* y, int64_t K,
                                                                                 int64_t n0, int64_t n1) {
  const int64_t full = K / 32 * 32;
  const __mmask32 tail = __mmask32((uint64_t(1) << (K - full)) - 1);
  int64_t n = n0;
  for (; n + kRows <= n1; n += kRows) {
    __m512 acc[kRows];
    for (int r = 0; r < kRows; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < full; k += 32) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + k);
#pragma GCC unroll 4
      for (int r = 0; r < kRows; ++r)
        acc[r] = _mm512_dpbf16_ps(acc[r], xv, (__m512bh)_mm512_loadu_si512(w + (n + r) * K + k));
    }
    if (full < K) {
      const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(tail, x + full);
      for (int r = 0; r < kRows; ++r)
        acc[r] = _mm512_dpbf16_ps(acc[r], xv, (__m512bh)_mm512_maskz_loadu_epi16(tail, w + (n + r) * K + full));
    }
    for (int r = 0; r < kRows; ++r) y[n + r] = _mm512_reduce_add_ps(acc[r]) + (bias ? bias[n + r] : 0.0f);
  }
  for (; n < n1; ++n) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t k = 0; k < full; k += 32)
      acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(x + k), (__m512bh)_mm512_loadu_si512(w + n * K + k));
    if (full < K)
      acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_maskz_loadu_epi16(tail, x + full),
                             (__m512bh)_mm512_maskz_loadu_epi16(tail, w + n * K + full));
    y[n] = _mm512_reduce_add_ps(acc) + (bias ? bias[n] : 0.0f);
  }
}
#endif

}  // namespace

void gemv_bf16_rows(const uint16_t* x, const uint16_t* w, const float* bias, float* y, int64_t K, int64_t n0,
                    int64_t n1) {
#ifdef CB_GEMV_BF16_X86
  if (cpu_has_avx512_bf16()) return rows_avx512(x, w, bias, y, K, n0, n1);
#endif
  rows_portable(x, w, bias, y, K, n0, n1);
}

}  // namespace cb
