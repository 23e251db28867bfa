// The reference f32 GEMM (see gemm.h): transposed operands are first copied
// into row-major scratch so the product is always the cache-friendly i-k-j loop.
#include "backends/reference/gemm.h"

#include <cstddef>
#include <vector>

namespace cb {
namespace {

// Copies the rows x cols matrix `src` (row stride ld) transposed into dst (cols x rows).
void transpose_into(const float* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * ld + c];
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) {
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
    const float* a = A + i * lda;
    for (int64_t k = 0; k < K; ++k) {
      const float s = alpha * a[k];
      const float* b = B + k * ldb;
      for (int64_t j = 0; j < N; ++j) c[j] += s * b[j];
    }
  }
}

}  // namespace cb
