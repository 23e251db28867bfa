// Shape and data-movement ops. The cpu backend's own kernels of Transpose,
// Slice, Split and Concat (backends/cpu/layout_kernels.cpp) must equal the
// reference bit for bit: many shapes, odd sizes, the tiled and threaded
// paths (copies from kParallelCopyBytes on), several dtypes.
#include <climits>

#include "ir/codebook.h"
#include "ir/placement.h"
#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

const DType f32 = DType::f32, i64 = DType::i64;
const int64_t kEnd = INT64_MAX;

// Distinct nonzero values: floats of magnitude 0.1..100, integers 1..100.
const Values kData = magnitudes(0.1, 100);

std::string dtype_str(DType dt) { return std::string(dtype_name(dt)); }

// Slice's inputs after the data: starts, ends, then axes (maybe omitted) and steps when given.
struct SliceSpec {
  Dims dims;
  std::vector<int64_t> starts, ends;
  std::optional<std::vector<int64_t>> axes, steps;
};

OpCase& slice_args(OpCase& c, const SliceSpec& s) {
  c.given(i64s(s.starts)).given(i64s(s.ends));
  if (s.axes)
    c.given(i64s(*s.axes));
  else if (s.steps)
    c.omitted();
  if (s.steps) c.given(i64s(*s.steps));
  return c;
}

std::vector<OpCase> transpose_cases() {
  std::vector<OpCase> v;
  struct Case {
    Dims dims;
    std::vector<int64_t> perm;
  };
  const std::vector<Case> cases = {{{64, 4, 9, 33}, {0, 1, 3, 2}},
                                   {{8, 4, 130, 33}, {0, 1, 3, 2}},
                                   {{8, 33, 4, 24}, {0, 2, 1, 3}},
                                   {{6, 4, 33, 24}, {0, 2, 1, 3}},
                                   {{37, 53}, {1, 0}},
                                   {{512, 129}, {1, 0}},
                                   {{5, 6, 7, 8}, {3, 1, 0, 2}},
                                   {{5, 6, 7, 8}, {}},
                                   {{3, 1, 9}, {2, 1, 0}},
                                   {{1, 1, 1}, {0, 2, 1}},
                                   {{4, 0, 3}, {2, 0, 1}},
                                   {{2, 3, 2}, {1, 2, 0}},
                                   {{16, 3, 16}, {2, 1, 0}},
                                   {{7}, {0}}};
  for (const Case& c : cases)
    for (DType dt : {f32, i64, DType::f16, DType::u8}) {
      OpCase o("Transpose_" + dims_name(c.dims) + "_perm_" + (c.perm.empty() ? "default" : dims_name(c.perm)) + "_" +
                   dtype_str(dt),
               "Transpose");
      if (!c.perm.empty()) o.attr("perm", c.perm);
      v.push_back(o.in(dt, c.dims, kData));
    }
  // Big enough to be threaded.
  v.push_back(
      OpCase("Transpose_large_2d", "Transpose").attr("perm", std::vector<int64_t>{1, 0}).in({2048, 2100}, kData));
  v.push_back(OpCase("Transpose_large_blocks", "Transpose")
                  .attr("perm", std::vector<int64_t>{0, 2, 1, 3})
                  .in({64, 128, 4, 140}, kData));
  return v;
}

