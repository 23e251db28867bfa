// Reductions, ArgMax / ArgMin and TopK (reference kernels on every backend but
// the CPU backend's ReduceSumSquare over all axes and its ReduceSum /
// ReduceMean over one block of axes).
#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

const DType f32 = DType::f32;

std::vector<OpCase> reduction_cases() {
  std::vector<OpCase> v;
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                         "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}) {
    const std::string o = op;
    // ReduceLogSum needs positive sums.
    const Values values = o == "ReduceLogSum" ? positive(0.1, 2) : Values{};
    v.push_back(
        OpCase(o + "_axes_keepdims", op).attr("keepdims", int64_t(1)).in({2, 3, 4}, values).constant(i64s({-1, 0})));
    v.push_back(OpCase(o + "_all", op).attr("keepdims", int64_t(0)).in({3, 5}, values));
    v.push_back(
        OpCase(o + "_f64_axis", op).attr("keepdims", int64_t(0)).in(DType::f64, {4, 3}, values).given(i64s({1})));
  }
  // The CPU backend's ReduceSumSquare over every element (the gradient norm):
  // many blocks, threaded, f64 sums in another order than the reference's.
  v.push_back(OpCase("ReduceSumSquare_all_large", "ReduceSumSquare")
                  .attr("keepdims", int64_t(0))
                  .in({3, (int64_t(1) << 19) + 37}, uniform(-2, 2))
                  .tol(abs_rel(0, 1e-6)));
  // The CPU backend's ReduceSum and ReduceMean over one block of axes,
  // threaded by column chunks (bias gradients) or rows, the reference's bits.
  v.push_back(OpCase("ReduceSum_bias_grad_columns", "ReduceSum")
                  .attr("keepdims", int64_t(0))
                  .in({16, 70, 97}, uniform(-2, 2))
                  .constant(i64s({0, 1})));
  v.push_back(OpCase("ReduceMean_rows", "ReduceMean")
                  .attr("keepdims", int64_t(1))
                  .in({300, 257}, uniform(-2, 2))
                  .constant(i64s({-1})));
  v.push_back(OpCase("ReduceSum_block_across_unit_dim", "ReduceSum")
                  .attr("keepdims", int64_t(1))
                  .in({40, 1, 50, 33}, uniform(-2, 2))
                  .constant(i64s({0, 2})));
  v.push_back(OpCase("ReduceSum_i64", "ReduceSum").in(DType::i64, {4, 3}, uniform(-9, 9)).given(i64s({0})));
  v.push_back(OpCase("ReduceMax_bool", "ReduceMax").in(DType::boolean, {4, 3}).given(i64s({1})));
  v.push_back(OpCase("ReduceSum_empty_axes_noop", "ReduceSum")
                  .attr("noop_with_empty_axes", int64_t(1))
                  .in({2, 3})
                  .given(Tensor::empty(DType::i64, {0})));
  for (const char* op : {"ArgMax", "ArgMin"}) {
    v.push_back(OpCase(std::string(op) + "_axis1", op).attr("axis", int64_t(1)).in({3, 4, 5}));
    v.push_back(OpCase(std::string(op) + "_last_index_ties", op)
                    .attr("axis", int64_t(-1))
                    .attr("keepdims", int64_t(0))
                    .attr("select_last_index", int64_t(1))
                    .in(DType::i32, {3, 6}, uniform(0, 2)));
  }
  v.push_back(OpCase("TopK_largest", "TopK").in({3, 7}, uniform(-2, 2)).constant(i64s({4})).outs({true, true}));
  v.push_back(OpCase("TopK_smallest_axis0", "TopK")
                  .attr("axis", int64_t(0))
                  .attr("largest", int64_t(0))
                  .in(DType::i64, {6, 3}, uniform(-3, 3))
                  .given(i64s({3}))
                  .outs({true, true}));
  // Gradient cases.
  v.push_back(OpCase("ReduceSum_grad_axis", "ReduceSum")
                  .attr("keepdims", int64_t(0))
                  .in({2, 3, 4})
                  .constant(i64s({1}))
                  .gradient());
  v.push_back(OpCase("ReduceSum_grad_keepdims", "ReduceSum")
                  .attr("keepdims", int64_t(1))
                  .in({2, 3, 4})
                  .constant(i64s({-1, 0}))
                  .gradient());
  v.push_back(OpCase("ReduceMean_grad_axes", "ReduceMean")
                  .attr("keepdims", int64_t(0))
                  .in({2, 3, 4})
                  .constant(i64s({0, 2}))
                  .gradient());
  v.push_back(OpCase("ReduceMean_grad_all", "ReduceMean").attr("keepdims", int64_t(0)).in({2, 3, 4}).gradient());
  return v;
}

const RegisterOpCases kRegistered(reduction_cases());

}  // namespace
}  // namespace cb::test
