#include "backends/cpu/row_kernels.h"

#include <algorithm>

#include "backends/cpu/fallback_kernel.h"
#include "backends/cpu/layout_kernels.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/normalization.h"
#include "backends/reference/softmax.h"
#include "backends/reference/tensor_copy.h"
#include "support/threads.h"

namespace cb {

namespace {

template <bool Log>
class SoftmaxKernel : public FallbackKernel {
 public:
  using FallbackKernel::FallbackKernel;

  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    const size_t axis = size_t(norm_axis(ctx.node.attr_int("axis", -1), int64_t(x.rank())));
    if (x.dtype() != DType::f32 || y.dtype() != DType::f32 || x.rank() == 0 || axis + 1 != x.rank())
      return fall_back(ctx);
    const int64_t n = x.dim(axis), rows = dims_product(x.dims(), 0, axis);
    const float* in = x.data<float>();
    float* out = y.data<float>();
    parallel_chunks(rows, 2 * x.nbytes(), kParallelComputeBytes, std::max(1, ctx.num_threads),
                    [&](int64_t begin, int64_t end) {
                      for (int64_t r = begin; r < end; ++r) softmax_row_f32(in + r * n, out + r * n, n, Log);
                    });
  }
};

// Whether t's dims, less leading 1s, are x's dims from `axis` on, less leading 1s.
bool covers_normalized_dims(const Tensor& t, const Tensor& x, size_t axis) {
  std::vector<int64_t> a = t.dims(), b(x.dims().begin() + long(axis), x.dims().end());
  auto strip = [](std::vector<int64_t>& d) {
    while (!d.empty() && d.front() == 1) d.erase(d.begin());
  };
  strip(a);
  strip(b);
  return a == b;
}

class LayerNormKernel : public FallbackKernel {
 public:
  using FallbackKernel::FallbackKernel;

  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    const Tensor* scale = ctx.inputs.size() > 1 ? ctx.inputs[1] : nullptr;
    const Tensor* bias = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
    Tensor* mean_out = ctx.outputs.size() > 1 ? ctx.outputs[1] : nullptr;
    Tensor* inv_out = ctx.outputs.size() > 2 ? ctx.outputs[2] : nullptr;
    const size_t axis = size_t(norm_axis(ctx.node.attr_int("axis", -1), int64_t(x.rank())));
    auto f32 = [](const Tensor* t) { return !t || t->dtype() == DType::f32; };
    if (x.dtype() != DType::f32 || ctx.out(0).dtype() != DType::f32 || !scale || !bias || !scale->defined() ||
        !bias->defined() || !f32(scale) || !f32(bias) || !f32(mean_out) || !f32(inv_out) || axis >= x.rank() ||
        !covers_normalized_dims(*scale, x, axis) || !covers_normalized_dims(*bias, x, axis))
      return fall_back(ctx);
    const int64_t n = dims_product(x.dims(), axis, x.rank()), rows = dims_product(x.dims(), 0, axis);
    const double eps = ctx.node.attr_float("epsilon", 1e-5f);
    const float* in = x.data<float>();
    float* out = ctx.out(0).data<float>();
    const float* sp = scale->data<float>();
    const float* bp = bias->data<float>();
    float* means = mean_out && mean_out->defined() ? mean_out->data<float>() : nullptr;
    float* invs = inv_out && inv_out->defined() ? inv_out->data<float>() : nullptr;
    parallel_chunks(rows, 2 * x.nbytes(), kParallelComputeBytes, std::max(1, ctx.num_threads),
                    [&](int64_t begin, int64_t end) {
                      for (int64_t r = begin; r < end; ++r) {
                        const LayerNormStats st = layer_norm_stats_f32(in + r * n, n, eps);
                        if (means) means[r] = float(st.mean);
                        if (invs) invs[r] = float(st.inv);
                        layer_norm_affine_row_f32(in + r * n, out + r * n, n, st, sp, bp);
                      }
                    });
  }
};

}  // namespace

void register_cpu_row_kernels(KernelFactoryTable& t) {
  t.add("Softmax", make_kernel<SoftmaxKernel<false>>);
  t.add("LogSoftmax", make_kernel<SoftmaxKernel<true>>);
  t.add("LayerNormalization", make_kernel<LayerNormKernel>);
}

}  // namespace cb
