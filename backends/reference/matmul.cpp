// Reference kernels for MatMul (numpy semantics: 1-D promotion, broadcast batch
// dims) and Gemm. f32 goes through gemm_f32; f16/bf16 are widened to f32, run
// through it and rounded back; f64 and integers use a typed i-k-j loop that
// accumulates in double / 64-bit integers. codebook.FusedMatMul (f32 only) is
// gemm_f32, then the bias, then the activation, in that order. A node marked
// precision = "bf16" (ir/precision.h) multiplies bf16 roundings of its f32
// factors A and B, the rest as above.
#include <algorithm>
#include <vector>

#include "backends/reference/accumulate.h"
#include "backends/reference/gemm.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"
#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "ir/precision.h"

namespace cb {

void register_reference_matmul(KernelTable& t);

namespace {

std::vector<float> widen(const Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  dtype_dispatch(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = t.data<T>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(to_double(p[i]));
  });
  return v;
}

// The factor an f32 kernel multiplies: the tensor's own data, or (precision
// bf16) its bf16 rounding in `scratch`.
const float* factor(const Tensor& t, bool bf16, std::vector<float>& scratch) {
  if (!bf16) return t.data<float>();
  scratch.resize(size_t(t.numel()));
  const float* p = t.data<float>();
  for (size_t i = 0; i < scratch.size(); ++i) scratch[i] = bf16_round(p[i]);
  return scratch.data();
}

template <typename T>
void narrow_into(const float* src, Tensor& dst) {
  T* p = dst.data<T>();
  for (int64_t i = 0; i < dst.numel(); ++i) p[i] = from_double<T>(src[i]);
}

// y = alpha * op(a) op(b) + beta * c for f64 and integers; c (if any) holds
// element offsets c_off over the M x N result. Exact for integers when alpha
// is 1 and there is no c.
template <typename T>
void gemm_typed(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const T* a, const T* b, double beta,
                const T* c, const std::vector<int64_t>& c_off, T* y) {
  using A = AccOf<T>;
  std::vector<A> row(static_cast<size_t>(N));
  bool exact = alpha == 1.0 && !c;
  for (int64_t i = 0; i < M; ++i) {
    std::fill(row.begin(), row.end(), A(0));
    for (int64_t k = 0; k < K; ++k) {
      A s = load(ta ? a[k * M + i] : a[i * K + k]);
      for (int64_t j = 0; j < N; ++j) row[size_t(j)] += s * load(tb ? b[j * K + k] : b[k * N + j]);
    }
    for (int64_t j = 0; j < N; ++j) {
      if (exact) {
        y[i * N + j] = store<T>(row[size_t(j)]);
        continue;
      }
      double v = alpha * double(row[size_t(j)]);
      if (c) v += beta * double(load(c[c_off[size_t(i * N + j)]]));
      y[i * N + j] = from_double<T>(v);
    }
  }
}

void matmul_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(1);
  Tensor& y = ctx.out(0);
  // Promote 1-D operands to matrices: [K] -> [1,K] for A, [K] -> [K,1] for B.
  std::vector<int64_t> ad = a.dims(), bd = b.dims();
  if (ad.size() == 1) ad.insert(ad.begin(), 1);
  if (bd.size() == 1) bd.push_back(1);
  int64_t M = ad[ad.size() - 2], K = ad.back(), N = bd.back();
  std::vector<int64_t> a_batch(ad.begin(), ad.end() - 2), b_batch(bd.begin(), bd.end() - 2);
  size_t br = std::max(a_batch.size(), b_batch.size());
  std::vector<int64_t> batch(br, 1);
  for (size_t i = 0; i < br; ++i) {
    int64_t da = i + a_batch.size() >= br ? a_batch[i + a_batch.size() - br] : 1;
    int64_t db = i + b_batch.size() >= br ? b_batch[i + b_batch.size() - br] : 1;
    batch[i] = da == 1 ? db : da;
  }
  // Offsets (in matrices) of each batch's A and B.
  std::vector<int64_t> a_mat, b_mat;
  const std::vector<int64_t> strides[2] = {broadcast_strides(a_batch, batch), broadcast_strides(b_batch, batch)};
  for_each_offset(batch, strides, [&](const int64_t* off) {
    a_mat.push_back(off[0]);
    b_mat.push_back(off[1]);
  });
  const int64_t as = M * K, bs = K * N, ys = M * N;
  DType dt = a.dtype();
  const bool bf16 = dt == DType::f32 && node_precision(ctx.node) == Precision::bf16;
  if (dt == DType::f32 || dt == DType::f16 || dt == DType::bf16) {
    std::vector<float> aw, bw, yw;
    const float* ap = dt == DType::f32 ? factor(a, bf16, aw) : (aw = widen(a)).data();
    const float* bp = dt == DType::f32 ? factor(b, bf16, bw) : (bw = widen(b)).data();
    if (dt != DType::f32) yw.resize(size_t(y.numel()));
    float* yp = dt == DType::f32 ? y.data<float>() : yw.data();
    for (size_t i = 0; i < a_mat.size(); ++i)
      gemm_f32(false, false, M, N, K, 1.0f, ap + a_mat[i] * as, K, bp + b_mat[i] * bs, N, 0.0f, yp + int64_t(i) * ys,
               N);
    if (dt == DType::f16) narrow_into<Half>(yw.data(), y);
    if (dt == DType::bf16) narrow_into<BFloat16>(yw.data(), y);
    return;
  }
  dtype_dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < a_mat.size(); ++i)
      gemm_typed<T>(false, false, M, N, K, 1.0, a.data<T>() + a_mat[i] * as, b.data<T>() + b_mat[i] * bs, 0.0, nullptr,
                    {}, y.data<T>() + int64_t(i) * ys);
  });
}

