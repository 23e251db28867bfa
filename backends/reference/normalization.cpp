// Reference kernels for Softmax, LogSoftmax and LayerNormalization.
// LayerNormalization reads X as [rows, n] (n = product of dims axis..rank-1),
// computes mean and variance in double (f32 rows over vectorisable lanes), and
// applies Scale and B through
// broadcast offsets (a direct index when they cover exactly the normalized dims).
#include "backends/reference/normalization.h"

#include <cmath>
#include <type_traits>
#include <vector>

#include "backends/reference/accumulate.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"
#include "backends/reference/softmax.h"

namespace cb {

void register_reference_normalization(KernelTable& t);

LayerNormStats layer_norm_stats_f32(const float* x, int64_t n, double eps) {
  const double mean = sum_row_f32(x, n) / double(n);
  const double sq = sum_sq_diff_row_f32(x, n, mean);
  return {mean, 1.0 / std::sqrt(sq / double(n) + eps)};
}

void layer_norm_affine_row_f32(const float* x, float* y, int64_t n, LayerNormStats s, const float* scale,
                               const float* bias) {
  const float m = float(s.mean), iv = float(s.inv);
  for (int64_t k = 0; k < n; ++k) y[k] = (x[k] - m) * iv * scale[k] + bias[k];
}

namespace {

template <bool Log>
void softmax_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t axis = norm_axis(ctx.node.attr_int("axis", -1), int64_t(x.rank()));
  softmax_along_axis(x, ctx.out(0), axis, Log);
}

// Element offsets of an operand broadcast to `dims`, split at `axis` so that the
// offset of element (row, k) is row_offsets[row] + col_offsets[k].
struct SplitOffsets {
  std::vector<int64_t> row_offsets, col_offsets;
  bool contiguous_cols = true;  // col_offsets[k] == k and row_offsets all 0
};

SplitOffsets split_offsets(const std::vector<int64_t>& operand_dims, const std::vector<int64_t>& dims, size_t axis) {
  std::vector<int64_t> s = broadcast_strides(operand_dims, dims);
  std::vector<int64_t> lead_dims(dims.begin(), dims.begin() + long(axis));
  std::vector<int64_t> tail_dims(dims.begin() + long(axis), dims.end());
  auto split = s.begin() + long(axis);
  const std::vector<int64_t> lead_strides[1] = {std::vector<int64_t>(s.begin(), split)};
  const std::vector<int64_t> tail_strides[1] = {std::vector<int64_t>(split, s.end())};
  SplitOffsets r;
  for_each_offset(lead_dims, lead_strides, [&](const int64_t* o) {
    r.row_offsets.push_back(o[0]);
    r.contiguous_cols &= o[0] == 0;
  });
  for_each_offset(tail_dims, tail_strides, [&](const int64_t* o) {
    r.contiguous_cols &= o[0] == int64_t(r.col_offsets.size());
    r.col_offsets.push_back(o[0]);
  });
  return r;
}

template <typename T>
void layer_norm_typed(KernelContext& ctx, size_t axis, double eps) {
  const Tensor& x = ctx.in(0);
  const Tensor* scale = ctx.inputs.size() > 1 ? ctx.inputs[1] : nullptr;
  const Tensor* bias = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
  Tensor* mean_out = ctx.outputs.size() > 1 ? ctx.outputs[1] : nullptr;
  Tensor* inv_out = ctx.outputs.size() > 2 ? ctx.outputs[2] : nullptr;
  int64_t rows = 1, n = 1;
  for (size_t i = 0; i < x.rank(); ++i) (i < axis ? rows : n) *= x.dim(i);
  SplitOffsets so, bo;
  if (scale) so = split_offsets(scale->dims(), x.dims(), axis);
  if (bias) bo = split_offsets(bias->dims(), x.dims(), axis);
  const T* in = x.data<T>();
  T* out = ctx.out(0).data<T>();
  const T* sp = scale ? scale->data<T>() : nullptr;
  const T* bp = bias ? bias->data<T>() : nullptr;
  auto write_stat = [](Tensor* t, int64_t i, double v) {
    if (!t) return;
    dtype_dispatch(t->dtype(), [&](auto tag) {
      using S = decltype(tag);
      t->data<S>()[i] = from_double<S>(v);
    });
  };
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = in + r * n;
    T* yr = out + r * n;
    double mean = 0, inv = 0;
    if constexpr (std::is_same_v<T, float>) {
      const LayerNormStats st = layer_norm_stats_f32(xr, n, eps);
      mean = st.mean;
      inv = st.inv;
    } else {
      double sq = 0;
      for (int64_t k = 0; k < n; ++k) mean += load(xr[k]);
      mean /= double(n);
      for (int64_t k = 0; k < n; ++k) sq += (load(xr[k]) - mean) * (load(xr[k]) - mean);
      inv = 1.0 / std::sqrt(sq / double(n) + eps);
    }
    write_stat(mean_out, r, mean);
    write_stat(inv_out, r, inv);
    if constexpr (std::is_same_v<T, float>) {
      if (sp && bp && so.contiguous_cols && bo.contiguous_cols) {  // the transformer case
        layer_norm_affine_row_f32(xr, yr, n, {mean, inv}, sp, bp);
        continue;
      }
    }
    const T* srow = sp ? sp + so.row_offsets[size_t(r)] : nullptr;
    const T* brow = bp ? bp + bo.row_offsets[size_t(r)] : nullptr;
    for (int64_t k = 0; k < n; ++k) {
      double v = (load(xr[k]) - mean) * inv;
      if (srow) v *= load(srow[so.col_offsets[size_t(k)]]);
      if (brow) v += load(brow[bo.col_offsets[size_t(k)]]);
      yr[k] = store<T>(v);
    }
  }
}

void layer_norm_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  size_t axis = size_t(norm_axis(ctx.node.attr_int("axis", -1), int64_t(x.rank())));
  double eps = ctx.node.attr_float("epsilon", 1e-5f);
  switch (x.dtype()) {
    case DType::f32: return layer_norm_typed<float>(ctx, axis, eps);
    case DType::f64: return layer_norm_typed<double>(ctx, axis, eps);
    case DType::f16: return layer_norm_typed<Half>(ctx, axis, eps);
    case DType::bf16: return layer_norm_typed<BFloat16>(ctx, axis, eps);
    default: CB_FAIL(ctx.node.describe() << ": unsupported dtype " << dtype_name(x.dtype()));
  }
}

}  // namespace

void register_reference_normalization(KernelTable& t) {
  t.add("Softmax", softmax_kernel<false>);
  t.add("LogSoftmax", softmax_kernel<true>);
  t.add("LayerNormalization", layer_norm_kernel);
}

}  // namespace cb
