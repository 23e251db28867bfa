// Reductions on CUDA (f32): ReduceSum, ReduceSumSquare and ReduceMean over
// constant axes (the training step's bias gradients, gradient norms and
// losses), and the variadic Sum of same-shaped inputs (gradient
// accumulation). One thread per output element sums its reduced elements in
// double, in the order of the input's layout, so results do not depend on
// the launch.
#include "backends/cuda/cuda_common.h"

namespace cb::cuda {

namespace {

enum class Reduce { sum, sum_square, mean };

// Output element o reads x at kept(o) + every offset of the reduced index
// space: the kept dims (in output order, their input strides) and the
// reduced dims with theirs.
struct ReduceIndex {
  int kept_rank, reduced_rank;
  long long kept_dims[kMaxRank], kept_strides[kMaxRank];
  long long reduced_dims[kMaxRank], reduced_strides[kMaxRank];
  long long reduced_count;
};

__global__ void reduce_kernel(const float* x, float* y, long long outputs, ReduceIndex ix, Reduce op) {
  for (long long o = blockIdx.x * (long long)blockDim.x + threadIdx.x; o < outputs;
       o += (long long)gridDim.x * blockDim.x) {
    long long base = 0, rest = o;
    for (int d = ix.kept_rank - 1; d >= 0; --d) {
      base += rest % ix.kept_dims[d] * ix.kept_strides[d];
      rest /= ix.kept_dims[d];
    }
    double acc = 0;
    for (long long r = 0; r < ix.reduced_count; ++r) {
      long long off = base, q = r;
      for (int d = ix.reduced_rank - 1; d >= 0; --d) {
        off += q % ix.reduced_dims[d] * ix.reduced_strides[d];
        q /= ix.reduced_dims[d];
      }
      const double v = x[off];
      acc += op == Reduce::sum_square ? v * v : v;
    }
    if (op == Reduce::mean) acc /= double(ix.reduced_count);
    y[o] = float(acc);
  }
}

// The axes a node reduces (ir: the axes input, else all unless
// noop_with_empty_axes), from its constant axes input.
std::vector<bool> reduced_axes_of(const Node& n, size_t rank) {
  std::vector<int64_t> axes;
  if (const Tensor* t = constant_input(n, 1)) axes = t->to_int_vector();
  std::vector<bool> reduced(rank, false);
  if (axes.empty()) {
    if (n.attr_int("noop_with_empty_axes", 0) == 0) reduced.assign(rank, true);
    return reduced;
  }
  for (int64_t a : axes) {
    const int64_t d = a < 0 ? a + int64_t(rank) : a;
    CB_CHECK(d >= 0 && d < int64_t(rank), n.describe() << ": axis " << a << " out of range for rank " << rank);
    reduced[size_t(d)] = true;
  }
  return reduced;
}

class ReduceKernel : public Kernel {
 public:
  ReduceKernel(Reduce op, const Launch& l) : op_(op), launch_(l) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    CB_CHECK(x.rank() <= size_t(kMaxRank), ctx.node.describe() << ": rank " << x.rank() << " is over " << kMaxRank);
    const std::vector<bool> reduced = reduced_axes_of(ctx.node, x.rank());
    ReduceIndex ix{};
    ix.reduced_count = 1;
    long long stride = 1;
    for (size_t d = x.rank(); d-- > 0;) {
      const long long dim = x.dim(d);
      if (reduced[d]) {
        ix.reduced_dims[ix.reduced_rank] = dim;
        ix.reduced_strides[ix.reduced_rank++] = stride;
        ix.reduced_count *= dim;
      } else {
        ix.kept_dims[ix.kept_rank] = dim;
        ix.kept_strides[ix.kept_rank++] = stride;
      }
      stride *= dim;
    }
    // Collected innermost first: put them in layout order.
    std::reverse(ix.kept_dims, ix.kept_dims + ix.kept_rank);
    std::reverse(ix.kept_strides, ix.kept_strides + ix.kept_rank);
    std::reverse(ix.reduced_dims, ix.reduced_dims + ix.reduced_rank);
    std::reverse(ix.reduced_strides, ix.reduced_strides + ix.reduced_rank);
    const long long outputs = y.numel();
    CB_CHECK(outputs * ix.reduced_count == x.numel() || x.numel() == 0,
             ctx.node.describe() << ": output " << dims_str(y.dims()) << " does not match the reduction of "
                                 << dims_str(x.dims()));
    if (outputs == 0) return;
    CB_LAUNCH(reduce_kernel, grid_for(outputs), kThreads, 0, launch_.stream)
    (x.data<float>(), y.data<float>(), outputs, ix, op_);
    check_launch(ctx.node);
  }

 private:
  Reduce op_;
  Launch launch_;
};

// ---- Sum: y = x0 + x1 + ... (same shapes), in input order ----

constexpr int kMaxSumInputs = 8;
struct SumInputs {
  const float* x[kMaxSumInputs];
  int count;
};

__global__ void sum_kernel(SumInputs in, float* y, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float acc = in.x[0][i];
    for (int k = 1; k < in.count; ++k) acc += in.x[k][i];
    y[i] = acc;
  }
}

class SumKernel : public Kernel {
 public:
  explicit SumKernel(const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    Tensor& y = ctx.out(0);
    SumInputs in{};
    for (const Tensor* t : ctx.inputs) {
      CB_CHECK(t && t->dims() == y.dims(), ctx.node.describe() << ": an input's shape is not the output's "
                                                               << dims_str(y.dims()) << " (broadcasting: on the CPU)");
      in.x[in.count++] = t->data<float>();
    }
    if (y.numel() == 0) return;
    CB_LAUNCH(sum_kernel, grid_for(y.numel()), kThreads, 0, launch_.stream)(in, y.data<float>(), y.numel());
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
};

bool reduce_inputs_ok(const Node& n) {
  if (n.inputs.empty() || !is_f32(n.inputs[0]) || !rank_at_most(n.inputs[0], kMaxRank)) return false;
  if (n.outputs.size() != 1 || !is_f32(n.outputs[0])) return false;
  return n.inputs.size() < 2 || !n.inputs[1] || constant_input(n, 1);  // computed axes size by value: host
}

}  // namespace

bool reduce_supports(const Node& n) { return reduce_inputs_ok(n); }

std::unique_ptr<Kernel> make_reduce(const Node& n, const Launch& l) {
  const Reduce op = n.op_type == "ReduceSum"    ? Reduce::sum
                    : n.op_type == "ReduceMean" ? Reduce::mean
                                                : Reduce::sum_square;
  return std::make_unique<ReduceKernel>(op, l);
}

bool sum_supports(const Node& n) {
  if (n.inputs.empty() || n.inputs.size() > size_t(kMaxSumInputs) || !all_f32(n) || n.outputs.size() != 1) return false;
  // Same shapes only: every input's static shape is the output's.
  const Value* y = n.outputs[0];
  for (const Value* v : n.inputs)
    if (!v || !(v->type.shape == y->type.shape) || !v->type.shape.rank_known) return false;
  return true;
}

std::unique_ptr<Kernel> make_sum(const Node&, const Launch& l) { return std::make_unique<SumKernel>(l); }

}  // namespace cb::cuda
