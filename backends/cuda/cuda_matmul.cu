// Matrix products on cuBLAS, full fp32 (no TF32, so results stay within
// 1e-4 of the reference): MatMul (a 2-D B as one GEMM over all rows of A,
// batched B by cublasSgemmStridedBatched), Gemm (transA/transB, alpha, beta
// and a broadcast C) and codebook.FusedMatMul (ir/fused_matmul.h: bias and
// GELU as a small epilogue kernel after the GEMM).
//
// cuBLAS is column-major: a row-major [R, C] matrix is its column-major
// [C, R] transpose, so row-major Y = A B is computed as column-major
// Yt = Bt At, i.e. cuBLAS gets B first.
#include "backends/cuda/cuda_common.h"
#include "ir/fused_matmul.h"
#include "ir/precision.h"

namespace cb::cuda {

namespace {

void check_cublas(const Node& n, cublasStatus_t st, const char* what) {
  CB_CHECK(st == CUBLAS_STATUS_SUCCESS, n.describe() << ": " << what << " failed (cuBLAS status " << int(st) << ")");
}

void check_int(const Node& n, int64_t v) {
  CB_CHECK(v <= 0x7fffffff, n.describe() << ": a dimension of " << v << " is too large for cuBLAS");
}

// Row-major Y [m, n] = op(A) op(B), A [m, k] (or [k, m] with trans_a), B [k, n] (or [n, k] with trans_b).
void gemm(const Node& node, cublasHandle_t h, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
          const float* a, const float* b, float* y) {
  check_int(node, m);
  check_int(node, n);
  check_int(node, k);
  const float zero = 0;
  check_cublas(node,
               cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, int(n), int(m),
                           int(k), &alpha, b, int(trans_b ? k : n), a, int(trans_a ? m : k), &zero, y, int(n)),
               "cublasSgemm");
}

enum class Act { none, gelu_tanh, gelu_erf };

// y[r, c] = act(y[r, c] + beta * c_in[r * c_row + c * c_col]) over rows x cols.
__global__ void epilogue_kernel(float* y, long long rows, long long cols, const float* c_in, long long c_row,
                                long long c_col, float beta, Act act) {
  const long long n = rows * cols;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float v = y[i];
    if (c_in) v += beta * c_in[(i / cols) * c_row + (i % cols) * c_col];
    if (act == Act::gelu_tanh)
      v = gelu_tanh(v);
    else if (act == Act::gelu_erf)
      v = gelu_erf(v);
    y[i] = v;
  }
}

void epilogue(const Node& node, cudaStream_t s, float* y, long long rows, long long cols, const float* c_in,
              long long c_row, long long c_col, float beta, Act act) {
  if ((!c_in && act == Act::none) || rows * cols == 0) return;
  CB_LAUNCH(epilogue_kernel, grid_for(rows * cols), kThreads, 0, s)(y, rows, cols, c_in, c_row, c_col, beta, act);
  check_launch(node);
}

// ---- MatMul ----

