// Backward ops of the training step on CUDA (contracts in ir/ops/grad.h), f32:
// GeluGrad (both approximations), SoftmaxGrad over the last axis (Softmax
// and LogSoftmax), and LayerNormalizationGrad over the last axis: a block per
// row for dx (mean and variance recomputed, in double like the reference),
// then a thread per column summing dscale and dbias over the rows in order,
// so the results do not depend on the launch.
#include "backends/cuda/cuda_common.h"

namespace cb::cuda {

namespace {

// ---- GeluGrad: dx = dy * Gelu'(x) ----

__global__ void gelu_grad_kernel(const float* dy, const float* x, float* dx, long long n, bool tanh_approximation) {
  const double kSqrt2OverPi = 0.7978845608028654, kCubic = 0.044715;
  const double kInvSqrt2 = 0.7071067811865476, kInvSqrt2Pi = 0.3989422804014327;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const double v = x[i];
    double d;
    if (tanh_approximation) {
      const double t = tanh(kSqrt2OverPi * (v + kCubic * v * v * v));
      d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * kSqrt2OverPi * (1 + 3 * kCubic * v * v);
    } else {
      d = 0.5 * (1 + erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * exp(-0.5 * v * v);
    }
    dx[i] = float(double(dy[i]) * d);
  }
}

class GeluGradKernel : public Kernel {
 public:
  GeluGradKernel(const Node& n, const Launch& l) : launch_(l), tanh_(n.attr_string("approximate", "none") == "tanh") {}
  void run(KernelContext& ctx) override {
    const Tensor &dy = ctx.in(0), &x = ctx.in(1);
    CB_CHECK(dy.dims() == x.dims(), ctx.node.describe() << ": dy " << dims_str(dy.dims()) << " and x "
                                                        << dims_str(x.dims()) << " differ in shape");
    if (x.numel() == 0) return;
    CB_LAUNCH(gelu_grad_kernel, grid_for(x.numel()), kThreads, 0, launch_.stream)
    (dy.data<float>(), x.data<float>(), ctx.out(0).data<float>(), x.numel(), tanh_);
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
  bool tanh_;
};

// ---- SoftmaxGrad over the last axis: a block per row ----
//   log = 0: dx = y * (dy - sum(dy * y));  log = 1: dx = dy - exp(y) * sum(dy)

__global__ void softmax_grad_kernel(const float* dy, const float* y, float* dx, long long cols, bool log) {
  __shared__ float shared[32];
  const float* g = dy + blockIdx.x * cols;
  const float* p = y + blockIdx.x * cols;
  float* out = dx + blockIdx.x * cols;
  float s = 0;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += log ? g[c] : g[c] * p[c];
  s = block_sum(s, shared);
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) out[c] = log ? g[c] - expf(p[c]) * s : p[c] * (g[c] - s);
}

class SoftmaxGradKernel : public Kernel {
 public:
  SoftmaxGradKernel(const Node& n, const Launch& l) : launch_(l), log_(n.attr_int("log", 0) != 0) {}
  void run(KernelContext& ctx) override {
    const Tensor &dy = ctx.in(0), &y = ctx.in(1);
    CB_CHECK(dy.dims() == y.dims(), ctx.node.describe() << ": dy " << dims_str(dy.dims()) << " and y "
                                                        << dims_str(y.dims()) << " differ in shape");
    if (y.numel() == 0) return;
    const long long cols = y.dim(y.rank() - 1), rows = y.numel() / cols;
    CB_CHECK(rows <= 0x7fffffff, ctx.node.describe() << ": " << rows << " rows are too many for one launch");
    CB_LAUNCH(softmax_grad_kernel, unsigned(rows), kThreads, 0, launch_.stream)
    (dy.data<float>(), y.data<float>(), ctx.out(0).data<float>(), cols, log_);
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
  bool log_;
};

// ---- LayerNormalizationGrad over the last axis ----

// Row r: its mean and 1/sqrt(var + eps) into stats[2r..], and dx.
__global__ void layer_norm_grad_rows_kernel(const float* dy, const float* x, const float* scale, float* dx,
                                            double* stats, long long n, double eps) {
  __shared__ double shared[32];
  const long long r = blockIdx.x;
  const float* xr = x + r * n;
  const float* gr = dy + r * n;
  double s = 0;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) s += xr[i];
  const double mean = block_sum(s, shared) / double(n);
  double q = 0;
  for (long long i = threadIdx.x; i < n; i += blockDim.x) q += (xr[i] - mean) * (xr[i] - mean);
  const double inv = 1.0 / sqrt(block_sum(q, shared) / double(n) + eps);
  if (threadIdx.x == 0) {
    stats[2 * r] = mean;
    stats[2 * r + 1] = inv;
  }
  if (!dx) return;
  double m1 = 0, m2 = 0;  // mean of dxhat and of dxhat * xhat
  for (long long i = threadIdx.x; i < n; i += blockDim.x) {
    const double xhat = (xr[i] - mean) * inv, dxhat = double(gr[i]) * scale[i];
    m1 += dxhat;
    m2 += dxhat * xhat;
  }
  m1 = block_sum(m1, shared) / double(n);
  m2 = block_sum(m2, shared) / double(n);
  for (long long i = threadIdx.x; i < n; i += blockDim.x) {
    const double xhat = (xr[i] - mean) * inv, dxhat = double(gr[i]) * scale[i];
    dx[r * n + i] = float(inv * (dxhat - m1 - xhat * m2));
  }
}

// Column i: dscale[i] = sum over rows of dy * xhat, dbias[i] = sum of dy.
__global__ void layer_norm_grad_columns_kernel(const float* dy, const float* x, const double* stats, float* dscale,
                                               float* dbias, long long rows, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    double ds = 0, db = 0;
    for (long long r = 0; r < rows; ++r) {
      const double g = dy[r * n + i];
      ds += g * ((x[r * n + i] - stats[2 * r]) * stats[2 * r + 1]);
      db += g;
    }
    if (dscale) dscale[i] = float(ds);
    if (dbias) dbias[i] = float(db);
  }
}

class LayerNormGradKernel : public Kernel {
 public:
  LayerNormGradKernel(const Node& n, const Launch& l) : launch_(l), eps_(n.attr_float("epsilon", 1e-5f)) {}
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &dy = ctx.in(0), &x = ctx.in(1), &scale = ctx.in(2);
    CB_CHECK(dy.dims() == x.dims(), node.describe() << ": dy " << dims_str(dy.dims()) << " and x " << dims_str(x.dims())
                                                    << " differ in shape");
    if (x.numel() == 0) return;
    const long long n = x.dim(x.rank() - 1), rows = x.numel() / n;
    CB_CHECK(scale.numel() == n,
             node.describe() << ": scale " << dims_str(scale.dims()) << " is not the last axis' " << n << " elements");
    CB_CHECK(rows <= 0x7fffffff, node.describe() << ": " << rows << " rows are too many for one launch");
    auto out = [&](size_t i) {
      return ctx.outputs.size() > i && ctx.outputs[i] ? ctx.outputs[i]->data<float>() : nullptr;
    };
    double* stats = stats_.reserve(node, size_t(rows) * 2);
    CB_LAUNCH(layer_norm_grad_rows_kernel, unsigned(rows), kThreads, 0, launch_.stream)
    (dy.data<float>(), x.data<float>(), scale.data<float>(), out(0), stats, n, double(eps_));
    check_launch(node);
    if (out(1) || out(2)) {
      CB_LAUNCH(layer_norm_grad_columns_kernel, grid_for(n), kThreads, 0, launch_.stream)
      (dy.data<float>(), x.data<float>(), stats, out(1), out(2), rows, n);
      check_launch(node);
    }
  }

