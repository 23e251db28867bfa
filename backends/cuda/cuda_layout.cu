// Data-movement CUDA kernels: Transpose, Concat, Split, Gather (f32 data,
// i64/i32 indices: the embeddings) and Cast (to f32).
//
// Reshape, Unsqueeze, Squeeze, Expand and Split by a `split` input have an
// index input (shape, axes, sizes) whose *value* sizes their outputs. Shape
// inference reads it on the host: a constant's host copy, or the host value
// behind this run's copy to the device (docs/cuda.md#views). Their kernels
// never read it.
#include "backends/cuda/cuda_common.h"

namespace cb::cuda {

namespace {

// y[i] = x[offset of i], the offsets from strides over y's index space.
__global__ void strided_copy_kernel(const float* x, float* y, long long n, BroadcastIndex ix) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    long long off;
    broadcast_offsets(ix, i, 1, &off);
    y[i] = x[off];
  }
}

class TransposeKernel : public Kernel {
 public:
  TransposeKernel(const Node& n, const Launch& l) : launch_(l), perm_(n.attr_ints("perm")) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    const size_t r = x.rank();
    std::vector<int64_t> perm = perm_;
    if (perm.empty())
      for (size_t d = r; d-- > 0;) perm.push_back(int64_t(d));  // default: reversed
    CB_CHECK(perm.size() == r && r <= size_t(kMaxRank), ctx.node.describe()
                                                            << ": perm of " << perm.size() << " axes for rank " << r);
    std::vector<long long> in_stride(r);
    long long s = 1;
    for (size_t d = r; d-- > 0;) {
      in_stride[d] = s;
      s *= x.dim(d);
    }
    BroadcastIndex ix{};
    ix.rank = int(r);
    for (size_t d = 0; d < r; ++d) {
      ix.dims[d] = y.dim(d);
      ix.strides[0][d] = in_stride[size_t(perm[d] < 0 ? perm[d] + int64_t(r) : perm[d])];
    }
    const long long n = y.numel();
    if (n == 0) return;
    CB_LAUNCH(strided_copy_kernel, grid_for(n), kThreads, 0, launch_.stream)(x.data<float>(), y.data<float>(), n, ix);
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
  std::vector<int64_t> perm_;
};

// Concat and Split: each part is a [outer, part's axis dim * inner] block of
// the whole's [outer, whole's axis dim * inner] rows, one 2-D memcpy each.
struct Blocks {
  int64_t outer = 1, inner = 1;
};

Blocks blocks_of(const Tensor& whole, int64_t axis) {
  Blocks b;
  for (int64_t d = 0; d < axis; ++d) b.outer *= whole.dim(size_t(d));
  for (size_t d = size_t(axis) + 1; d < whole.rank(); ++d) b.inner *= whole.dim(d);
  return b;
}

void copy_block(const Node& n, cudaStream_t s, float* dst, int64_t dst_row, const float* src, int64_t src_row,
                int64_t width, int64_t rows) {
  if (width == 0 || rows == 0) return;
  if (rows == 1) {  // one run of bytes (no pitch, whose size cudaMemcpy2D limits)
    check_cuda(n, cudaMemcpyAsync(dst, src, size_t(width) * sizeof(float), cudaMemcpyDeviceToDevice, s),
               "cudaMemcpyAsync");
    return;
  }
  check_cuda(n,
             cudaMemcpy2DAsync(dst, size_t(dst_row) * sizeof(float), src, size_t(src_row) * sizeof(float),
                               size_t(width) * sizeof(float), size_t(rows), cudaMemcpyDeviceToDevice, s),
             "cudaMemcpy2DAsync");
}

class ConcatKernel : public Kernel {
 public:
  explicit ConcatKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    Tensor& y = ctx.out(0);
    const int64_t axis = axis_attribute(ctx.node, y.rank());
    const Blocks b = blocks_of(y, axis);
    const int64_t row = y.dim(size_t(axis)) * b.inner;
    int64_t at = 0;
    for (const Tensor* x : ctx.inputs) {
      if (!x) continue;
      const int64_t width = x->dim(size_t(axis)) * b.inner;
      copy_block(ctx.node, launch_.stream, y.data<float>() + at, row, x->data<float>(), width, width, b.outer);
      at += width;
    }
  }

 private:
  Launch launch_;
};

