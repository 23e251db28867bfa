#include <algorithm>
#include <cmath>
#include <string>

#include "backends/cuda/cuda_kernels.h"
#include "support/error.h"

namespace cb {

namespace {

constexpr int kMaxRank = 8;
constexpr int kThreads = 256;

void check_launch(const Node& n) {
  cudaError_t e = cudaGetLastError();
  CB_CHECK(e == cudaSuccess, n.describe() << ": CUDA kernel launch failed: " << cudaGetErrorString(e));
}

bool is_f32(const Value* v) { return v && v->type.dtype == DType::f32; }

// ---- elementwise with broadcasting ----

enum class Binary { add, sub, mul, div };

struct BroadcastIndex {
  int rank;
  long long dims[kMaxRank];
  long long a_stride[kMaxRank], b_stride[kMaxRank];  // 0 along broadcast dims
};

__global__ void binary_kernel(Binary op, const float* a, const float* b, float* y, long long n, BroadcastIndex ix) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long rest = i, ia = 0, ib = 0;
    for (int d = ix.rank - 1; d >= 0; --d) {
      long long c = rest % ix.dims[d];
      rest /= ix.dims[d];
      ia += c * ix.a_stride[d];
      ib += c * ix.b_stride[d];
    }
    float x = a[ia], z = b[ib];
    y[i] = op == Binary::add ? x + z : op == Binary::sub ? x - z : op == Binary::mul ? x * z : x / z;
  }
}

// Strides of `in` read at the output's index space (right-aligned, 0 where broadcast).
void broadcast_strides(const Tensor& in, const std::vector<int64_t>& out, long long* strides) {
  const size_t r = out.size(), ri = in.rank();
  long long s = 1;
  for (size_t d = r; d-- > 0;) {
    const size_t k = d + ri - r;  // the input's dim aligned to output dim d
    if (d + ri < r) {
      strides[d] = 0;
      continue;
    }
    strides[d] = in.dim(k) == 1 ? 0 : s;
    s *= in.dim(k);
  }
}

class BinaryKernel : public Kernel {
 public:
  BinaryKernel(Binary op, cudaStream_t s) : op_(op), stream_(s) {}
  void run(KernelContext& ctx) override {
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    Tensor& y = ctx.out(0);
    CB_CHECK(y.rank() <= size_t(kMaxRank), ctx.node.describe() << ": rank " << y.rank() << " is over " << kMaxRank);
    BroadcastIndex ix{};
    ix.rank = int(y.rank());
    for (size_t d = 0; d < y.rank(); ++d) ix.dims[d] = y.dim(d);
    broadcast_strides(a, y.dims(), ix.a_stride);
    broadcast_strides(b, y.dims(), ix.b_stride);
    const long long n = y.numel();
    if (n == 0) return;
    const int blocks = int(std::min<long long>((n + kThreads - 1) / kThreads, 65535));
    binary_kernel<<<blocks, kThreads, 0, stream_>>>(op_, a.data<float>(), b.data<float>(), y.data<float>(), n, ix);
    check_launch(ctx.node);
  }

 private:
  Binary op_;
  cudaStream_t stream_;
};

// ---- row kernels: one block per row of the last axis ----

// Sum of v over the block (every thread gets it).
__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : 0.f;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  v = shared[0];
  __syncthreads();
  return v;
}

__device__ float block_max(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : -INFINITY;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  v = shared[0];
  __syncthreads();
  return v;
}

__global__ void layer_norm_kernel(const float* x, const float* gamma, const float* beta, float* y, long long cols,
                                  float epsilon) {
  __shared__ float shared[32];
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float s = 0;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += row[c];
  const float mean = block_sum(s, shared) / float(cols);
  float q = 0;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) q += (row[c] - mean) * (row[c] - mean);
  const float inv = rsqrtf(block_sum(q, shared) / float(cols) + epsilon);
  for (long long c = threadIdx.x; c < cols; c += blockDim.x)
    out[c] = (row[c] - mean) * inv * gamma[c] + (beta ? beta[c] : 0.f);
}

__global__ void softmax_kernel(const float* x, float* y, long long cols) {
  __shared__ float shared[32];
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float m = -INFINITY;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, row[c]);
  m = block_max(m, shared);
  float s = 0;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += expf(row[c] - m);
  const float inv = 1.f / block_sum(s, shared);
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) out[c] = expf(row[c] - m) * inv;
}

