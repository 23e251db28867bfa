// Elementwise CUDA kernels, f32: the binary ops with numpy broadcasting
// (Add, Sub, Mul, Div, Pow), the unary ops (Neg, Abs, Relu, Exp, Log, Sqrt,
// Reciprocal, Sin, Cos, Tanh, Sigmoid, Erf, Gelu) and Where with a bool
// condition. One grid-stride loop each, on the backend's stream.
#include <string>

#include "backends/cuda/cuda_common.h"

namespace cb::cuda {

namespace {

// ---- binary ----

enum class Binary { add, sub, mul, div, pow };

__global__ void binary_kernel(Binary op, const float* a, const float* b, float* y, long long n, BroadcastIndex ix) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long off[2];
    broadcast_offsets(ix, i, 2, off);
    const float x = a[off[0]], z = b[off[1]];
    float r;
    switch (op) {
      case Binary::add: r = x + z; break;
      case Binary::sub: r = x - z; break;
      case Binary::mul: r = x * z; break;
      case Binary::div: r = x / z; break;
      default: r = powf(x, z); break;
    }
    y[i] = r;
  }
}

class BinaryKernel : public Kernel {
 public:
  BinaryKernel(Binary op, cudaStream_t s) : op_(op), stream_(s) {}
  void run(KernelContext& ctx) override {
    const Tensor &a = ctx.in(0), &b = ctx.in(1);
    Tensor& y = ctx.out(0);
    const BroadcastIndex ix = broadcast_index(ctx.node, {&a, &b}, y);
    const long long n = y.numel();
    if (n == 0) return;
    CB_LAUNCH(binary_kernel, grid_for(n), kThreads, 0, stream_)
    (op_, a.data<float>(), b.data<float>(), y.data<float>(), n, ix);
    check_launch(ctx.node);
  }

 private:
  Binary op_;
  cudaStream_t stream_;
};

// ---- unary ----

enum class Unary { neg, abs, relu, exp, log, sqrt, reciprocal, sin, cos, tanh, sigmoid, erf, gelu_erf, gelu_tanh };

__device__ float unary_value(Unary op, float x) {
  switch (op) {
    case Unary::neg: return -x;
    case Unary::abs: return fabsf(x);
    case Unary::relu: return x > 0.f ? x : 0.f;
    case Unary::exp: return expf(x);
    case Unary::log: return logf(x);
    case Unary::sqrt: return sqrtf(x);
    case Unary::reciprocal: return 1.f / x;
    case Unary::sin: return sinf(x);
    case Unary::cos: return cosf(x);
    case Unary::tanh: return tanhf(x);
    case Unary::sigmoid: return 1.f / (1.f + expf(-x));
    case Unary::erf: return erff(x);
    case Unary::gelu_erf: return gelu_erf(x);
    default: return gelu_tanh(x);
  }
}

__global__ void unary_kernel(Unary op, const float* x, float* y, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    y[i] = unary_value(op, x[i]);
}

class UnaryKernel : public Kernel {
 public:
  UnaryKernel(Unary op, cudaStream_t s) : op_(op), stream_(s) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    const long long n = y.numel();
    if (n == 0) return;
    CB_LAUNCH(unary_kernel, grid_for(n), kThreads, 0, stream_)(op_, x.data<float>(), y.data<float>(), n);
    check_launch(ctx.node);
  }

 private:
  Unary op_;
  cudaStream_t stream_;
};

bool unary_op(const std::string& op, Unary& u) {
  static const std::pair<const char*, Unary> ops[] = {{"Neg", Unary::neg},
                                                      {"Abs", Unary::abs},
                                                      {"Relu", Unary::relu},
                                                      {"Exp", Unary::exp},
                                                      {"Log", Unary::log},
                                                      {"Sqrt", Unary::sqrt},
                                                      {"Reciprocal", Unary::reciprocal},
                                                      {"Sin", Unary::sin},
                                                      {"Cos", Unary::cos},
                                                      {"Tanh", Unary::tanh},
                                                      {"Sigmoid", Unary::sigmoid},
                                                      {"Erf", Unary::erf},
                                                      {"Gelu", Unary::gelu_erf}};
  for (auto& [name, value] : ops)
    if (op == name) {
      u = value;
      return true;
    }
  return false;
}

// ---- Where ----

__global__ void where_kernel(const bool* cond, const float* a, const float* b, float* y, long long n,
                             BroadcastIndex ix) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long off[3];
    broadcast_offsets(ix, i, 3, off);
    y[i] = cond[off[0]] ? a[off[1]] : b[off[2]];
  }
}

class WhereKernel : public Kernel {
 public:
  explicit WhereKernel(cudaStream_t s) : stream_(s) {}
  void run(KernelContext& ctx) override {
    const Tensor &c = ctx.in(0), &a = ctx.in(1), &b = ctx.in(2);
    Tensor& y = ctx.out(0);
    const BroadcastIndex ix = broadcast_index(ctx.node, {&c, &a, &b}, y);
    const long long n = y.numel();
    if (n == 0) return;
    CB_LAUNCH(where_kernel, grid_for(n), kThreads, 0, stream_)
    (c.data<bool>(), a.data<float>(), b.data<float>(), y.data<float>(), n, ix);
    check_launch(ctx.node);
  }

 private:
  cudaStream_t stream_;
};

}  // namespace

bool binary_supports(const Node& n) {
  return n.inputs.size() == 2 && n.inputs[0] && n.inputs[1] && all_f32(n) && rank_at_most(n.outputs[0], kMaxRank);
}

std::unique_ptr<Kernel> make_binary(const Node& n, const Launch& l) {
  const std::string& op = n.op_type;
  const Binary b = op == "Add"   ? Binary::add
                   : op == "Sub" ? Binary::sub
                   : op == "Mul" ? Binary::mul
                   : op == "Div" ? Binary::div
                                 : Binary::pow;
  return std::make_unique<BinaryKernel>(b, l.stream);
}

bool unary_supports(const Node& n) {
  Unary u;
  if (!unary_op(n.op_type, u) || n.inputs.size() != 1 || n.outputs.size() != 1 || !all_f32(n)) return false;
  if (n.op_type == "Gelu") {
    const std::string a = n.attr_string("approximate", "none");
    return a == "none" || a == "tanh";
  }
  return true;
}

std::unique_ptr<Kernel> make_unary(const Node& n, const Launch& l) {
  Unary u = Unary::neg;
  unary_op(n.op_type, u);
  if (n.op_type == "Gelu" && n.attr_string("approximate", "none") == "tanh") u = Unary::gelu_tanh;
  return std::make_unique<UnaryKernel>(u, l.stream);
}

bool where_supports(const Node& n) {
  return n.inputs.size() == 3 && is_dtype(n.inputs[0], DType::boolean) && is_f32(n.inputs[1]) && is_f32(n.inputs[2]) &&
         n.outputs.size() == 1 && is_f32(n.outputs[0]) && rank_at_most(n.outputs[0], kMaxRank);
}

std::unique_ptr<Kernel> make_where(const Node&, const Launch& l) { return std::make_unique<WhereKernel>(l.stream); }

}  // namespace cb::cuda