 private:
  Launch launch_;
  float eps_;
  DeviceArray<double> stats_;
};

}  // namespace

bool gelu_grad_supports(const Node& n) {
  const std::string a = n.attr_string("approximate", "none");
  return n.inputs.size() == 2 && n.outputs.size() == 1 && all_f32(n) && (a == "none" || a == "tanh");
}
std::unique_ptr<Kernel> make_gelu_grad(const Node& n, const Launch& l) {
  return std::make_unique<GeluGradKernel>(n, l);
}

bool softmax_grad_supports(const Node& n) {
  return n.inputs.size() == 2 && n.outputs.size() == 1 && all_f32(n) && is_last_axis(n, 1);
}
std::unique_ptr<Kernel> make_softmax_grad(const Node& n, const Launch& l) {
  return std::make_unique<SoftmaxGradKernel>(n, l);
}

bool layer_norm_grad_supports(const Node& n) {
  // Normalised over the last axis only, a scale of that axis' size.
  if (n.inputs.size() != 3 || !all_f32(n) || !is_last_axis(n, 1) || !rank_is(n.inputs[2], 1)) return false;
  return n.outputs.size() >= 1 && n.outputs.size() <= 3;
}
std::unique_ptr<Kernel> make_layer_norm_grad(const Node& n, const Launch& l) {
  return std::make_unique<LayerNormGradKernel>(n, l);
}

}  // namespace cb::cuda