class MatMulKernel : public Kernel {
 public:
  explicit MatMulKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    Tensor& y = ctx.out(0);
    const int64_t k = a.dim(a.rank() - 1), n = b.dim(b.rank() - 1), m = a.dim(a.rank() - 2);
    CB_CHECK(b.dim(b.rank() - 2) == k, node.describe() << ": inner dimensions differ");
    if (y.numel() == 0) return;
    if (k == 0) {
      check_cuda(node, cudaMemsetAsync(y.raw(), 0, y.nbytes(), launch_.stream), "cudaMemsetAsync");
      return;
    }
    if (b.rank() == 2) {  // one GEMM over every row of A
      gemm(node, launch_.cublas, false, false, a.numel() / k, n, k, 1.f, a.data<float>(), b.data<float>(),
           y.data<float>());
      return;
    }
    // Batched: the offsets of A's and B's matrices for each of Y's, broadcast.
    std::vector<int64_t> batch(y.dims().begin(), y.dims().end() - 2);
    const int64_t count = y.numel() / (m * n);
    std::vector<long long> a_str(kMaxRank), b_str(kMaxRank);
    auto matrix_strides = [&](const Tensor& t, std::vector<long long>& s) {
      // Strides in matrices over Y's batch dims, 0 where t broadcasts.
      const size_t r = batch.size(), rt = t.rank() - 2;
      long long stride = 1;
      for (size_t d = r; d-- > 0;) {
        if (d + rt < r) {
          s[d] = 0;
          continue;
        }
        const int64_t dim = t.dim(d + rt - r);
        s[d] = dim == 1 ? 0 : stride;
        stride *= dim;
      }
    };
    CB_CHECK(batch.size() <= size_t(kMaxRank), node.describe() << ": over " << kMaxRank << " batch dims");
    matrix_strides(a, a_str);
    matrix_strides(b, b_str);
    std::vector<long long> a_off(static_cast<size_t>(count)), b_off(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
      long long rest = i, oa = 0, ob = 0;
      for (size_t d = batch.size(); d-- > 0;) {
        const long long c = rest % batch[d];
        rest /= batch[d];
        oa += c * a_str[d];
        ob += c * b_str[d];
      }
      a_off[size_t(i)] = oa * m * k;
      b_off[size_t(i)] = ob * k * n;
    }
    auto uniform = [&](const std::vector<long long>& off) {
      for (size_t i = 1; i < off.size(); ++i)
        if (off[i] - off[i - 1] != off[1] - off[0]) return false;
      return true;
    };
    check_int(node, count);
    check_int(node, m);
    check_int(node, n);
    check_int(node, k);
    const float one = 1, zero = 0;
    if (uniform(a_off) && uniform(b_off)) {
      const long long sa = count > 1 ? a_off[1] - a_off[0] : 0, sb = count > 1 ? b_off[1] - b_off[0] : 0;
      check_cublas(node,
                   cublasSgemmStridedBatched(launch_.cublas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(m), int(k), &one,
                                             b.data<float>(), int(n), sb, a.data<float>(), int(k), sa, &zero,
                                             y.data<float>(), int(n), m * n, int(count)),
                   "cublasSgemmStridedBatched");
      return;
    }
    for (int64_t i = 0; i < count; ++i)  // an irregular broadcast: one GEMM per matrix
      gemm(node, launch_.cublas, false, false, m, n, k, 1.f, a.data<float>() + a_off[size_t(i)],
           b.data<float>() + b_off[size_t(i)], y.data<float>() + i * m * n);
  }

 private:
  Launch launch_;
};

// ---- Gemm: Y = alpha op(A) op(B) + beta C ----

class GemmKernel : public Kernel {
 public:
  GemmKernel(const Node& n, const Launch& l)
      : launch_(l),
        trans_a_(n.attr_int("transA", 0) != 0),
        trans_b_(n.attr_int("transB", 0) != 0),
        alpha_(n.attr_float("alpha", 1.f)),
        beta_(n.attr_float("beta", 1.f)) {}
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    const Tensor* c = ctx.inputs.size() > 2 && ctx.inputs[2] && ctx.inputs[2]->defined() ? ctx.inputs[2] : nullptr;
    Tensor& y = ctx.out(0);
    const int64_t m = y.dim(0), n = y.dim(1), k = trans_a_ ? a.dim(0) : a.dim(1);
    if (y.numel() == 0) return;
    if (k == 0)
      check_cuda(node, cudaMemsetAsync(y.raw(), 0, y.nbytes(), launch_.stream), "cudaMemsetAsync");
    else
      gemm(node, launch_.cublas, trans_a_, trans_b_, m, n, k, alpha_, a.data<float>(), b.data<float>(),
           y.data<float>());
    if (!c) return;
    // C is unidirectionally broadcast to [M, N].
    long long c_row = 0, c_col = 0;
    if (c->rank() == 1) c_col = c->dim(0) == 1 ? 0 : 1;
    if (c->rank() == 2) {
      c_row = c->dim(0) == 1 ? 0 : c->dim(1);
      c_col = c->dim(1) == 1 ? 0 : 1;
    }
    epilogue(node, launch_.stream, y.data<float>(), m, n, c->data<float>(), c_row, c_col, beta_, Act::none);
  }

 private:
  Launch launch_;
  bool trans_a_, trans_b_;
  float alpha_, beta_;
};

