// The cuBLAS GEMMs of the CUDA emulation (include/cublas_v2.h): column-major
// C = alpha op(A) op(B) + beta C, one float sum per element in k order.
#include <algorithm>

#include "cublas_v2.h"

namespace {

struct Matrix {
  const float* data;
  int ld;
  bool transposed;
  // Element (r, c) of op(M), column-major.
  float at(long long r, long long c) const { return transposed ? data[r * ld + c] : data[c * ld + r]; }
};

bool fits(const float* p, bool transposed, int rows, int cols, int ld) {
  // op(M) is rows x cols; M itself is stored with `ld` between its columns.
  const long long stored_rows = transposed ? cols : rows, stored_cols = transposed ? rows : cols;
  if (stored_rows == 0 || stored_cols == 0) return true;
  if (ld < stored_rows) return false;
  return cb::cuda_emulation::is_device_memory(p, size_t((stored_cols - 1) * ld + stored_rows) * sizeof(float));
}

cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (m < 0 || n < 0 || k < 0 || ldc < std::max(1, m)) return CUBLAS_STATUS_INVALID_VALUE;
  if (!fits(A, ta == CUBLAS_OP_T, m, k, lda) || !fits(B, tb == CUBLAS_OP_T, k, n, ldb) || !fits(C, false, m, n, ldc))
    return CUBLAS_STATUS_EXECUTION_FAILED;  // not device memory: an illegal address on the GPU
  const Matrix a{A, lda, ta == CUBLAS_OP_T}, b{B, ldb, tb == CUBLAS_OP_T};
  for (long long j = 0; j < n; ++j)
    for (long long i = 0; i < m; ++i) {
      float acc = 0;
      for (long long p = 0; p < k; ++p) acc += a.at(i, p) * b.at(p, j);
      float& c = C[j * ldc + i];
      c = beta == 0.f ? alpha * acc : alpha * acc + beta * c;  // C is not read where beta is 0
    }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  static int handles = 0;
  *handle = reinterpret_cast<cublasHandle_t>(uintptr_t(++handles));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  return gemm(transa, transb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb, int m,
                                         int n, int k, const float* alpha, const float* A, int lda, long long strideA,
                                         const float* B, int ldb, long long strideB, const float* beta, float* C,
                                         int ldc, long long strideC, int batch) {
  for (int i = 0; i < batch; ++i) {
    const cublasStatus_t st =
        gemm(transa, transb, m, n, k, *alpha, A + i * strideA, lda, B + i * strideB, ldb, *beta, C + i * strideC, ldc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}