std::vector<OpCase> slice_split_concat_cases() {
  std::vector<OpCase> v;
  const std::vector<SliceSpec> slices = {
      {{64, 4, 33, 32}, {8}, {kEnd}, std::vector<int64_t>{3}, std::nullopt},
      {{64, 4, 33, 8}, {0}, {4}, std::vector<int64_t>{3}, std::nullopt},
      {{64, 128, 11}, {0}, {-1}, std::vector<int64_t>{1}, std::nullopt},
      {{64, 128}, {1}, {kEnd}, std::vector<int64_t>{1}, std::vector<int64_t>{1}},
      {{9, 10}, {1}, {8}, std::nullopt, std::nullopt},
      {{9, 10, 7}, {1, 2}, {kEnd, 9}, std::vector<int64_t>{0, 2}, std::vector<int64_t>{2, 3}},
      {{9, 10, 7}, {-1, 6}, {-100, 0}, std::vector<int64_t>{1, 2}, std::vector<int64_t>{-1, -2}},
      {{300, 301}, {5, 3}, {290, 300}, std::vector<int64_t>{0, 1}, std::nullopt},
      {{5, 6}, {2}, {2}, std::vector<int64_t>{1}, std::nullopt},
      {{5, 6}, {0}, {kEnd}, std::vector<int64_t>{0}, std::nullopt},
      {{9, 10}, {1}, {8}, std::nullopt, std::vector<int64_t>{2}}};  // steps without axes
  int n = 0;
  for (const SliceSpec& s : slices) {
    for (DType dt : {f32, i64, DType::f16}) {
      OpCase c("Slice_" + std::to_string(n) + "_" + dims_name(s.dims) + "_" + dtype_str(dt), "Slice");
      c.in(dt, s.dims, kData);
      v.push_back(slice_args(c, s));
    }
    ++n;
  }
  v.push_back(OpCase("Slice_large_columns", "Slice")
                  .in({2048, 2100}, kData)
                  .given(i64s({3}))
                  .given(i64s({2090}))
                  .given(i64s({1})));

  struct SplitCase {
    Dims dims;
    int64_t axis;
    std::optional<std::vector<int64_t>> sizes;
    size_t outputs;
  };
  // (Parts of up to 4 KiB a row are copied row by row, the rest part by part;
  // [96, 4, 128, 96] is over the threads' 16 MiB.)
  const std::vector<SplitCase> splits = {{{6, 4, 33, 96}, 3, std::vector<int64_t>{32, 32, 32}, 3},
                                         {{96, 4, 128, 96}, 3, std::vector<int64_t>{32, 32, 32}, 3},
                                         {{7, 10}, 1, std::vector<int64_t>{3, 0, 7}, 3},
                                         {{10, 7}, 0, std::nullopt, 3},
                                         {{2, 3, 5}, -1, std::nullopt, 2},
                                         {{400, 300}, 0, std::vector<int64_t>{1, 399}, 2},
                                         {{2048, 2100}, 1, std::vector<int64_t>{1000, 1100}, 2}};
  for (const SplitCase& s : splits)
    for (DType dt : {f32, i64}) {
      OpCase c("Split_" + dims_name(s.dims) + "_axis" + std::to_string(s.axis + 1) + "_" +
                   (s.sizes ? "sizes" : "parts") + "_" + dtype_str(dt),
               "Split");
      c.attr("axis", s.axis).in(dt, s.dims, kData);
      if (s.sizes)
        c.given(i64s(*s.sizes));
      else
        c.attr("num_outputs", int64_t(s.outputs));
      v.push_back(c.outs(std::vector<bool>(s.outputs, true)));
    }

  struct ConcatCase {
    std::vector<Dims> inputs;
    int64_t axis;
  };
  const std::vector<ConcatCase> concats = {{{{64, 4, 33, 4}, {64, 4, 33, 4}}, 3},
                                           {{{96, 4, 128, 32}, {96, 4, 128, 32}, {96, 4, 128, 32}}, 3},
                                           {{{6, 4, 33, 32}, {6, 4, 33, 32}, {6, 4, 33, 32}}, -1},
                                           {{{2}, {1}}, 0},
                                           {{{3, 5}, {0, 5}, {4, 5}}, 0},
                                           {{{3, 5, 2}, {3, 1, 2}, {3, 7, 2}}, 1},
                                           {{{300, 200}, {300, 100}}, 1},
                                           {{{2048, 2100}, {2048, 7}}, 1}};
  n = 0;
  for (const ConcatCase& k : concats)
    for (DType dt : {f32, i64}) {
      OpCase c("Concat_" + std::to_string(n) + "_" + std::to_string(k.inputs.size()) + "_inputs_" + dtype_str(dt),
               "Concat");
      c.attr("axis", k.axis);
      for (const Dims& d : k.inputs) c.in(dt, d, kData);
      v.push_back(c);
      if (dt == i64) ++n;
    }
  return v;
}