// ---- codebook.FusedMatMul: act(A op(B) + bias) ----

class FusedMatMulKernel : public Kernel {
 public:
  FusedMatMulKernel(const Node& n, const Launch& l) : launch_(l), trans_b_(n.attr_int("transB", 0) != 0) {
    switch (matmul_activation(n)) {
      case MatMulActivation::gelu_tanh: act_ = Act::gelu_tanh; break;
      case MatMulActivation::gelu_erf: act_ = Act::gelu_erf; break;
      default: act_ = Act::none;
    }
  }
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    const Tensor* bias = ctx.inputs.size() > 2 && ctx.inputs[2] && ctx.inputs[2]->defined() ? ctx.inputs[2] : nullptr;
    Tensor& y = ctx.out(0);
    const int64_t k = a.dim(a.rank() - 1), n = trans_b_ ? b.dim(0) : b.dim(1);
    CB_CHECK((trans_b_ ? b.dim(1) : b.dim(0)) == k, node.describe() << ": inner dimensions differ");
    CB_CHECK(!bias || bias->numel() == n, node.describe() << ": bias must have N = " << n << " elements");
    if (y.numel() == 0) return;
    const int64_t rows = y.numel() / n;
    if (k == 0)
      check_cuda(node, cudaMemsetAsync(y.raw(), 0, y.nbytes(), launch_.stream), "cudaMemsetAsync");
    else
      gemm(node, launch_.cublas, false, trans_b_, rows, n, k, 1.f, a.data<float>(), b.data<float>(), y.data<float>());
    epilogue(node, launch_.stream, y.data<float>(), rows, n, bias ? bias->data<float>() : nullptr, 0, 1, 1.f, act_);
  }

 private:
  Launch launch_;
  bool trans_b_;
  Act act_ = Act::none;
};

bool f32_precision(const Node& n) { return node_precision(n) == Precision::f32; }

}  // namespace

bool matmul_supports(const Node& n) {
  // Both operands at least matrices (a 1-D operand stays on the host).
  auto matrices = [](const Value* v) { return rank_at_most(v, kMaxRank + 2) && v->type.shape.rank() >= 2; };
  return n.inputs.size() == 2 && all_f32(n) && matrices(n.inputs[0]) && matrices(n.inputs[1]) && f32_precision(n);
}

std::unique_ptr<Kernel> make_matmul(const Node&, const Launch& l) { return std::make_unique<MatMulKernel>(l); }

bool gemm_supports(const Node& n) {
  if (n.inputs.size() < 2 || !all_f32(n) || !rank_is(n.inputs[0], 2) || !rank_is(n.inputs[1], 2) || !f32_precision(n))
    return false;
  return n.inputs.size() < 3 || !n.inputs[2] || rank_at_most(n.inputs[2], 2);
}

std::unique_ptr<Kernel> make_gemm(const Node& n, const Launch& l) { return std::make_unique<GemmKernel>(n, l); }

bool fused_matmul_supports(const Node& n) {
  if (n.inputs.size() < 2 || !all_f32(n) || !n.inputs[0] || !n.inputs[0]->type.shape.rank_known ||
      n.inputs[0]->type.shape.rank() < 2 || !rank_is(n.inputs[1], 2) || !f32_precision(n))
    return false;
  if (n.inputs.size() > 2 && n.inputs[2] && !rank_is(n.inputs[2], 1)) return false;
  const std::string act = n.attr_string("activation", "none");
  return act == "none" || act == "gelu_tanh" || act == "gelu_erf";
}

std::unique_ptr<Kernel> make_fused_matmul(const Node& n, const Launch& l) {
  return std::make_unique<FusedMatMulKernel>(n, l);
}

}  // namespace cb::cuda