class SplitKernel : public Kernel {
 public:
  explicit SplitKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    const int64_t axis = axis_attribute(ctx.node, x.rank());
    const Blocks b = blocks_of(x, axis);
    const int64_t row = x.dim(size_t(axis)) * b.inner;
    int64_t at = 0;
    for (Tensor* y : ctx.outputs) {
      if (!y) continue;  // an omitted output still takes its part of the axis: not supported
      const int64_t width = y->dim(size_t(axis)) * b.inner;
      copy_block(ctx.node, launch_.stream, y->data<float>(), width, x.data<float>() + at, row, width, b.outer);
      at += width;
    }
    CB_CHECK(at == row, ctx.node.describe() << ": the outputs do not cover the split axis");
  }

 private:
  Launch launch_;
};

// ---- Gather: y[o, j, i] = x[o, index[j], i] ----

template <typename I>
__global__ void gather_kernel(const float* x, const I* index, float* y, long long outer, long long count,
                              long long size, long long inner, int* bad) {
  const long long n = outer * count * inner;
  for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < n; t += (long long)gridDim.x * blockDim.x) {
    const long long i = t % inner, j = (t / inner) % count, o = t / (inner * count);
    long long v = (long long)index[j];
    if (v < -size || v >= size) {
      atomicExch(bad, 1);
      y[t] = NAN;
      continue;
    }
    if (v < 0) v += size;
    y[t] = x[(o * size + v) * inner + i];
  }
}

class GatherKernel : public Kernel {
 public:
  explicit GatherKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &x = ctx.in(0), &index = ctx.in(1);
    Tensor& y = ctx.out(0);
    const int64_t axis = axis_attribute(node, x.rank());
    const Blocks b = blocks_of(x, axis);
    const int64_t size = x.dim(size_t(axis)), count = index.numel();
    if (y.numel() == 0) return;
    int* bad = bad_.reset(node, launch_.stream);
    const long long n = y.numel();
    if (index.dtype() == DType::i64) {
      CB_LAUNCH(gather_kernel<int64_t>, grid_for(n), kThreads, 0, launch_.stream)
      (x.data<float>(), index.data<int64_t>(), y.data<float>(), b.outer, count, size, b.inner, bad);
    } else {
      CB_LAUNCH(gather_kernel<int32_t>, grid_for(n), kThreads, 0, launch_.stream)
      (x.data<float>(), index.data<int32_t>(), y.data<float>(), b.outer, count, size, b.inner, bad);
    }
    check_launch(node);
    // An index out of range is an error, as on the host: this waits for the
    // gather (an embedding lookup, once per forward).
    CB_CHECK(!bad_.raised(node, launch_.stream),
             node.describe() << ": an index is out of range for the gather axis of size " << size << " (input shapes "
                             << dims_str(x.dims()) << ", " << dims_str(index.dims()) << ")");
  }

 private:
  Launch launch_;
  DeviceFlag bad_;
};

// ---- Cast to f32 ----

template <typename From>
__global__ void to_f32_kernel(const From* x, float* y, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    y[i] = float(x[i]);
}

class CastKernel : public Kernel {
 public:
  explicit CastKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    const long long n = y.numel();
    if (n == 0) return;
    switch (x.dtype()) {
      case DType::f32:  // a copy: an output sharing device memory with its input would escape the memory plan
        check_cuda(ctx.node, cudaMemcpyAsync(y.raw(), x.raw(), y.nbytes(), cudaMemcpyDeviceToDevice, launch_.stream),
                   "cudaMemcpyAsync");
        return;
      case DType::i64:
        CB_LAUNCH(to_f32_kernel<int64_t>, grid_for(n), kThreads, 0, launch_.stream)
        (x.data<int64_t>(), y.data<float>(), n);
        break;
      case DType::i32:
        CB_LAUNCH(to_f32_kernel<int32_t>, grid_for(n), kThreads, 0, launch_.stream)
        (x.data<int32_t>(), y.data<float>(), n);
        break;
      default:
        CB_LAUNCH(to_f32_kernel<bool>, grid_for(n), kThreads, 0, launch_.stream)(x.data<bool>(), y.data<float>(), n);
    }
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
};

// ---- Expand: x broadcast to the output's shape ----

class ExpandKernel : public Kernel {
 public:
  explicit ExpandKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    if (y.numel() == 0) return;
    const BroadcastIndex ix = broadcast_index(ctx.node, {&x}, y);
    CB_LAUNCH(strided_copy_kernel, grid_for(y.numel()), kThreads, 0, launch_.stream)
    (x.data<float>(), y.data<float>(), y.numel(), ix);
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
};

// ---- ConstantOfShape (f32): every element `value` ----

__global__ void fill_kernel(float* y, long long n, float value) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    y[i] = value;
}

