// Neural-network ops. MatMul and Gemm run through oneDNN on the cpu backend
// (a different summation order: a tolerance); the rest are reference kernels.
#include <cmath>

#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

const DType i64 = DType::i64;
const Values kUnit = uniform(-1, 1);

std::vector<OpCase> matmul_cases() {
  std::vector<OpCase> v;
  struct Shapes {
    Dims a, b;
  };
  for (const Shapes& s : std::vector<Shapes>{{{3, 5}, {5, 4}},
                                             {{2, 7, 33}, {33, 17}},
                                             {{2, 3, 4, 8}, {2, 3, 8, 5}},
                                             {{2, 1, 4, 8}, {3, 8, 5}},  // batch broadcast
                                             {{6}, {6, 3}},              // 1-D (reference path)
                                             {{1, 128, 64}, {64, 192}},
                                             {{1, 1, 300}, {300, 700}},  // one row: the CPU backend's GEMV
                                             {{1, 64}, {64, 5}}})
    v.push_back(OpCase("MatMul_" + dims_name(s.a) + "_by_" + dims_name(s.b), "MatMul")
                    .in(s.a, kUnit)
                    .in(s.b, kUnit)
                    .tol(abs_rel(1e-4, 0)));
  v.push_back(OpCase("MatMul_f64", "MatMul").in(DType::f64, {3, 4}, kUnit).in(DType::f64, {4, 2}, kUnit));
  // Transposes, alpha, beta and every form of bias.
  for (int64_t ta = 0; ta < 2; ++ta)
    for (int64_t tb = 0; tb < 2; ++tb)
      for (const Dims& c : std::vector<Dims>{{5}, {1, 5}, {4, 5}, {4, 1}})
        for (float alpha : {1.0f, 0.5f})
          for (float beta : {1.0f, 2.0f}) {
            const std::string name = "Gemm_tA" + std::to_string(ta) + "_tB" + std::to_string(tb) + "_C" + dims_name(c) +
                                     (alpha == 1 ? "" : "_alpha") + (beta == 1 ? "" : "_beta");
            v.push_back(OpCase(name, "Gemm")
                            .attr("transA", ta)
                            .attr("transB", tb)
                            .attr("alpha", alpha)
                            .attr("beta", beta)
                            .in(ta ? Dims{3, 4} : Dims{4, 3}, kUnit)
                            .in(tb ? Dims{5, 3} : Dims{3, 5}, kUnit)
                            .in(c, kUnit)
                            .tol(abs_rel(1e-5, 0)));
          }
  v.push_back(OpCase("Gemm_no_bias", "Gemm").in({4, 3}, kUnit).in({3, 5}, kUnit).tol(abs_rel(1e-5, 0)));
  // One row (a decode step): the CPU backend's GEMV, W either way round, with and without a bias.
  for (int64_t tb = 0; tb < 2; ++tb) {
    const Dims w = tb ? Dims{700, 300} : Dims{300, 700};
    v.push_back(OpCase("Gemm_one_row_tB" + std::to_string(tb), "Gemm")
                    .attr("transB", tb)
                    .in({1, 300}, kUnit)
                    .in(w, kUnit)
                    .in({700}, kUnit)
                    .tol(abs_rel(1e-4, 0)));
    v.push_back(OpCase("Gemm_one_row_no_bias_tB" + std::to_string(tb), "Gemm")
                    .attr("transB", tb)
                    .in({1, 300}, kUnit)
                    .in(w, kUnit)
                    .tol(abs_rel(1e-4, 0)));
  }
  return v;
}

std::vector<OpCase> other_cases() {
  std::vector<OpCase> v;
  for (int64_t axis : {-1, 1}) {
    const std::string a = axis < 0 ? "last" : "1";
    v.push_back(OpCase("Softmax_axis_" + a, "Softmax").attr("axis", axis).in({2, 3, 4}, uniform(-5, 5)));
    v.push_back(OpCase("LogSoftmax_axis_" + a, "LogSoftmax").attr("axis", axis).in({2, 3, 4}, uniform(-5, 5)));
  }
  v.push_back(OpCase("LayerNormalization_all_outputs", "LayerNormalization")
                  .attr("axis", int64_t(-1))
                  .attr("epsilon", 1e-5f)
                  .in({2, 3, 8})
                  .in({8})
                  .in({8})
                  .outs({true, true, true}));
  v.push_back(OpCase("LayerNormalization_axis1_no_bias", "LayerNormalization")
                  .attr("axis", int64_t(1))
                  .in({2, 3, 4})
                  .in({3, 4}));
  // Big enough for the cpu backend's row-parallel kernels (backends/cpu/
  // row_kernels.h) to split the rows over threads: a masked attention
  // softmax (-inf entries), a vocabulary-wide log-softmax, the transformer
  // LayerNorm with its statistics, and one over two trailing dims.
  v.push_back(OpCase("Softmax_rows_parallel", "Softmax")
                  .attr("axis", int64_t(-1))
                  .in_made(DType::f32, {4, 3, 33, 130}, [](std::mt19937& rng) {
                    Tensor t = Tensor::zeros(DType::f32, {4, 3, 33, 130});
                    std::uniform_real_distribution<float> u(-6, 6);
                    float* p = t.data<float>();
                    for (int64_t i = 0; i < t.numel(); ++i) p[i] = i % 130 > 100 ? -INFINITY : u(rng);
                    return t;
                  }));
  v.push_back(
      OpCase("LogSoftmax_rows_parallel", "LogSoftmax").attr("axis", int64_t(-1)).in({70, 1031}, uniform(-8, 8)));
  v.push_back(OpCase("LayerNormalization_rows_parallel_stats", "LayerNormalization")
                  .attr("axis", int64_t(-1))
                  .attr("epsilon", 1e-5f)
                  .in({8, 70, 96}, uniform(-3, 3))
                  .in({96})
                  .in({96})
                  .outs({true, true, true}));
  v.push_back(OpCase("LayerNormalization_rows_parallel_two_dims", "LayerNormalization")
                  .attr("axis", int64_t(-2))
                  .in({300, 7, 16}, uniform(-3, 3))
                  .in({1, 7, 16})
                  .in({7, 16}));
  v.push_back(OpCase("Einsum_attention_scores", "Einsum")
                  .attr("equation", std::string("bsd,btd->bst"))
                  .in({2, 3, 4})
                  .in({2, 5, 4}));
  v.push_back(OpCase("Einsum_trace_and_transpose", "Einsum")
                  .attr("equation", std::string("iij->ji"))
                  .in(DType::f64, {3, 3, 2}));
  for (const char* reduction : {"none", "sum", "mean"}) {
    v.push_back(OpCase(std::string("NegativeLogLikelihoodLoss_") + reduction, "NegativeLogLikelihoodLoss")
                    .attr("reduction", std::string(reduction))
                    .attr("ignore_index", int64_t(2))
                    .in({4, 5, 3})
                    .in(i64, {4, 3}, uniform(0, 4))
                    .in({5}, positive()));
    v.push_back(OpCase(std::string("SoftmaxCrossEntropyLoss_") + reduction, "SoftmaxCrossEntropyLoss")
                    .attr("reduction", std::string(reduction))
                    .attr("ignore_index", int64_t(4))
                    .in({3, 6, 2})
                    .in(i64, {3, 2}, uniform(0, 5))
                    .in({6}, positive())
                    .outs({true, true}));
  }
  return v;
}

