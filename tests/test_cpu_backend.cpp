// The CPU backend against the reference backend (the oracle) where one
// compiled executable is reused; one-node comparisons on random inputs
// (MatMul, Gemm, the oneDNN eltwise ops) are cases of the op harness
// (tests/op_cases/nn.cpp, elementwise.cpp).
#include <gtest/gtest.h>

#include <random>

#include "backends/backend.h"
#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "runtime/executable.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::random_tensor;
using cb::test::uniform;

namespace {

TEST(CpuMatMul, ReusesPrimitiveAcrossShapes) {
  // One compiled executable run at several sequence lengths must stay correct.
  std::mt19937 rng(11);
  auto g = std::make_shared<Graph>();
  Value* a = g->add_input("a", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(16)})});
  Value* w = g->add_constant("w", random_tensor(DType::f32, {16, 8}, uniform(-1, 1), rng));
  Value* y = g->add_value("y");
  g->add_node("MatMul", {a, w}, {y});
  g->outputs.push_back(y);
  auto ref = Executable::compile(g, *make_backend("reference"));
  auto cpu = Executable::compile(g, *make_backend("cpu"));
  for (int64_t seq : {1, 9, 4, 9}) {
    std::map<std::string, Tensor> in = {{"a", random_tensor(DType::f32, {2, seq, 16}, uniform(-1, 1), rng)}};
    Tensor r = ref->run(in)[0], c = cpu->run(in)[0];
    ASSERT_EQ(r.dims(), c.dims());
    for (int64_t i = 0; i < r.numel(); ++i) ASSERT_NEAR(r.data<float>()[i], c.data<float>()[i], 1e-5);
  }
}

// y = gelu(x W + b) with W either a graph constant (prepacked by the cpu
// kernel) or a graph input; x [2, seq, 16].
std::shared_ptr<Graph> fused_graph(bool constant_w, std::mt19937& rng) {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape({Dim::fixed(2), Dim::sym("seq"), Dim::fixed(16)})});
  Value* w = constant_w ? g->add_constant("w", random_tensor(DType::f32, {16, 24}, uniform(-1, 1), rng))
                        : g->add_input("w", {DType::f32, Shape({Dim::fixed(16), Dim::fixed(24)})});
  Value* b = g->add_constant("b", random_tensor(DType::f32, {24}, uniform(-1, 1), rng));
  Value* y = g->add_value("y");
  g->add_node(kFusedMatMulOp, {x, w, b}, {y}, {{"activation", std::string("gelu_tanh")}}, "fc", kCodebookDomain);
  g->outputs.push_back(y);
  return g;
}

void expect_near(const Tensor& r, const Tensor& c) {
  ASSERT_EQ(r.dims(), c.dims());
  for (int64_t i = 0; i < r.numel(); ++i) ASSERT_NEAR(r.data<float>()[i], c.data<float>()[i], 1e-5) << "at " << i;
}

TEST(CpuFusedMatMul, PrepackedWeightsAcrossAlternatingShapes) {
  // The primitives of several shapes are cached side by side; the packed weight is shared by them.
  std::mt19937 rng(12);
  auto g = fused_graph(true, rng);
  auto ref = Executable::compile(g, *make_backend("reference"));
  auto cpu = Executable::compile(g, *make_backend("cpu"));
  for (int64_t seq : {9, 1, 4, 9, 1, 12, 4}) {
    std::map<std::string, Tensor> in = {{"x", random_tensor(DType::f32, {2, seq, 16}, uniform(-1, 1), rng)}};
    expect_near(ref->run(in)[0], cpu->run(in)[0]);
  }
}

TEST(CpuFusedMatMul, WeightFedAtRunTimeIsNeverStale) {
  // Training feeds parameters as graph inputs and may hand the kernel the
  // same buffer with new values (updated in place, or a pooled buffer
  // reused): each run must read the values it is given.
  std::mt19937 rng(13);
  auto g = fused_graph(false, rng);
  auto ref = Executable::compile(g, *make_backend("reference"));
  auto cpu = Executable::compile(g, *make_backend("cpu"));
  Tensor x = random_tensor(DType::f32, {2, 5, 16}, uniform(-1, 1), rng);
  Tensor w = random_tensor(DType::f32, {16, 24}, uniform(-1, 1), rng);
  for (int step = 0; step < 3; ++step) {
    std::map<std::string, Tensor> in = {{"x", x}, {"w", w}};
    Tensor r = ref->run(in)[0], c = cpu->run(in)[0];
    expect_near(r, c);
    Tensor next = random_tensor(DType::f32, {16, 24}, uniform(-1, 1), rng);
    std::copy(next.data<float>(), next.data<float>() + next.numel(), w.data<float>());  // in place
  }
}

}  // namespace
