// Reference kernels for the ops that create tensors from shapes, attributes or
// scalars: Shape, Size, Range, ConstantOfShape, Constant and EyeLike. Output
// shapes come from the schemas (ir/ops/tensor.cpp); these only fill values.
#include <type_traits>

#include "backends/reference/reference_backend.h"
#include "backends/reference/tensor_copy.h"

namespace cb {
namespace {

void shape_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  int64_t r = int64_t(in.rank());
  int64_t start = ctx.node.attr_int("start", 0);
  if (start < 0) start += r;
  start = std::min(std::max<int64_t>(start, 0), r);
  for (int64_t i = 0; i < out.numel(); ++i) out.data<int64_t>()[i] = in.dim(size_t(start + i));
}

void size_kernel(KernelContext& ctx) { ctx.out(0).data<int64_t>()[0] = ctx.in(0).numel(); }

// Range: element i is start + i * delta. As in ONNX's reference (numpy's
// arange), delta is re-derived as (start + delta) - start in the compute type:
// double for f32/f64, the stash type for f16/bf16, exact int64 for integers.
void range_kernel(KernelContext& ctx) {
  Tensor& out = ctx.out(0);
  int64_t n = out.numel();
  dtype_dispatch(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* dst = out.data<T>();
    if constexpr (std::is_integral_v<T>) {
      int64_t start = ctx.in(0).get_int(0), delta = ctx.in(2).get_int(0);
      for (int64_t i = 0; i < n; ++i) dst[i] = T(start + i * delta);
    } else {
      auto fill = [&](auto zero) {
        using C = decltype(zero);
        C start = C(ctx.in(0).get_double(0));
        C delta = C(C(double(start) + ctx.in(2).get_double(0)) - start);
        for (int64_t i = 0; i < n; ++i) dst[i] = from_double<T>(double(C(start + C(i) * delta)));
      };
      bool low_precision = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;
      if (low_precision && ctx.node.attr_int("stash_type", 1) == 1)
        fill(float{});
      else
        fill(double{});
    }
  });
}

void constant_of_shape_kernel(KernelContext& ctx) {
  Tensor& out = ctx.out(0);
  if (const Tensor* v = ctx.node.attr_tensor("value"))
    fill_bytes(bytes_of(out), out.numel(), v->raw(), dtype_size(v->dtype()));
  else if (out.nbytes())
    std::memset(out.raw(), 0, out.nbytes());
}

void constant_kernel(KernelContext& ctx) {
  const Node& n = ctx.node;
  if (const Tensor* t = n.attr_tensor("value")) {
    if (ctx.outputs[0]) *ctx.outputs[0] = *t;  // shares the attribute's bytes; nothing writes into it
    return;
  }
  Tensor& out = ctx.out(0);
  if (n.has_attr("value_float")) {
    out.data<float>()[0] = n.attr_float("value_float", 0);
  } else if (n.has_attr("value_floats")) {
    std::vector<float> v = n.attr_floats("value_floats");
    if (!v.empty()) std::memcpy(out.raw(), v.data(), v.size() * sizeof(float));
  } else if (n.has_attr("value_int")) {
    out.data<int64_t>()[0] = n.attr_int("value_int", 0);
  } else {
    std::vector<int64_t> v = n.attr_ints("value_ints");
    if (!v.empty()) std::memcpy(out.raw(), v.data(), v.size() * sizeof(int64_t));
  }
}

void eye_like_kernel(KernelContext& ctx) {
  Tensor& out = ctx.out(0);
  if (out.nbytes()) std::memset(out.raw(), 0, out.nbytes());
  int64_t rows = out.dim(0), cols = out.dim(1);
  int64_t k = std::min(std::max(ctx.node.attr_int("k", 0), -rows), cols);
  dtype_dispatch(out.dtype(), [&](auto tag) {
    using T = decltype(tag);
    T one = from_double<T>(1.0);
    for (int64_t i = std::max<int64_t>(0, -k); i < rows && i + k < cols; ++i) out.data<T>()[i * cols + i + k] = one;
  });
}

}  // namespace

void register_reference_tensor_create(KernelTable& t) {
  t.add("Shape", shape_kernel);
  t.add("Size", size_kernel);
  t.add("Range", range_kernel);
  t.add("ConstantOfShape", constant_of_shape_kernel);
  t.add("Constant", constant_kernel);
  t.add("EyeLike", eye_like_kernel);
}

}  // namespace cb