class RowKernel : public Kernel {
 public:
  RowKernel(bool layer_norm, float epsilon, cudaStream_t s) : layer_norm_(layer_norm), epsilon_(epsilon), stream_(s) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    if (x.numel() == 0) return;
    const long long cols = x.dim(x.rank() - 1), rows = x.numel() / cols;
    CB_CHECK(rows <= 0x7fffffff, ctx.node.describe() << ": " << rows << " rows are too many for one launch");
    if (layer_norm_) {
      const Tensor& gamma = ctx.in(1);
      const Tensor* beta = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;  // optional
      CB_CHECK(gamma.numel() == cols && (!beta || beta->numel() == cols),
               ctx.node.describe() << ": scale and bias must have the last axis' " << cols << " elements");
      layer_norm_kernel<<<unsigned(rows), kThreads, 0, stream_>>>(
          x.data<float>(), gamma.data<float>(), beta ? beta->data<float>() : nullptr, y.data<float>(), cols, epsilon_);
    } else {
      softmax_kernel<<<unsigned(rows), kThreads, 0, stream_>>>(x.data<float>(), y.data<float>(), cols);
    }
    check_launch(ctx.node);
  }

 private:
  bool layer_norm_;
  float epsilon_;
  cudaStream_t stream_;
};

// ---- MatMul: A [..., M, K] times B [K, N] as one GEMM of (prod(...) * M) rows ----

class MatMulKernel : public Kernel {
 public:
  explicit MatMulKernel(cublasHandle_t h) : handle_(h) {}
  void run(KernelContext& ctx) override {
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    Tensor& y = ctx.out(0);
    const int64_t k = b.dim(0), n = b.dim(1), m = k ? a.numel() / k : 0;
    CB_CHECK(a.dim(a.rank() - 1) == k, ctx.node.describe() << ": inner dimensions differ");
    CB_CHECK(m <= 0x7fffffff && n <= 0x7fffffff && k <= 0x7fffffff, ctx.node.describe() << ": too large for cuBLAS");
    if (y.numel() == 0) return;
    const float one = 1, zero = 0;
    // Row-major Y = A B is column-major Yt = Bt At.
    cublasStatus_t st = cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(m), int(k), &one, b.data<float>(),
                                    int(n), a.data<float>(), int(k), &zero, y.data<float>(), int(n));
    CB_CHECK(st == CUBLAS_STATUS_SUCCESS, ctx.node.describe() << ": cublasSgemm failed (" << int(st) << ")");
  }

 private:
  cublasHandle_t handle_;
};

bool last_axis(const Node& n, int64_t dflt) {
  const Value* x = n.input(0);
  const int64_t axis = n.attr_int("axis", dflt);
  return axis == -1 || (x->type.shape.rank_known && axis == int64_t(x->type.shape.rank()) - 1);
}

}  // namespace

bool cuda_kernel_supports(const Node& n) {
  if (!n.domain.empty() || n.outputs.empty() || !is_f32(n.outputs[0])) return false;
  for (Value* v : n.inputs)
    if (v && !is_f32(v)) return false;
  const std::string& op = n.op_type;
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return n.inputs.size() == 2 && n.inputs[1];
  if (op == "Softmax") return last_axis(n, -1);
  if (op == "LayerNormalization") {
    for (size_t i = 1; i < n.outputs.size(); ++i)
      if (n.outputs[i]) return false;  // mean / inverse std outputs: not yet
    return n.inputs.size() >= 2 && n.inputs[1] && last_axis(n, -1) && n.attr_int("stash_type", 1) == 1;
  }
  if (op == "MatMul") {
    const Shape &a = n.inputs[0]->type.shape, &b = n.inputs[1]->type.shape;
    return a.rank_known && a.rank() >= 2 && b.rank_known && b.rank() == 2;
  }
  return false;
}

std::unique_ptr<Kernel> make_cuda_kernel(const Node& n, cudaStream_t stream, cublasHandle_t cublas) {
  if (!cuda_kernel_supports(n)) return nullptr;
  const std::string& op = n.op_type;
  if (op == "Add") return std::make_unique<BinaryKernel>(Binary::add, stream);
  if (op == "Sub") return std::make_unique<BinaryKernel>(Binary::sub, stream);
  if (op == "Mul") return std::make_unique<BinaryKernel>(Binary::mul, stream);
  if (op == "Div") return std::make_unique<BinaryKernel>(Binary::div, stream);
  if (op == "Softmax") return std::make_unique<RowKernel>(false, 0.f, stream);
  if (op == "LayerNormalization") return std::make_unique<RowKernel>(true, n.attr_float("epsilon", 1e-5f), stream);
  if (op == "MatMul") return std::make_unique<MatMulKernel>(cublas);
  return nullptr;
}

}  // namespace cb
