// Element indexing on CUDA (f32 data, int64 indices), the training loss's
// ops: GatherElements, ScatterElements (reduction none or add), the
// embedding gradient codebook.grad.GatherGrad, and ArgMax (the accuracy,
// which would otherwise copy the logits to the host). Where several indices
// may hit one output (scatter, the embedding gradient), each thread owns the
// outputs of one "line" (every coordinate but the indexed axis) and walks
// the indices in order, so results are deterministic and the reference's.
// An index out of range is a cb::Error naming the node, as on the host (one
// stream synchronisation per call).
#include "backends/cuda/cuda_common.h"

namespace cb::cuda {

namespace {

// Dims and contiguous strides of up to kMaxRank dims.
struct Shape8 {
  int rank;
  long long dims[kMaxRank], strides[kMaxRank];
};

Shape8 shape_of(const Node& n, const Tensor& t) {
  CB_CHECK(t.rank() <= size_t(kMaxRank), n.describe() << ": rank " << t.rank() << " is over " << kMaxRank);
  Shape8 s{};
  s.rank = int(t.rank());
  long long stride = 1;
  for (int d = s.rank - 1; d >= 0; --d) {
    s.dims[d] = t.dim(size_t(d));
    s.strides[d] = stride;
    stride *= s.dims[d];
  }
  return s;
}

// The data offset of index-space element i (coordinates over `index`),
// with the axis coordinate replaced by `at`.
__device__ inline long long data_offset(const Shape8& index, const Shape8& data, int axis, long long i, long long at) {
  long long off = 0;
  for (int d = index.rank - 1; d >= 0; --d) {
    const long long c = i % index.dims[d];
    i /= index.dims[d];
    off += (d == axis ? at : c) * data.strides[d];
  }
  return off;
}

// A wrapped index (negative counts from the end), or -1 with *bad set.
__device__ inline long long wrapped(int64_t v, long long size, int* bad) {
  if (v < 0) v += size;
  if (v < 0 || v >= size) {
    atomicExch(bad, 1);
    return -1;
  }
  return v;
}

__global__ void gather_elements_kernel(const float* x, const int64_t* idx, float* y, Shape8 index, Shape8 data,
                                       int axis, long long n, int* bad) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    const long long at = wrapped(idx[i], data.dims[axis], bad);
    y[i] = at < 0 ? 0.f : x[data_offset(index, data, axis, i, at)];
  }
}

// Line l of the index space: coordinates with the axis coordinate 0.
__device__ inline long long line_start(const Shape8& index, int axis, long long l) {
  long long i = 0, stride = 1;
  for (int d = index.rank - 1; d >= 0; --d) {
    if (d == axis) {
      stride *= index.dims[d];
      continue;
    }
    i += l % index.dims[d] * stride;
    l /= index.dims[d];
    stride *= index.dims[d];
  }
  return i;
}

__global__ void scatter_elements_kernel(float* out, const int64_t* idx, const float* updates, Shape8 index, Shape8 data,
                                        int axis, long long lines, bool add, int* bad) {
  for (long long l = blockIdx.x * (long long)blockDim.x + threadIdx.x; l < lines;
       l += (long long)gridDim.x * blockDim.x) {
    const long long first = line_start(index, axis, l);
    for (long long a = 0; a < index.dims[axis]; ++a) {
      const long long i = first + a * index.strides[axis];
      const long long at = wrapped(idx[i], data.dims[axis], bad);
      if (at < 0) continue;
      float& o = out[data_offset(index, data, axis, i, at)];
      o = add ? o + updates[i] : updates[i];
    }
  }
}

// GatherGrad: out = zeros(shape); out[.., idx[j], ..] += dy[.., j, ..] with
// dy [outer, count, inner] and out [outer, size, inner]: a thread per
// (outer, inner) walks j in order.
__global__ void gather_grad_kernel(const float* dy, const int64_t* idx, float* out, long long outer, long long count,
                                   long long size, long long inner, int* bad) {
  for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < outer * inner;
       t += (long long)gridDim.x * blockDim.x) {
    const long long o = t / inner, e = t % inner;
    for (long long j = 0; j < count; ++j) {
      const long long at = wrapped(idx[j], size, bad);
      if (at >= 0) out[(o * size + at) * inner + e] += dy[(o * count + j) * inner + e];
    }
  }
}

// ArgMax along the axis of x [outer, n, inner]: the first largest.
__global__ void arg_max_kernel(const float* x, int64_t* y, long long outer, long long n, long long inner) {
  for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < outer * inner;
       t += (long long)gridDim.x * blockDim.x) {
    const long long o = t / inner, e = t % inner;
    long long best = 0;
    for (long long j = 1; j < n; ++j)
      if (x[(o * n + j) * inner + e] > x[(o * n + best) * inner + e]) best = j;
    y[t] = best;
  }
}

