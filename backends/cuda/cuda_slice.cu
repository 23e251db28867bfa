// Slice and its gradient on CUDA (f32 data), with constant starts, ends, axes
// and steps (GPT-NeoX's rotary halves in the forward and the training step):
// the runtime sizes their outputs from those values, read from the host
// constants behind their device copies, and the kernels read them from the
// node (constant_input) when they are made, never from device memory.
//   Slice:     y[i] = x[base + sum_d c_d * stride_d]   (c: i's coordinates in y)
//   SliceGrad: zeros(shape), then out[base + sum_d c_d * stride_d] = dy[i]
// base and the strides come from the starts and steps as ONNX clamps them,
// as the reference computes them (backends/reference/grad.cpp).
#include "backends/cuda/cuda_common.h"

namespace cb::cuda {

namespace {

// The sliced index space (dims) and, per dim, the stride in the whole
// tensor that one step along it takes; base is where coordinate 0 sits.
struct SliceMap {
  int rank;
  long long dims[kMaxRank], strides[kMaxRank];
  long long base;
};

__device__ inline long long whole_offset(const SliceMap& m, long long i) {
  long long off = m.base;
  for (int d = m.rank - 1; d >= 0; --d) {
    off += i % m.dims[d] * m.strides[d];
    i /= m.dims[d];
  }
  return off;
}

__global__ void slice_kernel(const float* whole, float* part, long long n, SliceMap m) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    part[i] = whole[whole_offset(m, i)];
}

__global__ void slice_grad_kernel(const float* part, float* whole, long long n, SliceMap m) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    whole[whole_offset(m, i)] = part[i];
}

// The index inputs: starts, ends, axes and steps at `first`, first + 1, ...
struct SliceArgs {
  std::vector<int64_t> starts, axes, steps;
};

SliceArgs slice_args(const Node& n, size_t first) {
  SliceArgs a;
  a.starts = constant_input(n, first)->to_int_vector();
  const size_t count = a.starts.size();
  if (const Tensor* t = constant_input(n, first + 2))
    a.axes = t->to_int_vector();
  else
    for (size_t i = 0; i < count; ++i) a.axes.push_back(int64_t(i));
  a.steps.assign(count, 1);
  if (const Tensor* t = constant_input(n, first + 3)) a.steps = t->to_int_vector();
  CB_CHECK(a.axes.size() == count && a.steps.size() == count, n.describe()
                                                                  << ": starts, axes and steps differ in length");
  return a;
}

SliceMap slice_map(const Node& node, const SliceArgs& a, const Tensor& whole, const Tensor& part) {
  const size_t r = whole.rank();
  CB_CHECK(part.rank() == r && r <= size_t(kMaxRank),
           node.describe() << ": " << dims_str(part.dims()) << " and " << dims_str(whole.dims()) << " differ in rank");
  SliceMap m{};
  m.rank = int(r);
  std::vector<long long> whole_strides(r);
  long long s = 1;
  for (size_t d = r; d-- > 0;) {
    whole_strides[d] = s;
    s *= whole.dim(d);
  }
  for (size_t d = 0; d < r; ++d) {
    m.dims[d] = part.dim(d);
    m.strides[d] = whole_strides[d];
  }
  for (size_t i = 0; i < a.starts.size(); ++i) {
    int64_t axis = a.axes[i] < 0 ? a.axes[i] + int64_t(r) : a.axes[i];
    CB_CHECK(axis >= 0 && axis < int64_t(r), node.describe() << ": axis " << a.axes[i] << " out of range");
    const int64_t dim = whole.dim(size_t(axis)), step = a.steps[i];
    CB_CHECK(step != 0, node.describe() << ": a step is 0");
    int64_t start = a.starts[i] < 0 ? a.starts[i] + dim : a.starts[i];
    start = step > 0 ? std::min(std::max<int64_t>(start, 0), dim) : std::min(std::max<int64_t>(start, 0), dim - 1);
    m.base += start * whole_strides[size_t(axis)];
    m.strides[axis] = part.dim(size_t(axis)) > 1 ? whole_strides[size_t(axis)] * step : 0;
  }
  return m;
}

class SliceKernel : public Kernel {
 public:
  SliceKernel(const Node& n, const Launch& l, bool grad)
      : launch_(l), grad_(grad), args_(slice_args(n, grad ? 2 : 1)) {}
  void run(KernelContext& ctx) override {
    if (!grad_) {
      const Tensor& x = ctx.in(0);
      Tensor& y = ctx.out(0);
      if (y.numel() == 0) return;
      CB_LAUNCH(slice_kernel, grid_for(y.numel()), kThreads, 0, launch_.stream)
      (x.data<float>(), y.data<float>(), y.numel(), slice_map(ctx.node, args_, x, y));
    } else {
      const Tensor& dy = ctx.in(0);
      Tensor& out = ctx.out(0);
      if (out.numel() == 0) return;
      check_cuda(ctx.node, cudaMemsetAsync(out.raw(), 0, out.nbytes(), launch_.stream), "cudaMemsetAsync");
      if (dy.numel() == 0) return;
      CB_LAUNCH(slice_grad_kernel, grid_for(dy.numel()), kThreads, 0, launch_.stream)
      (dy.data<float>(), out.data<float>(), dy.numel(), slice_map(ctx.node, args_, out, dy));
    }
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
  bool grad_;
  SliceArgs args_;
};

// Data f32 of rank <= kMaxRank, and every index input from `first` a constant
// (ends included: the runtime sizes the output from them).
bool slice_like_supports(const Node& n, size_t first) {
  if (n.inputs.size() < first + 2 || !is_f32(n.inputs[0]) || !rank_at_most(n.inputs[0], kMaxRank)) return false;
  if (n.outputs.size() != 1 || !is_f32(n.outputs[0])) return false;
  for (size_t i = first; i < n.inputs.size(); ++i)
    if (n.inputs[i] && !constant_input(n, i)) return false;
  return constant_input(n, first) && constant_input(n, first + 1);
}

}  // namespace

bool slice_supports(const Node& n) { return slice_like_supports(n, 1); }
std::unique_ptr<Kernel> make_slice(const Node& n, const Launch& l) {
  return std::make_unique<SliceKernel>(n, l, false);
}

// The shape input only sizes the output (read on the host by shape inference).
bool slice_grad_supports(const Node& n) { return slice_like_supports(n, 2); }
std::unique_ptr<Kernel> make_slice_grad(const Node& n, const Launch& l) {
  return std::make_unique<SliceKernel>(n, l, true);
}

}  // namespace cb::cuda
