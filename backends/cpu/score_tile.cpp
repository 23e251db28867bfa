#include "backends/cpu/score_tile.h"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_SCORE_TILE_X86 1
#endif

#include "support/cpu_features.h"

namespace cb {

namespace {

constexpr int kPanel = kScorePanel;

template <int R>
bool tile_portable(const float* A, int64_t lda, const float* panel, const float* bias, int64_t D, const float* thr,
                   float* tile, uint32_t* masks) {
  float acc[R][kPanel];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < kPanel; ++j) acc[r][j] = bias[j];
  for (int64_t d = 0; d < D; ++d) {
    const float* p = panel + d * kPanel;
    for (int r = 0; r < R; ++r) {
      const float a = A[r * lda + d];
      for (int j = 0; j < kPanel; ++j) acc[r][j] += a * p[j];
    }
  }
  bool any = false;
  for (int r = 0; r < R; ++r) {
    uint32_t m = 0;
    for (int j = 0; j < kPanel; ++j) m |= uint32_t(acc[r][j] > thr[r]) << j;
    masks[r] = m;
    any |= m != 0;
  }
  if (any) std::memcpy(tile, acc, sizeof(acc));
  return any;
}

#ifdef CB_SCORE_TILE_X86
template <int R>
__attribute__((target("avx2,fma"))) bool tile_avx2(const float* A, int64_t lda, const float* panel, const float* bias,
                                                   int64_t D, const float* thr, float* tile, uint32_t* masks) {
  __m256 lo[R], hi[R];
  const __m256 bias_lo = _mm256_loadu_ps(bias), bias_hi = _mm256_loadu_ps(bias + 8);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    lo[r] = bias_lo;
    hi[r] = bias_hi;
  }
  for (int64_t d = 0; d < D; ++d) {
    const __m256 p_lo = _mm256_loadu_ps(panel + d * kPanel), p_hi = _mm256_loadu_ps(panel + d * kPanel + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(A + r * lda + d);
      lo[r] = _mm256_fmadd_ps(a, p_lo, lo[r]);
      hi[r] = _mm256_fmadd_ps(a, p_hi, hi[r]);
    }
  }
  uint32_t any = 0;
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m256 t = _mm256_broadcast_ss(thr + r);
    const uint32_t m = uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(lo[r], t, _CMP_GT_OQ))) |
                       uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(hi[r], t, _CMP_GT_OQ))) << 8;
    masks[r] = m;
    any |= m;
  }
  if (any) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm256_storeu_ps(tile + r * kPanel, lo[r]);
      _mm256_storeu_ps(tile + r * kPanel + 8, hi[r]);
    }
  }
  return any != 0;
}
#endif

}  // namespace

const ScoreTiles& score_tiles() {
  static const ScoreTiles tiles = [] {
#ifdef CB_SCORE_TILE_X86
    if (cpu_has_avx2_fma())
      return ScoreTiles{{tile_avx2<1>, tile_avx2<2>, tile_avx2<3>, tile_avx2<4>, tile_avx2<5>, tile_avx2<6>}, true};
#endif
    return ScoreTiles{
        {tile_portable<1>, tile_portable<2>, tile_portable<3>, tile_portable<4>, tile_portable<5>, tile_portable<6>},
        false};
  }();
  return tiles;
}

}  // namespace cb