// The other tensor ops: reference kernels only.
std::vector<OpCase> other_cases() {
  std::vector<OpCase> v;
  v.push_back(OpCase("Reshape_infer_dim", "Reshape").in({2, 3, 4}, kData).constant(i64s({-1, 4})));
  v.push_back(OpCase("Reshape_runtime_shape", "Reshape").in(i64, {2, 3, 4}, kData).given(i64s({4, 0, 2})));
  // The host side of the device copies (ir/placement.h): plain copies.
  v.push_back(OpCase("CopyToDevice_f32", kCopyToDeviceOp, kCodebookDomain)
                  .attr(kDeviceAttr, std::string("cuda:0"))
                  .in({2, 3, 5}, kData));
  v.push_back(OpCase("CopyToHost_i64", kCopyToHostOp, kCodebookDomain)
                  .attr(kDeviceAttr, std::string("cuda:1"))
                  .in(i64, {4, 3}, kData));
  v.push_back(OpCase("Flatten_axis2", "Flatten").attr("axis", int64_t(2)).in({2, 3, 4, 5}, kData));
  v.push_back(OpCase("Squeeze_all", "Squeeze").in({2, 1, 3, 1}, kData));
  v.push_back(OpCase("Squeeze_axes", "Squeeze").in({2, 1, 3, 1}, kData).constant(i64s({-1})));
  v.push_back(OpCase("Unsqueeze_axes", "Unsqueeze").in({2, 3}, kData).constant(i64s({0, 3})));
  v.push_back(
      OpCase("Gather_axis0_i64", "Gather").attr("axis", int64_t(0)).in({5, 3}, kData).in(i64, {2, 3}, uniform(-5, 4)));
  v.push_back(OpCase("Gather_axis1_i32", "Gather")
                  .attr("axis", int64_t(1))
                  .in(i64, {3, 4, 2}, kData)
                  .in(DType::i32, {5}, uniform(-4, 3)));
  v.push_back(OpCase("GatherElements_axis1", "GatherElements")
                  .attr("axis", int64_t(1))
                  .in({3, 4, 2}, kData)
                  .in(i64, {3, 2, 2}, uniform(-4, 3)));
  v.push_back(OpCase("GatherND_batch_dims1", "GatherND")
                  .attr("batch_dims", int64_t(1))
                  .in(DType::f64, {2, 3, 4, 5}, kData)
                  .given(Tensor::from_vector<int64_t>({0, -1, 2, 3, 1, 0, -3, 2}, {2, 2, 2})));
  for (const char* reduction : {"none", "add", "mul", "max", "min"}) {
    v.push_back(OpCase(std::string("ScatterElements_") + reduction, "ScatterElements")
                    .attr("axis", int64_t(1))
                    .attr("reduction", std::string(reduction))
                    .in({3, 5}, kData)
                    .given(Tensor::from_vector<int64_t>({0, 4, 4, 1, -1, 2, 3, 3, 3}, {3, 3}))
                    .in({3, 3}, kData));
    v.push_back(OpCase(std::string("ScatterND_") + reduction, "ScatterND")
                    .attr("reduction", std::string(reduction))
                    .in(DType::f64, {4, 3, 2}, kData)
                    .given(Tensor::from_vector<int64_t>({0, -1, 2, 1, 0, 2}, {3, 2}))
                    .in(DType::f64, {3, 2}, kData));
  }
  v.push_back(OpCase("Expand_broadcast", "Expand").in({3, 1}, kData).constant(i64s({2, 3, 4})));
  v.push_back(OpCase("Tile_repeats", "Tile").in(i64, {2, 3, 1}, kData).given(i64s({3, 1, 4})));
  v.push_back(OpCase("Tile_zero_repeat", "Tile").in({2, 3, 1}, kData).given(i64s({0, 2, 1})));
  v.push_back(OpCase("Shape_all", "Shape").in({3, 4, 5}));
  v.push_back(OpCase("Shape_start_end", "Shape").attr("start", int64_t(-2)).attr("end", int64_t(10)).in({3, 4, 5}));
  v.push_back(OpCase("Size", "Size").in({3, 4, 5}));
  v.push_back(OpCase("Range_f32", "Range")
                  .given(Tensor::scalar<float>(1.f))
                  .given(Tensor::scalar<float>(2.f))
                  .given(Tensor::scalar<float>(0.25f)));
  v.push_back(OpCase("Range_i32_negative_delta", "Range")
                  .given(Tensor::scalar<int32_t>(10))
                  .given(Tensor::scalar<int32_t>(4))
                  .given(Tensor::scalar<int32_t>(-3)));
  v.push_back(OpCase("ConstantOfShape_default", "ConstantOfShape").given(i64s({2, 3})));
  v.push_back(OpCase("ConstantOfShape_i32", "ConstantOfShape")
                  .attr("value", Tensor::from_vector<int32_t>({-7}, {1}))
                  .given(i64s({4, 1, 2})));
  v.push_back(
      OpCase("Constant_value", "Constant").attr("value", Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3})));
  v.push_back(OpCase("Constant_value_ints", "Constant").attr("value_ints", std::vector<int64_t>{3, 4, 5}));
  for (int64_t upper : {0, 1})
    v.push_back(OpCase("Trilu_upper" + std::to_string(upper), "Trilu")
                    .attr("upper", upper)
                    .in({2, 4, 5}, kData)
                    .given(Tensor::scalar<int64_t>(-1)));
  v.push_back(OpCase("Trilu_empty", "Trilu").in({3, 0, 5}, kData));
  v.push_back(OpCase("CumSum_exclusive_reverse", "CumSum")
                  .attr("exclusive", int64_t(1))
                  .attr("reverse", int64_t(1))
                  .in(DType::f64, {2, 3, 4}, kData)
                  .given(Tensor::scalar<int32_t>(1)));
  v.push_back(OpCase("CumSum_i32", "CumSum").in(DType::i32, {5, 3}, kData).given(Tensor::scalar<int64_t>(0)));
  for (const char* mode : {"constant", "reflect", "edge", "wrap"})
    v.push_back(OpCase(std::string("Pad_") + mode, "Pad")
                    .attr("mode", std::string(mode))
                    .in({3, 4}, kData)
                    .given(i64s({1, 0, 2, 3})));
  v.push_back(OpCase("Pad_crop_value_axes", "Pad")
                  .in(DType::i32, {4, 5}, kData)
                  .given(i64s({2, -1, -1, 1}))
                  .given(Tensor::scalar<int32_t>(7))
                  .given(i64s({-1, 0})));
  for (int64_t k : {-1, 0, 2})
    v.push_back(OpCase("EyeLike_k" + std::to_string(k + 1), "EyeLike").attr("k", k).in({3, 4}));
  v.push_back(OpCase("EyeLike_i64", "EyeLike").attr("dtype", int64_t(7)).in({3, 4}));
  v.push_back(OpCase("NonZero_f32", "NonZero").given(Tensor::from_vector<float>({1, 0, 0, 2, 0, 3}, {2, 3})));
  v.push_back(OpCase("NonZero_empty", "NonZero").given(Tensor::zeros(DType::i32, {3})));
  v.push_back(OpCase("OneHot_axis_negative", "OneHot")
                  .attr("axis", int64_t(-2))
                  .given(Tensor::from_vector<int64_t>({0, 3, -1, 5, -5, 2}, {2, 3}))
                  .given(Tensor::scalar<float>(4.0f))
                  .given(Tensor::from_vector<float>({-1.f, 2.5f}, {2})));
  return v;
}