class ElementsKernel : public Kernel {
 public:
  ElementsKernel(const Node& n, const Launch& l) : launch_(l), scatter_(n.op_type == "ScatterElements") {
    add_ = n.attr_string("reduction", "none") == "add";
  }
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &data = ctx.in(0), &indices = ctx.in(1);
    Tensor& out = ctx.out(0);
    CB_CHECK(indices.rank() == data.rank(), node.describe() << ": indices " << dims_str(indices.dims()) << " and data "
                                                            << dims_str(data.dims()) << " differ in rank");
    const int axis = int(axis_attribute(node, data.rank()));
    const Shape8 index = shape_of(node, indices), whole = shape_of(node, data);
    const cudaStream_t s = launch_.stream;
    if (!scatter_) {
      if (out.numel() == 0) return;
      int* bad = bad_.reset(node, s);
      CB_LAUNCH(gather_elements_kernel, grid_for(out.numel()), kThreads, 0, s)
      (data.data<float>(), indices.data<int64_t>(), out.data<float>(), index, whole, axis, out.numel(), bad);
    } else {
      const Tensor& updates = ctx.in(2);
      CB_CHECK(updates.dims() == indices.dims(), node.describe()
                                                     << ": updates " << dims_str(updates.dims()) << " and indices "
                                                     << dims_str(indices.dims()) << " differ in shape");
      if (out.nbytes())
        check_cuda(node, cudaMemcpyAsync(out.raw(), data.raw(), out.nbytes(), cudaMemcpyDeviceToDevice, s),
                   "cudaMemcpyAsync");
      if (indices.numel() == 0) return;
      const long long lines = indices.numel() / indices.dim(size_t(axis));
      int* bad = bad_.reset(node, s);
      CB_LAUNCH(scatter_elements_kernel, grid_for(lines), kThreads, 0, s)
      (out.data<float>(), indices.data<int64_t>(), updates.data<float>(), index, whole, axis, lines, add_, bad);
    }
    check_launch(node);
    CB_CHECK(!bad_.raised(node, s), node.describe()
                                        << ": an index is out of range for an axis of size " << data.dim(size_t(axis)));
  }

 private:
  Launch launch_;
  bool scatter_, add_ = false;
  DeviceFlag bad_;
};

class GatherGradKernel : public Kernel {
 public:
  GatherGradKernel(const Node&, const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &dy = ctx.in(0), &indices = ctx.in(1);
    Tensor& out = ctx.out(0);
    const int64_t axis = axis_attribute(node, out.rank());
    long long outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= out.dim(size_t(d));
    for (size_t d = size_t(axis) + 1; d < out.rank(); ++d) inner *= out.dim(d);
    const long long count = indices.numel(), size = out.dim(size_t(axis));
    CB_CHECK(dy.numel() == outer * count * inner, node.describe()
                                                      << ": dy " << dims_str(dy.dims()) << " does not match " << count
                                                      << " indices into " << dims_str(out.dims()));
    const cudaStream_t s = launch_.stream;
    if (out.nbytes()) check_cuda(node, cudaMemsetAsync(out.raw(), 0, out.nbytes(), s), "cudaMemsetAsync");
    if (outer * inner == 0 || count == 0) return;
    int* bad = bad_.reset(node, s);
    CB_LAUNCH(gather_grad_kernel, grid_for(outer * inner), kThreads, 0, s)
    (dy.data<float>(), indices.data<int64_t>(), out.data<float>(), outer, count, size, inner, bad);
    check_launch(node);
    CB_CHECK(!bad_.raised(node, s), node.describe() << ": an index is out of range for an axis of size " << size);
  }

 private:
  Launch launch_;
  DeviceFlag bad_;
};

class ArgMaxKernel : public Kernel {
 public:
  explicit ArgMaxKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    const int64_t axis = axis_attribute(ctx.node, x.rank());
    long long outer = 1, inner = 1;
    for (int64_t d = 0; d < axis; ++d) outer *= x.dim(size_t(d));
    for (size_t d = size_t(axis) + 1; d < x.rank(); ++d) inner *= x.dim(d);
    const long long n = x.dim(size_t(axis));
    CB_CHECK(n > 0, ctx.node.describe() << ": ArgMax over an empty axis");
    if (outer * inner == 0) return;
    CB_LAUNCH(arg_max_kernel, grid_for(outer * inner), kThreads, 0, launch_.stream)
    (x.data<float>(), ctx.out(0).data<int64_t>(), outer, n, inner);
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
};

}  // namespace

bool elements_supports(const Node& n) {  // GatherElements, ScatterElements
  const bool scatter = n.op_type == "ScatterElements";
  if (n.inputs.size() != (scatter ? 3u : 2u) || n.outputs.size() != 1) return false;
  if (!is_f32(n.inputs[0]) || !is_dtype(n.inputs[1], DType::i64) || !is_f32(n.outputs[0])) return false;
  if (!rank_at_most(n.inputs[0], kMaxRank)) return false;
  const std::string reduction = n.attr_string("reduction", "none");
  return !scatter || (is_f32(n.inputs[2]) && (reduction == "none" || reduction == "add"));
}
std::unique_ptr<Kernel> make_elements(const Node& n, const Launch& l) { return std::make_unique<ElementsKernel>(n, l); }

bool gather_grad_supports(const Node& n) {
  // GatherGrad(dy, indices, shape): the shape sizes the output on the host.
  return n.inputs.size() == 3 && is_f32(n.inputs[0]) && is_dtype(n.inputs[1], DType::i64) && n.outputs.size() == 1 &&
         is_f32(n.outputs[0]);
}
std::unique_ptr<Kernel> make_gather_grad(const Node& n, const Launch& l) {
  return std::make_unique<GatherGradKernel>(n, l);
}

bool arg_max_supports(const Node& n) {
  return n.inputs.size() == 1 && is_f32(n.inputs[0]) && n.outputs.size() == 1 && is_dtype(n.outputs[0], DType::i64) &&
         n.attr_int("select_last_index", 0) == 0;
}
std::unique_ptr<Kernel> make_arg_max(const Node&, const Launch& l) { return std::make_unique<ArgMaxKernel>(l); }

}  // namespace cb::cuda
