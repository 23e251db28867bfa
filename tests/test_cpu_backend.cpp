// The CPU backend against the reference backend (the oracle) where one
// compiled executable is reused; one-node comparisons on random inputs
// (MatMul, Gemm, the oneDNN eltwise ops) are cases of the op harness
// (tests/op_cases/nn.cpp, elementwise.cpp).
#include <gtest/gtest.h>

#include <random>

#include "backends/backend.h"
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

}  // namespace
