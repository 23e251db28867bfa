// A plain f32 GEMM for the reference backend, constant folding and any other
// code that needs a simple, dependable matrix product without oneDNN.
#pragma once
#include <cstdint>

namespace cb {

// C = alpha * op(A) * op(B) + beta * C, all row-major, where op(A) is M x K
// (A is stored K x M when trans_a) and op(B) is K x N (stored N x K when
// trans_b). lda/ldb/ldc are row strides in elements. When beta == 0, C is
// only written (its old contents, even NaN, are ignored). Accumulates in f32
// in i-k-j order over a contiguous inner loop.
void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace cb