// Gradient cases: the rule against finite differences in f64.
std::vector<OpCase> gradient_cases() {
  std::vector<OpCase> v;
  v.push_back(OpCase("Reshape_grad", "Reshape").in({2, 3, 4}).constant(i64s({-1, 4})).gradient());
  v.push_back(OpCase("Flatten_grad", "Flatten").attr("axis", int64_t(2)).in({2, 3, 4}).gradient());
  v.push_back(OpCase("Squeeze_grad", "Squeeze").in({2, 1, 3, 1}).gradient());
  v.push_back(OpCase("Squeeze_grad_axes", "Squeeze").in({2, 1, 3}).constant(i64s({1})).gradient());
  v.push_back(OpCase("Unsqueeze_grad", "Unsqueeze").in({2, 3}).constant(i64s({1})).gradient());
  v.push_back(OpCase("Unsqueeze_grad_two_axes", "Unsqueeze").in({2, 3}).constant(i64s({0, 2})).gradient());
  v.push_back(
      OpCase("Transpose_grad_perm", "Transpose").attr("perm", std::vector<int64_t>{2, 0, 1}).in({2, 3, 4}).gradient());
  v.push_back(OpCase("Transpose_grad_default", "Transpose").in({2, 3, 4}).gradient());
  v.push_back(OpCase("Split_grad_sizes", "Split")
                  .attr("axis", int64_t(1))
                  .in({2, 6})
                  .constant(i64s({2, 4}))
                  .outs({true, true})
                  .gradient());
  // Only one part reaches the loss: the others get zeros.
  v.push_back(OpCase("Split_grad_one_part", "Split")
                  .attr("axis", int64_t(0))
                  .attr("num_outputs", int64_t(3))
                  .in({6, 2})
                  .outs({true, true, true})
                  .loss_from({false, true, false})
                  .gradient());
  v.push_back(OpCase("Slice_grad_steps", "Slice")
                  .in({4, 6})
                  .constant(i64s({1, -1}))
                  .constant(i64s({kEnd, 0}))
                  .constant(i64s({0, 1}))
                  .constant(i64s({2, -2}))
                  .gradient());
  v.push_back(OpCase("Slice_grad_axis", "Slice")
                  .in({3, 8})
                  .constant(i64s({2}))
                  .constant(i64s({6}))
                  .constant(i64s({-1}))
                  .gradient());
  v.push_back(
      OpCase("Concat_grad", "Concat").attr("axis", int64_t(1)).in({2, 1}).in({2, 3}).no_grad().in({2, 2}).gradient());
  v.push_back(OpCase("Expand_grad", "Expand").in({3, 1}).constant(i64s({2, 3, 4})).gradient());
  // Repeated and negative indices add up in the table's gradient.
  v.push_back(OpCase("Gather_grad_embedding", "Gather")
                  .attr("axis", int64_t(0))
                  .in({5, 3})
                  .given(Tensor::from_vector<int64_t>({0, 4, 2, 2, -1, 0}, {2, 3}))
                  .gradient());
  v.push_back(OpCase("Gather_grad_axis1", "Gather").attr("axis", int64_t(1)).in({3, 4}).given(i64s({3, 1})).gradient());
  v.push_back(OpCase("GatherElements_grad", "GatherElements")
                  .attr("axis", int64_t(1))
                  .in({3, 4, 2})
                  .given(Tensor::from_vector<int64_t>({0, 3, 1, 1, 3, 0}, {3, 1, 2}))
                  .gradient());
  return v;
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> v;
  for (auto f : {transpose_cases, slice_split_concat_cases, other_cases, gradient_cases})
    for (OpCase& c : f()) v.push_back(std::move(c));
  return v;
}

const RegisterOpCases kRegistered(all_cases());

}  // namespace
}  // namespace cb::test
