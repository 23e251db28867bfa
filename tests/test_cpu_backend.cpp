// The CPU backend against the reference backend (the oracle) on random inputs.
#include <gtest/gtest.h>

#include <random>

#include "backends/backend.h"
#include "runtime/executable.h"

using namespace cb;

namespace {

Tensor random_tensor(std::vector<int64_t> dims, std::mt19937& rng) {
  Tensor t = Tensor::empty(DType::f32, std::move(dims));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

// Runs `g` on both backends and returns the max abs difference of output 0.
double max_diff_vs_reference(std::shared_ptr<Graph> g, const std::map<std::string, Tensor>& in) {
  auto ref = Executable::compile(g, *make_backend("reference"))->run(in);
  auto cpu = Executable::compile(g, *make_backend("cpu"))->run(in);
  EXPECT_EQ(ref[0].dims(), cpu[0].dims());
  double d = 0;
  for (int64_t i = 0; i < ref[0].numel(); ++i)
    d = std::max(d, std::abs(double(ref[0].data<float>()[i]) - cpu[0].data<float>()[i]));
  return d;
}

struct MatMulCase {
  std::vector<int64_t> a, b;
};

class CpuMatMul : public ::testing::TestWithParam<MatMulCase> {};

TEST_P(CpuMatMul, MatchesReference) {
  std::mt19937 rng(7);
  auto g = std::make_shared<Graph>();
  Value* a = g->add_input("a", {DType::f32, Shape::of(GetParam().a)});
  Value* b = g->add_input("b", {DType::f32, Shape::of(GetParam().b)});
  Value* y = g->add_value("y");
  g->add_node("MatMul", {a, b}, {y});
  g->outputs.push_back(y);
  double d = max_diff_vs_reference(g, {{"a", random_tensor(GetParam().a, rng)}, {"b", random_tensor(GetParam().b, rng)}});
  EXPECT_LT(d, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuMatMul,
                         ::testing::Values(MatMulCase{{3, 5}, {5, 4}}, MatMulCase{{2, 7, 33}, {33, 17}},
                                           MatMulCase{{2, 3, 4, 8}, {2, 3, 8, 5}},
                                           MatMulCase{{2, 1, 4, 8}, {3, 8, 5}},  // batch broadcast
                                           MatMulCase{{6}, {6, 3}},              // 1-D (reference path)
                                           MatMulCase{{1, 128, 64}, {64, 192}}));

TEST(CpuGemm, TransposesAlphaBetaAndBias) {
  std::mt19937 rng(3);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (std::vector<int64_t> cdims : {std::vector<int64_t>{5}, {1, 5}, {4, 5}, {4, 1}}) {
        for (float alpha : {1.0f, 0.5f})
          for (float beta : {1.0f, 2.0f}) {
            auto g = std::make_shared<Graph>();
            std::vector<int64_t> ad = ta ? std::vector<int64_t>{3, 4} : std::vector<int64_t>{4, 3};
            std::vector<int64_t> bd = tb ? std::vector<int64_t>{5, 3} : std::vector<int64_t>{3, 5};
            Value* a = g->add_input("a", {DType::f32, Shape::of(ad)});
            Value* b = g->add_input("b", {DType::f32, Shape::of(bd)});
            Value* c = g->add_input("c", {DType::f32, Shape::of(cdims)});
            Value* y = g->add_value("y");
            g->add_node("Gemm", {a, b, c}, {y},
                        {{"transA", int64_t(ta)}, {"transB", int64_t(tb)}, {"alpha", alpha}, {"beta", beta}});
            g->outputs.push_back(y);
            double d = max_diff_vs_reference(
                g, {{"a", random_tensor(ad, rng)}, {"b", random_tensor(bd, rng)}, {"c", random_tensor(cdims, rng)}});
            EXPECT_LT(d, 1e-5) << "transA " << ta << " transB " << tb << " C " << dims_str(cdims) << " alpha "
                               << alpha << " beta " << beta;
          }
      }
}

TEST(CpuMatMul, ReusesPrimitiveAcrossShapes) {
  // One compiled executable run at several sequence lengths must stay correct.
  std::mt19937 rng(11);
  auto g = std::make_shared<Graph>();
  Value* a = g->add_input("a", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(16)})});
  Value* w = g->add_constant("w", random_tensor({16, 8}, rng));
  Value* y = g->add_value("y");
  g->add_node("MatMul", {a, w}, {y});
  g->outputs.push_back(y);
  auto ref = Executable::compile(g, *make_backend("reference"));
  auto cpu = Executable::compile(g, *make_backend("cpu"));
  for (int64_t seq : {1, 9, 4, 9}) {
    std::map<std::string, Tensor> in = {{"a", random_tensor({2, seq, 16}, rng)}};
    Tensor r = ref->run(in)[0], c = cpu->run(in)[0];
    ASSERT_EQ(r.dims(), c.dims());
    for (int64_t i = 0; i < r.numel(); ++i) ASSERT_NEAR(r.data<float>()[i], c.data<float>()[i], 1e-5);
  }
}

}  // namespace

namespace {

struct EltwiseCase {
  std::string op;
  std::map<std::string, AttrValue> attrs;
  float lo, hi;
};

class CpuEltwise : public ::testing::TestWithParam<EltwiseCase> {};

TEST_P(CpuEltwise, MatchesReferenceWithinAFewUlp) {
  const EltwiseCase& c = GetParam();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(c.lo, c.hi);
  for (int64_t n : {1, 7, 4096, 1000}) {  // the primitive is rebuilt when the size changes
    auto g = std::make_shared<Graph>();
    Value* x = g->add_input("x", {DType::f32, Shape::of({n})});
    Value* y = g->add_value("y");
    g->add_node(c.op, {x}, {y}, c.attrs);
    g->outputs.push_back(y);
    Tensor xv = Tensor::empty(DType::f32, {n});
    for (int64_t i = 0; i < n; ++i) xv.data<float>()[i] = u(rng);
    auto ref = Executable::compile(g, *make_backend("reference"))->run({{"x", xv}})[0];
    auto cpu = Executable::compile(g, *make_backend("cpu"))->run({{"x", xv}})[0];
    for (int64_t i = 0; i < n; ++i) {
      float r = ref.data<float>()[i], o = cpu.data<float>()[i];
      ASSERT_NEAR(o, r, 2e-6f + 2e-6f * std::abs(r)) << c.op << " at x = " << xv.data<float>()[i];
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Ops, CpuEltwise,
    ::testing::Values(EltwiseCase{"Tanh", {}, -6, 6}, EltwiseCase{"Exp", {}, -20, 20},
                      EltwiseCase{"Sigmoid", {}, -10, 10}, EltwiseCase{"Relu", {}, -2, 2},
                      EltwiseCase{"LeakyRelu", {{"alpha", 0.2f}}, -2, 2}, EltwiseCase{"Sqrt", {}, 0, 100},
                      EltwiseCase{"Gelu", {}, -5, 5},
                      EltwiseCase{"Gelu", {{"approximate", std::string("tanh")}}, -5, 5}),
    [](const auto& info) { return info.param.op + std::to_string(info.index); });

}  // namespace