// Gradient cases: the rule against finite differences in f64.
std::vector<OpCase> gradient_cases() {
  std::vector<OpCase> v;
  v.push_back(OpCase("Softmax_grad_last_axis", "Softmax").attr("axis", int64_t(-1)).in({2, 3, 4}).gradient());
  v.push_back(OpCase("Softmax_grad_axis1", "Softmax").attr("axis", int64_t(1)).in({2, 3, 4}).gradient());
  v.push_back(OpCase("LogSoftmax_grad", "LogSoftmax").attr("axis", int64_t(-1)).in({2, 3, 4}).gradient());
  v.push_back(OpCase("LayerNormalization_grad", "LayerNormalization")
                  .attr("axis", int64_t(-1))
                  .attr("epsilon", 1e-5f)
                  .in({2, 3, 5})
                  .in({5})
                  .in({5})
                  .gradient());
  // Normalised over [3,4]; scale broadcast over the first of them.
  v.push_back(OpCase("LayerNormalization_grad_axis1", "LayerNormalization")
                  .attr("axis", int64_t(1))
                  .attr("epsilon", 1e-5f)
                  .in({2, 3, 4})
                  .in({4})
                  .in({3, 4})
                  .gradient());
  // No bias; only the scale is a parameter.
  v.push_back(OpCase("LayerNormalization_grad_scale_only", "LayerNormalization")
                  .attr("axis", int64_t(-1))
                  .in({4, 6})
                  .no_grad()
                  .in({6})
                  .gradient());
  struct Shapes {
    Dims a, b;
  };
  // Plain; activations by a weight (dW over the flattened rows); attention
  // style batched; broadcast batch dims; rank-1 operands.
  for (const Shapes& s : std::vector<Shapes>{{{2, 3}, {3, 4}},
                                             {{2, 5, 3}, {3, 4}},
                                             {{2, 2, 3, 4}, {2, 2, 4, 3}},
                                             {{2, 1, 3, 4}, {3, 4, 2}},
                                             {{3}, {2, 3, 4}},
                                             {{2, 3}, {3}},
                                             {{3}, {3}}})
    v.push_back(OpCase("MatMul_grad_" + dims_name(s.a) + "_by_" + dims_name(s.b), "MatMul")
                    .in(s.a)
                    .in(s.b)
                    .gradient()
                    .tol(abs_rel(1e-5, 1e-6)));
  for (int64_t ta = 0; ta < 2; ++ta)
    for (int64_t tb = 0; tb < 2; ++tb)
      v.push_back(OpCase("Gemm_grad_tA" + std::to_string(ta) + "_tB" + std::to_string(tb), "Gemm")
                      .attr("alpha", 0.5f)
                      .attr("beta", 2.0f)
                      .attr("transA", ta)
                      .attr("transB", tb)
                      .in(ta ? Dims{4, 3} : Dims{3, 4})
                      .in(tb ? Dims{5, 4} : Dims{4, 5})
                      .in({5})
                      .gradient()
                      .tol(abs_rel(1e-5, 1e-6)));
  v.push_back(
      OpCase("Gemm_grad_column_bias", "Gemm").in({3, 4}).in({4, 5}).in({3, 1}).gradient().tol(abs_rel(1e-5, 1e-6)));
  v.push_back(OpCase("Gemm_grad_no_bias", "Gemm").in({3, 4}).in({4, 5}).gradient().tol(abs_rel(1e-5, 1e-6)));
  return v;
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> v;
  for (auto f : {matmul_cases, other_cases, gradient_cases})
    for (OpCase& c : f()) v.push_back(std::move(c));
  return v;
}

const RegisterOpCases kRegistered(all_cases());

}  // namespace
}  // namespace cb::test