class FillKernel : public Kernel {
 public:
  FillKernel(const Launch& l, float value) : launch_(l), value_(value) {}
  void run(KernelContext& ctx) override {
    Tensor& y = ctx.out(0);
    if (y.numel() == 0) return;
    CB_LAUNCH(fill_kernel, grid_for(y.numel()), kThreads, 0, launch_.stream)(y.data<float>(), y.numel(), value_);
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
  float value_;
};

// ---- Reshape, Unsqueeze, Squeeze, Flatten, Identity: the same bytes ----

class ViewKernel : public Kernel {
 public:
  explicit ViewKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    CB_CHECK(x.nbytes() == y.nbytes(), ctx.node.describe() << ": " << dims_str(x.dims()) << " into "
                                                           << dims_str(y.dims()) << " changes the size");
    // A copy, as Cast's: an output sharing its input's memory would escape the memory plan.
    if (y.nbytes() && y.raw() != x.raw())
      check_cuda(ctx.node, cudaMemcpyAsync(y.raw(), x.raw(), y.nbytes(), cudaMemcpyDeviceToDevice, launch_.stream),
                 "cudaMemcpyAsync");
  }

 private:
  Launch launch_;
};

bool one_f32_output(const Node& n) { return n.outputs.size() == 1 && is_f32(n.outputs[0]); }

}  // namespace

bool transpose_supports(const Node& n) {
  return n.inputs.size() == 1 && all_f32(n) && one_f32_output(n) && rank_at_most(n.inputs[0], kMaxRank);
}

std::unique_ptr<Kernel> make_transpose(const Node& n, const Launch& l) {
  return std::make_unique<TransposeKernel>(n, l);
}

bool concat_supports(const Node& n) {
  for (const Value* v : n.inputs)
    if (!v || !v->type.shape.rank_known) return false;
  return !n.inputs.empty() && all_f32(n) && one_f32_output(n);
}

std::unique_ptr<Kernel> make_concat(const Node&, const Launch& l) { return std::make_unique<ConcatKernel>(l); }

bool split_supports(const Node& n) {
  // A `split` input sizes the outputs by its value, which the runtime's shape
  // inference reads on the host (docs/cuda.md#views); the kernel reads the
  // sizes from the outputs.
  if (n.inputs.empty() || !is_f32(n.inputs[0]) || n.inputs.size() > 2) return false;
  for (const Value* v : n.outputs)
    if (!v || !is_f32(v)) return false;
  return true;
}

std::unique_ptr<Kernel> make_split(const Node&, const Launch& l) { return std::make_unique<SplitKernel>(l); }

bool view_supports(const Node& n) {
  // The shape or axes input sizes the output by its value (read on the host
  // by shape inference); the kernel copies bytes.
  return !n.inputs.empty() && is_f32(n.inputs[0]) && one_f32_output(n) && n.inputs.size() <= 2;
}

bool expand_supports(const Node& n) {
  return n.inputs.size() == 2 && is_f32(n.inputs[0]) && one_f32_output(n) && rank_at_most(n.outputs[0], kMaxRank);
}

std::unique_ptr<Kernel> make_expand(const Node&, const Launch& l) { return std::make_unique<ExpandKernel>(l); }

bool constant_of_shape_supports(const Node& n) {
  const Tensor* value = n.attr_tensor("value");
  return n.inputs.size() == 1 && one_f32_output(n) && (!value || (value->dtype() == DType::f32 && value->numel() == 1));
}

std::unique_ptr<Kernel> make_constant_of_shape(const Node& n, const Launch& l) {
  const Tensor* value = n.attr_tensor("value");
  return std::make_unique<FillKernel>(l, value ? value->data<float>()[0] : 0.f);
}

std::unique_ptr<Kernel> make_view(const Node&, const Launch& l) { return std::make_unique<ViewKernel>(l); }

bool gather_supports(const Node& n) {
  return n.inputs.size() == 2 && is_f32(n.inputs[0]) && rank_at_most(n.inputs[0], kMaxRank) &&
         n.inputs[0]->type.shape.rank() >= 1 &&
         (is_dtype(n.inputs[1], DType::i64) || is_dtype(n.inputs[1], DType::i32)) && one_f32_output(n);
}

std::unique_ptr<Kernel> make_gather(const Node&, const Launch& l) { return std::make_unique<GatherKernel>(l); }

bool cast_supports(const Node& n) {
  if (n.inputs.size() != 1 || !one_f32_output(n) || !n.inputs[0]) return false;
  const DType from = n.inputs[0]->type.dtype;
  return from == DType::f32 || from == DType::i64 || from == DType::i32 || from == DType::boolean;
}

std::unique_ptr<Kernel> make_cast(const Node&, const Launch& l) { return std::make_unique<CastKernel>(l); }

}  // namespace cb::cuda
