// The CPU backend against the reference backend (the oracle) where one
// compiled executable is reused; one-node comparisons on random inputs
// (MatMul, Gemm, the oneDNN eltwise ops) are cases of the op harness
// (tests/op_cases/nn.cpp, elementwise.cpp).
#include <gtest/gtest.h>

#include <cstring>
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

namespace {

// One row times a weight (every decode step of generation: the CPU
// backend's own GEMV, not oneDNN's matmul) and one row times a matrix per
// batch entry (attention over a KV cache), against the reference, for both
// weight layouts, with and without a bias, K both a multiple of the GEMV's
// 32-row chunks and not; and bit-identical at 1 and 2 threads.
TEST(CpuOneRowProducts, MatchTheReferenceAtAnyThreadCount) {
  std::mt19937 rng(23);
  struct Case {
    std::string op;
    cb::test::Dims a, b, c;
    bool trans_b;
  };
  const std::vector<Case> cases = {
      {"MatMul", {1, 1, 70}, {70, 300}, {}, false},            // [K, N]: chunks of whole rows
      {"MatMul", {1, 96}, {96, 64}, {}, false},                // K a multiple of the chunk
      {"Gemm", {1, 70}, {300, 70}, {300}, true},               // [N, K]: one dot product per output
      {"Gemm", {1, 45}, {45, 129}, {129}, false},              // [K, N] with a bias
      {"MatMul", {2, 12, 1, 64}, {2, 12, 64, 37}, {}, false},  // scores of one token over a cache
      {"MatMul", {2, 12, 1, 37}, {2, 12, 37, 64}, {}, false},  // the weighted values
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.op + " b " + std::to_string(c.b.size()) + "-D, K " + std::to_string(c.a.back()));
    auto g = std::make_shared<Graph>();
    std::map<std::string, Tensor> in = {{"a", random_tensor(DType::f32, c.a, uniform(-1, 1), rng)}};
    std::vector<Value*> ins = {g->add_input("a", {DType::f32, Shape::of(c.a)})};
    Tensor b = random_tensor(DType::f32, c.b, uniform(-1, 1), rng);
    if (c.b.size() == 2) {
      ins.push_back(g->add_constant("b", b));
    } else {
      ins.push_back(g->add_input("b", {DType::f32, Shape::of(c.b)}));
      in["b"] = b;
    }
    if (!c.c.empty()) ins.push_back(g->add_constant("c", random_tensor(DType::f32, c.c, uniform(-1, 1), rng)));
    Value* y = g->add_value("y");
    std::map<std::string, AttrValue> attrs;
    if (c.op == "Gemm") attrs["transB"] = int64_t(c.trans_b);
    g->add_node(c.op, ins, {y}, attrs);
    g->outputs.push_back(y);
    const Tensor want = Executable::compile(g, *make_backend("reference"))->run(in)[0];
    CompileOptions one, two;
    one.num_threads = 1;
    two.num_threads = 2;
    const Tensor got1 = Executable::compile(g, *make_backend("cpu"), one)->run(in)[0];
    const Tensor got2 = Executable::compile(g, *make_backend("cpu"), two)->run(in)[0];
    expect_near(want, got1);
    ASSERT_EQ(got1.dims(), got2.dims());
    EXPECT_EQ(std::memcmp(got1.raw(), got2.raw(), got1.nbytes()), 0) << "the thread count changed the bits";
  }
}

}  // namespace