void gemm_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(1);
  const Tensor* c = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
  Tensor& y = ctx.out(0);
  bool ta = ctx.node.attr_int("transA", 0) != 0, tb = ctx.node.attr_int("transB", 0) != 0;
  float alpha = ctx.node.attr_float("alpha", 1.0f), beta = ctx.node.attr_float("beta", 1.0f);
  int64_t M = y.dim(0), N = y.dim(1), K = ta ? a.dim(0) : a.dim(1);
  if (beta == 0.0f) c = nullptr;  // as ONNX's reference: C is then not read at all
  std::vector<int64_t> c_off;
  if (c) {
    const std::vector<int64_t> s[1] = {broadcast_strides(c->dims(), {M, N})};
    for_each_offset(std::vector<int64_t>{M, N}, s, [&](const int64_t* o) { c_off.push_back(o[0]); });
  }
  DType dt = a.dtype();
  const bool bf16 = dt == DType::f32 && node_precision(ctx.node) == Precision::bf16;
  if (dt == DType::f32 || dt == DType::f16 || dt == DType::bf16) {
    std::vector<float> aw, bw, cw, yw;
    const float* ap = dt == DType::f32 ? factor(a, bf16, aw) : (aw = widen(a)).data();
    const float* bp = dt == DType::f32 ? factor(b, bf16, bw) : (bw = widen(b)).data();
    if (dt != DType::f32) yw.resize(size_t(y.numel()));
    float* yp = dt == DType::f32 ? y.data<float>() : yw.data();
    if (c) {
      cw = widen(*c);
      for (size_t i = 0; i < c_off.size(); ++i) yp[i] = cw[size_t(c_off[i])];
    }
    gemm_f32(ta, tb, M, N, K, alpha, ap, ta ? M : K, bp, tb ? K : N, c ? beta : 0.0f, yp, N);
    if (dt == DType::f16) narrow_into<Half>(yw.data(), y);
    if (dt == DType::bf16) narrow_into<BFloat16>(yw.data(), y);
    return;
  }
  dtype_dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    gemm_typed<T>(ta, tb, M, N, K, alpha, a.data<T>(), b.data<T>(), beta, c ? c->data<T>() : nullptr, c_off,
                  y.data<T>());
  });
}

void fused_matmul_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(1);
  const Tensor* bias = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
  Tensor& y = ctx.out(0);
  const bool tb = ctx.node.attr_int("transB", 0) != 0;
  const int64_t K = a.dim(a.rank() - 1), N = y.dim(y.rank() - 1);
  const int64_t rows = K > 0 ? a.numel() / K : y.numel() / std::max<int64_t>(N, 1);
  float* yp = y.data<float>();
  const bool bf16 = node_precision(ctx.node) == Precision::bf16;
  std::vector<float> aw, bw;
  gemm_f32(false, tb, rows, N, K, 1.0f, factor(a, bf16, aw), K, factor(b, bf16, bw), tb ? K : N, 0.0f, yp, N);
  if (bias)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < N; ++j) yp[r * N + j] += bias->data<float>()[j];
  const MatMulActivation act = matmul_activation(ctx.node);
  if (act == MatMulActivation::none) return;
  for (int64_t i = 0; i < y.numel(); ++i) yp[i] = matmul_activation_value(act, yp[i]);
}

}  // namespace

void register_reference_matmul(KernelTable& t) {
  t.add("MatMul", matmul_kernel);
  t.add("Gemm", gemm_kernel);
  t.add(kFusedMatMulOp, fused_matmul_kernel, kCodebookDomain);
}

}  // namespace cb
