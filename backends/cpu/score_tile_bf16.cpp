#include "backends/cpu/score_tile_bf16.h"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_SCORE_TILE_BF16_X86 1
#endif

#include "support/cpu_features.h"

namespace cb {

namespace {

#ifdef CB_SCORE_TILE_BF16_X86
#define CB_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// lo[r] / hi[r] = bias + the bf16 dot products of row r with the panel's
// first / last 16 columns.
template <int R>
CB_BF16_TARGET inline __attribute__((always_inline)) void dot_tile(const uint16_t* A, int64_t lda,
                                                                   const uint16_t* panel, const float* bias, int64_t Dp,
                                                                   __m512 (&lo)[R], __m512 (&hi)[R]) {
  const __m512 bias_lo = _mm512_loadu_ps(bias), bias_hi = _mm512_loadu_ps(bias + 16);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    lo[r] = bias_lo;
    hi[r] = bias_hi;
  }
  for (int64_t i = 0; i < Dp; ++i) {
    const __m512bh p_lo = (__m512bh)_mm512_loadu_si512(panel + i * 2 * kBf16Panel);
    const __m512bh p_hi = (__m512bh)_mm512_loadu_si512(panel + i * 2 * kBf16Panel + kBf16Panel);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t pair;  // (A[2i], A[2i+1]), the first in the low half
      std::memcpy(&pair, A + r * lda + 2 * i, sizeof pair);
      const __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
      lo[r] = _mm512_dpbf16_ps(lo[r], p_lo, a);
      hi[r] = _mm512_dpbf16_ps(hi[r], p_hi, a);
    }
  }
}

template <int R>
CB_BF16_TARGET bool tile_bf16(const uint16_t* A, int64_t lda, const uint16_t* panel, const float* bias, int64_t Dp,
                              const float* thr, float* tile, uint32_t* masks) {
  __m512 lo[R], hi[R];
  dot_tile<R>(A, lda, panel, bias, Dp, lo, hi);
  uint32_t any = 0;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512 t = _mm512_set1_ps(thr[r]);
    const uint32_t m =
        uint32_t(_mm512_cmp_ps_mask(lo[r], t, _CMP_GT_OQ)) | uint32_t(_mm512_cmp_ps_mask(hi[r], t, _CMP_GT_OQ)) << 16;
    masks[r] = m;
    any |= m;
  }
  if (any) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(tile + r * kBf16Panel, lo[r]);
      _mm512_storeu_ps(tile + r * kBf16Panel + 16, hi[r]);
    }
  }
  return any != 0;
}

template <int R>
CB_BF16_TARGET void storing_tile_bf16(const uint16_t* A, int64_t lda, const uint16_t* panel, const float* bias,
                                      int64_t Dp, float* scores, int64_t ld) {
  __m512 lo[R], hi[R];
  dot_tile<R>(A, lda, panel, bias, Dp, lo, hi);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    _mm512_storeu_ps(scores + r * ld, lo[r]);
    _mm512_storeu_ps(scores + r * ld + 16, hi[r]);
  }
}
#endif

}  // namespace

const Bf16ScoreTiles* bf16_score_tiles() {
#ifdef CB_SCORE_TILE_BF16_X86
  static const Bf16ScoreTiles tiles{
      {tile_bf16<1>, tile_bf16<2>, tile_bf16<3>, tile_bf16<4>, tile_bf16<5>, tile_bf16<6>, tile_bf16<7>, tile_bf16<8>},
      {storing_tile_bf16<1>, storing_tile_bf16<2>, storing_tile_bf16<3>, storing_tile_bf16<4>, storing_tile_bf16<5>,
       storing_tile_bf16<6>, storing_tile_bf16<7>, storing_tile_bf16<8>}};
  return cpu_has_avx512_bf16() ? &tiles : nullptr;
#else
  return nullptr;
#endif
}

}  // namespace cb
