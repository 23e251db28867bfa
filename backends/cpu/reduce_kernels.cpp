#include "backends/cpu/reduce_kernels.h"

#include <algorithm>
#include <vector>

#include "backends/cpu/fallback_kernel.h"
#include "backends/cpu/layout_kernels.h"
#include "backends/reference/reduction.h"

namespace cb {

namespace {

// The sum of squares of n floats, in f64: each block of kBlock elements
// adds its squares in kLanes f64 lanes (which vectorise), and the block sums
// are added in block order. The blocks are fixed, so the result does not
// depend on the thread count; it differs from the reference's one running
// sum only by f64 rounding.
constexpr int64_t kBlock = int64_t(1) << 16;
constexpr int kLanes = 8;

double block_sum_of_squares(const float* x, int64_t n) {
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += double(x[i + l]) * double(x[i + l]);
  double total = 0;
  for (; i < n; ++i) total += double(x[i]) * double(x[i]);
  for (double v : lane) total += v;
  return total;
}

class ReduceSumSquareKernel : public FallbackKernel {
 public:
  using FallbackKernel::FallbackKernel;

  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    // The fast case: every axis reduced (no axes given, noop_with_empty_axes
    // 0), f32 in and out.
    const bool all_axes =
        !(ctx.inputs.size() > 1 && ctx.inputs[1]) && ctx.node.attr_int("noop_with_empty_axes", 0) == 0;
    Tensor& y = ctx.out(0);
    if (!all_axes || x.dtype() != DType::f32 || y.dtype() != DType::f32 || y.numel() != 1) return fall_back(ctx);
    const int64_t n = x.numel();
    const float* data = x.data<float>();
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<double> partial(static_cast<size_t>(blocks));
    parallel_chunks(blocks, x.nbytes(), kParallelCopyBytes, std::max(1, ctx.num_threads),
                    [&](int64_t begin, int64_t end) {
                      for (int64_t b = begin; b < end; ++b)
                        partial[size_t(b)] = block_sum_of_squares(data + b * kBlock, std::min(kBlock, n - b * kBlock));
                    });
    double total = 0;
    for (double v : partial) total += v;
    y.data<float>()[0] = float(total);
  }
};

// ReduceSum and ReduceMean of f32 whose reduced axes (those of size > 1)
// are one block of the layout, read as [outer, R, inner]: the bias
// gradients of a training step (sums over batch and sequence) and row sums.
// Each output adds its R terms in f64 in the reference's order, so the bits
// are the reference's; the outputs are split over threads, by rows
// (inner = 1) or by chunks of columns.
template <bool Mean>
class ReduceSumKernel : public FallbackKernel {
 public:
  using FallbackKernel::FallbackKernel;

  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    ReduceBlock view;
    if (x.dtype() != DType::f32 || y.dtype() != DType::f32 || !reduction_block(x.dims(), reduced_axes(ctx), view))
      return fall_back(ctx);
    const int64_t outer = view.outer, reduced = view.reduced, inner = view.inner;
    const float* in = x.data<float>();
    float* out = y.data<float>();
    auto result = [reduced](double acc) { return float(Mean ? acc / double(reduced) : acc); };
    const int threads = std::max(1, ctx.num_threads);
    if (inner == 1) {
      parallel_chunks(outer, x.nbytes(), kParallelComputeBytes, threads, [&](int64_t begin, int64_t end) {
        for (int64_t o = begin; o < end; ++o) {
          double acc = 0;
          const float* row = in + o * reduced;
          for (int64_t k = 0; k < reduced; ++k) acc += double(row[k]);
          out[o] = result(acc);
        }
      });
      return;
    }
    const int64_t chunks = (inner + kColumns - 1) / kColumns;
    parallel_chunks(outer * chunks, x.nbytes(), kParallelComputeBytes, threads, [&](int64_t begin, int64_t end) {
      double acc[kColumns];
      for (int64_t task = begin; task < end; ++task) {
        const int64_t o = task / chunks, c0 = (task % chunks) * kColumns, w = std::min(kColumns, inner - c0);
        std::fill(acc, acc + w, 0.0);
        const float* block = in + o * reduced * inner + c0;
        for (int64_t k = 0; k < reduced; ++k) {
          const float* row = block + k * inner;
          for (int64_t i = 0; i < w; ++i) acc[i] += double(row[i]);
        }
        for (int64_t i = 0; i < w; ++i) out[o * inner + c0 + i] = result(acc[i]);
      }
    });
  }

 private:
  static constexpr int64_t kColumns = 64;
};

}  // namespace

void register_cpu_reduce_kernels(KernelFactoryTable& t) {
  t.add("ReduceSumSquare", make_kernel<ReduceSumSquareKernel>);
  t.add("ReduceSum", make_kernel<ReduceSumKernel<false>>);
  t.add("ReduceMean", make_kernel<ReduceSumKernel<true>>);
}

}  // namespace cb
