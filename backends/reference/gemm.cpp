// The reference f32 GEMM (see gemm.h): transposed operands are first copied
// into row-major scratch so the product is always the i-k-j loop, run over
// cache-sized blocks of B.
#include "backends/reference/gemm.h"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace cb {
namespace {

// Copies the rows x cols matrix `src` (row stride ld) transposed into dst (cols x rows).
// Works in 32 x 32 tiles so that neither side is walked with a large stride.
void transpose_into(const float* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  constexpr int64_t kTile = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile)
    for (int64_t c0 = 0; c0 < cols; c0 += kTile)
      for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) dst[c * rows + r] = src[r * ld + c];
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  std::vector<float> a_copy, b_copy;
  if (trans_a) {
    a_copy.resize(size_t(M * K));
    transpose_into(A, K, M, lda, a_copy.data());
    A = a_copy.data();
    lda = K;
  }
  if (trans_b) {
    b_copy.resize(size_t(K * N));
    transpose_into(B, N, K, ldb, b_copy.data());
    B = b_copy.data();
    ldb = N;
  }
  for (int64_t i = 0; i < M; ++i) {
    float* c = C + i * ldc;
    if (beta == 0.0f) {
      for (int64_t j = 0; j < N; ++j) c[j] = 0.0f;
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < N; ++j) c[j] *= beta;
    }
  }
  // Blocks of B (kKBlock x kNBlock) stay in cache while every row of A uses
  // them; each C element still sums over k in increasing order.
  constexpr int64_t kNBlock = 512, kKBlock = 128;
  for (int64_t j0 = 0; j0 < N; j0 += kNBlock) {
    const int64_t j1 = std::min(N, j0 + kNBlock);
    for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
      const int64_t k1 = std::min(K, k0 + kKBlock);
      for (int64_t i = 0; i < M; ++i) {
        float* c = C + i * ldc;
        const float* a = A + i * lda;
        for (int64_t k = k0; k < k1; ++k) {
          const float s = alpha * a[k];
          const float* b = B + k * ldb;
          for (int64_t j = j0; j < j1; ++j) c[j] += s * b[j];
        }
      }
    }
  }
}

}  // namespace cb
