#include "backends/cpu/bf16_convert.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_BF16_X86 1
#endif

#include "ir/precision.h"
#include "support/cpu_features.h"
#include "support/threads.h"

namespace cb {

namespace {

void convert_portable(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_round_bits(src[i]);
}

#ifdef CB_BF16_X86
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void convert_avx512(const float* src, uint16_t* dst,
                                                                                    int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, (__m512i)v);
  }
  if (i < n) {  // the tail through masked loads and stores
    const int64_t left = n - i;
    const __mmask16 lo = __mmask16(left >= 16 ? 0xffff : (1u << left) - 1);
    const __mmask16 hi = __mmask16(left > 16 ? (1u << (left - 16)) - 1 : 0);
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + i + 16), _mm512_maskz_loadu_ps(lo, src + i));
    _mm512_mask_storeu_epi16(dst + i, __mmask32(lo) | (__mmask32(hi) << 16), (__m512i)v);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void round_avx512(const float* src, float* dst,
                                                                                  int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    _mm512_mask_storeu_epi32(dst + i, m, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}
#endif

void round_portable(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_round(src[i]);
}

}  // namespace

void convert_to_bf16(const float* src, uint16_t* dst, int64_t n) {
#ifdef CB_BF16_X86
  if (cpu_has_avx512_bf16()) return convert_avx512(src, dst, n);
#endif
  convert_portable(src, dst, n);
}

void convert_to_bf16_parallel(const float* src, uint16_t* dst, int64_t n, int threads) {
  parallel_chunks(n, size_t(n) * 6, size_t(1) << 20, threads,
                  [&](int64_t b, int64_t e) { convert_to_bf16(src + b, dst + b, e - b); });
}

void round_to_bf16_parallel(const float* src, float* dst, int64_t n, int threads) {
  parallel_chunks(n, size_t(n) * 8, size_t(1) << 20, threads, [&](int64_t b, int64_t e) {
#ifdef CB_BF16_X86
    if (cpu_has_avx512_bf16()) return round_avx512(src + b, dst + b, e - b);
#endif
    round_portable(src + b, dst + b, e - b);
  });
}

}  // namespace cb
