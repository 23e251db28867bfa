// Precision bf16 (docs/precision.md): the rounding (ir/precision.h) and its
// fast conversion, the bf16-matmuls pass, the reference kernels' contract
// (bf16 factors, f32 everything else), the CPU backend's oneDNN bf16
// matmuls against that reference on random inputs, and the test models end
// to end. The CPU kernels need AVX512_BF16: on other CPUs those tests check
// the clear error instead.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "backends/cpu/bf16_convert.h"
#include "frontend/onnx_import.h"
#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "ir/graph_clone.h"
#include "ir/precision.h"
#include "passes/bf16_matmuls.h"
#include "passes/inference_pipeline.h"
#include "support/cpu_features.h"
#include "tests/model_fixtures.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::max_abs;
using cb::test::max_abs_diff;
using cb::test::random_tensor;
using cb::test::uniform;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Bf16Rounding, RoundsToNearestEvenAndFlushesDenormals) {
  EXPECT_EQ(bf16_round_bits(1.0f), 0x3f80);
  EXPECT_EQ(bf16_round_bits(-2.0f), 0xc000);
  EXPECT_EQ(bf16_round_bits(float_of(0x3f808000)), 0x3f80);  // a tie: to the even 0x3f80
  EXPECT_EQ(bf16_round_bits(float_of(0x3f818000)), 0x3f82);  // a tie: to the even 0x3f82
  EXPECT_EQ(bf16_round_bits(float_of(0x3f808001)), 0x3f81);  // above the tie: up
  EXPECT_EQ(bf16_round_bits(float_of(0x3f807fff)), 0x3f80);  // below: down
  EXPECT_EQ(bf16_round_bits(float_of(0x00400000)), 0x0000);  // a denormal reads as zero
  EXPECT_EQ(bf16_round_bits(float_of(0x80000001)), 0x8000);  // with its sign
  EXPECT_EQ(bf16_round_bits(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(bf16_round_bits(std::numeric_limits<float>::max()), 0x7f80);  // rounds up to infinity
  EXPECT_TRUE(std::isnan(bf16_round(std::nanf(""))));
  EXPECT_TRUE(std::isnan(bf16_round(float_of(0x7f800001))));  // a signalling NaN whose payload rounding would lose
  EXPECT_EQ(bf16_round(0.1f), 0.10009765625f);
}

// The fast conversion gives bf16_round_bits' bits, on every length (tails)
// and on values of every kind. Under CB_MAX_CPU_ISA=portable (ctest runs
// this file both ways) that checks the portable path, else the AVX-512 one.
TEST(Bf16Conversion, EqualsTheRoundingBitForBit) {
  std::mt19937 rng(7);
  std::vector<float> src;
  for (int i = 0; i < 4000; ++i) src.push_back(float_of(uint32_t(rng())));  // every exponent, NaNs included
  for (float f : {0.0f, -0.0f, 1.0f, float_of(0x3f808000), float_of(0x3f818000), float_of(0x00000001),
                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                  std::numeric_limits<float>::max()})
    src.push_back(f);
  std::uniform_real_distribution<float> uni(-3.0f, 3.0f);
  for (int i = 0; i < 1000; ++i) src.push_back(uni(rng));
  for (int64_t n : std::vector<int64_t>{0, 1, 15, 16, 17, 31, 32, 33, 63, 100, int64_t(src.size())}) {
    std::vector<uint16_t> got(size_t(n) + 1, 0xabcd);
    convert_to_bf16(src.data(), got.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(got[size_t(i)], bf16_round_bits(src[size_t(i)])) << "n " << n << " i " << i;
    EXPECT_EQ(got[size_t(n)], 0xabcd) << "wrote past the end, n " << n;
  }
  std::vector<uint16_t> par(src.size());
  convert_to_bf16_parallel(src.data(), par.data(), int64_t(src.size()), 2);
  for (size_t i = 0; i < src.size(); ++i) ASSERT_EQ(par[i], bf16_round_bits(src[i])) << i;
  for (int64_t n : std::vector<int64_t>{0, 1, 15, 16, 17, 100, int64_t(src.size())}) {
    std::vector<float> as_f32(size_t(n) + 1, 7.0f);
    round_to_bf16_parallel(src.data(), as_f32.data(), n, 2);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(bits_of(as_f32[size_t(i)]), bits_of(bf16_round(src[size_t(i)]))) << "n " << n << " i " << i;
    EXPECT_EQ(as_f32[size_t(n)], 7.0f) << "wrote past the end, n " << n;
  }
}

TEST(Bf16Precision, ParsesItsNamesAndNamesWhereABadOneCameFrom) {
  EXPECT_EQ(parse_precision("f32", "x"), Precision::f32);
  EXPECT_EQ(parse_precision("fp32", "x"), Precision::f32);
  EXPECT_EQ(parse_precision("bf16", "x"), Precision::bf16);
  try {
    parse_precision("fp8", "--precision");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "--precision: precision 'fp8' is not one of f32, bf16");
  }
}

// ------------------------------------------------------------ the pass

TEST(Bf16MatMulsPass, MarksTheF32MatMulsOnly) {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", TensorType{DType::f32, Shape::of({2, 3, 4})});
  Value* w = g->add_constant("w", random_tensor(DType::f32, {4, 5}));
  Value* i = g->add_input("i", TensorType{DType::i64, Shape::of({2, 2})});
  Value* y = g->add_value("y");
  Value* z = g->add_value("z");
  Value* k = g->add_value("k");
  Value* f = g->add_value("f");
  Value* s = g->add_value("s");
  g->add_node("MatMul", {x, w}, {y});
  g->add_node("MatMul", {x, g->add_input("xt", TensorType{DType::f32, Shape::of({2, 4, 3})})}, {s});  // batched
  g->add_node("Gemm", {g->add_constant("a", random_tensor(DType::f32, {3, 4})), w}, {z});
  g->add_node("MatMul", {i, i}, {k});
  g->add_node(kFusedMatMulOp, {x, w}, {f}, {}, "", kCodebookDomain);
  g->outputs = {y, z, k, f, s};
  infer_types(*g);
  Bf16MatMulsPass pass;
  EXPECT_TRUE(PassManager().run(pass, *g));
  EXPECT_EQ(pass.marked(), 3);
  for (auto& n : g->nodes())
    EXPECT_EQ(node_precision(*n), n->inputs[0] == i || n->outputs[0] == s ? Precision::f32 : Precision::bf16)
        << n->describe();
  Bf16MatMulsPass again;
  EXPECT_FALSE(PassManager().run(again, *g)) << "a second run changes nothing";
}

TEST(Bf16MatMulsPass, TheInferencePipelineRunsItLastOnlyForBf16) {
  std::shared_ptr<Graph> g = import_onnx((cb::test::models_dir() / "gpt2" / "model.onnx").string());
  int fused = 0;
  const std::shared_ptr<Graph> bf16 = inference_graph(g, Precision::bf16), f32 = inference_graph(g);
  for (auto& n : bf16->nodes()) {
    if (n->op_type == kFusedMatMulOp) ++fused;
    if (n->op_type == kFusedMatMulOp || n->op_type == "MatMul" || n->op_type == "Gemm")
      EXPECT_EQ(node_precision(*n), Precision::bf16) << n->describe();
  }
  EXPECT_GT(fused, 0);
  for (auto& n : f32->nodes()) EXPECT_FALSE(n->has_attr(kPrecisionAttr)) << n->describe();
  for (auto& n : g->nodes()) EXPECT_FALSE(n->has_attr(kPrecisionAttr)) << "the model itself is left alone";
}

// --------------------------------------------------- the reference contract

struct MatMulCase {
  std::string name, op;
  cb::test::Dims a, b, c;  // c empty: no third input
  cb::test::Attrs attrs;
  bool constant_b = false;
};

std::vector<MatMulCase> matmul_cases() {
  using A = cb::test::Attrs;
  return {
      {"matmul_2d", "MatMul", {37, 70}, {70, 45}, {}, {}, false},
      {"matmul_3d_by_2d_constant", "MatMul", {2, 33, 64}, {64, 100}, {}, {}, true},
      {"matmul_batched", "MatMul", {2, 3, 17, 24}, {2, 3, 24, 19}, {}, {}, false},
      {"matmul_one_row", "MatMul", {1, 1, 96}, {96, 130}, {}, {}, true},
      {"gemm_one_row_trans_b_bias", "Gemm", {1, 70}, {67, 70}, {67}, A{{"transB", int64_t(1)}}, true},
      {"fused_one_row_gelu",
       kFusedMatMulOp,
       {1, 1, 45},
       {45, 200},
       {200},
       A{{"activation", std::string("gelu_tanh")}},
       true},
      {"gemm_trans_b_bias", "Gemm", {29, 48}, {65, 48}, {65}, A{{"transB", int64_t(1)}}, true},
      {"gemm_trans_a_scaled",
       "Gemm",
       {48, 29},
       {48, 40},
       {29, 40},
       A{{"transA", int64_t(1)}, {"alpha", 0.5f}, {"beta", 2.0f}},
       false},
      {"fused_bias_gelu_tanh",
       kFusedMatMulOp,
       {2, 21, 64},
       {64, 256},
       {256},
       A{{"activation", std::string("gelu_tanh")}},
       true},
      {"fused_trans_b_gelu_erf",
       kFusedMatMulOp,
       {40, 64},
       {80, 64},
       {80},
       A{{"transB", int64_t(1)}, {"activation", std::string("gelu_erf")}},
       false},
      {"fused_input_weight", kFusedMatMulOp, {3, 5, 33}, {33, 47}, {}, {}, false},
      // The small and odd sizes of training a tiny model: K = 3 (a vocabulary), N = 3, K = 1.
      {"matmul_odd_k", "MatMul", {2, 7, 3}, {3, 16}, {}, {}, false},
      {"matmul_odd_n", "MatMul", {2, 7, 16}, {16, 3}, {}, {}, false},
      {"gemm_trans_a_odd", "Gemm", {14, 16}, {14, 3}, {}, A{{"transA", int64_t(1)}}, false},
      {"gemm_trans_a_k1", "Gemm", {1, 16}, {1, 48}, {}, A{{"transA", int64_t(1)}}, false},
      {"gemm_trans_b_odd", "Gemm", {14, 3}, {16, 3}, {}, A{{"transB", int64_t(1)}}, false},
  };
}

// The one-node graph of a case (inputs a, b[, c]; b a constant when asked),
// marked bf16 or not, and its feeds.
std::pair<std::shared_ptr<Graph>, std::map<std::string, Tensor>> case_graph(const MatMulCase& c, bool bf16,
                                                                            std::mt19937& rng) {
  auto g = std::make_shared<Graph>();
  std::map<std::string, Tensor> feeds;
  feeds["a"] = random_tensor(DType::f32, c.a, uniform(-2, 2), rng);
  Tensor b = random_tensor(DType::f32, c.b, uniform(-2, 2), rng);
  std::vector<Value*> ins = {g->add_input("a", TensorType{DType::f32, Shape::of(c.a)})};
  if (c.constant_b) {
    ins.push_back(g->add_constant("b", b));
  } else {
    ins.push_back(g->add_input("b", TensorType{DType::f32, Shape::of(c.b)}));
    feeds["b"] = b;
  }
  if (!c.c.empty()) {
    ins.push_back(g->add_input("c", TensorType{DType::f32, Shape::of(c.c)}));
    feeds["c"] = random_tensor(DType::f32, c.c, uniform(-1, 1), rng);
  }
  Value* y = g->add_value("y");
  cb::test::Attrs attrs = c.attrs;
  if (bf16) attrs[kPrecisionAttr] = std::string("bf16");
  g->add_node(c.op, ins, {y}, attrs, "", c.op == kFusedMatMulOp ? kCodebookDomain : "");
  g->outputs = {y};
  infer_types(*g);
  return {g, feeds};
}

Tensor rounded(const Tensor& t) {
  Tensor r = t.clone();
  for (int64_t i = 0; i < r.numel(); ++i) r.data<float>()[i] = bf16_round(r.data<float>()[i]);
  return r;
}

// A marked node on the reference is the plain f32 node run on bf16-rounded
// A and B, bit for bit; and that differs from the unrounded product.
TEST(Bf16Reference, IsTheF32ProductOfRoundedFactors) {
  auto reference = make_backend("reference");
  for (const MatMulCase& c : matmul_cases()) {
    SCOPED_TRACE(c.name);
    std::mt19937 rng(11), rng2(11);
    auto [marked, feeds] = case_graph(c, true, rng);
    auto [plain, same_feeds] = case_graph(c, false, rng2);
    const Tensor got = Executable::compile(marked, *reference)->run(feeds)[0];
    const Tensor f32 = Executable::compile(plain, *reference)->run(feeds)[0];
    // The plain graph on rounded factors: round the feeds, and the constant B.
    std::map<std::string, Tensor> rounded_feeds;
    for (auto& [name, t] : feeds) rounded_feeds[name] = name == "c" ? t : rounded(t);
    if (c.constant_b) {
      Value* b = plain->find_value("b");
      b->constant = rounded(*b->constant);
    }
    const Tensor want = Executable::compile(plain, *reference)->run(rounded_feeds)[0];
    EXPECT_EQ(max_abs_diff(got, want), 0.0);
    EXPECT_GT(max_abs_diff(got, f32), 1e-3) << "bf16 rounding changed nothing";
  }
}

// ------------------------------------------------------- the CPU backend

// The CPU backend's marked matmuls (oneDNN bf16, constant B packed as bf16;
// one row times a constant B: backends/cpu/gemv_bf16.h) against the reference's: the same rounded factors, so they
// differ only by the order of f32 accumulation. Each runs twice (the second reuses the primitive and the packed
// weights).
TEST(Bf16Cpu, MatchesTheReferenceOnRandomInputs) {
  if (!cpu_supports_bf16_matmuls()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  auto reference = make_backend("reference");
  auto cpu = make_backend("cpu");
  for (const MatMulCase& c : matmul_cases()) {
    SCOPED_TRACE(c.name);
    std::mt19937 rng(5);
    auto [g, feeds] = case_graph(c, true, rng);
    const Tensor want = Executable::compile(g, *reference)->run(feeds)[0];
    auto exe = Executable::compile(g, *cpu);
    for (int run = 0; run < 2; ++run) {
      const Tensor got = exe->run(feeds)[0];
      EXPECT_LE(max_abs_diff(got, want), 2e-5 * (1 + max_abs(want))) << "run " << run;
    }
    // Not an f32 product in disguise: the f32 graph's output is further away.
    std::mt19937 rng2(5);
    auto [plain, plain_feeds] = case_graph(c, false, rng2);
    const Tensor f32 = Executable::compile(plain, *reference)->run(plain_feeds)[0];
    EXPECT_GT(max_abs_diff(exe->run(feeds)[0], f32), 1e-3);
  }
}

TEST(Bf16Cpu, WithoutAvx512Bf16CreatingAMarkedKernelIsOneClearError) {
  if (cpu_supports_bf16_matmuls()) GTEST_SKIP() << "this CPU has AVX512_BF16";
  std::mt19937 rng(5);
  auto [g, feeds] = case_graph(matmul_cases()[0], true, rng);
  try {
    Executable::compile(g, *make_backend("cpu"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("precision bf16 needs a CPU with AVX512_BF16"), std::string::npos) << e.what();
  }
}

// Every test model, fused and marked, on the CPU backend against the
// reference running the same marked graph; and both near the f32 logits.
TEST(Bf16Cpu, TestModelsMatchTheReference) {
  if (!cpu_supports_bf16_matmuls()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  auto reference = make_backend("reference");
  auto cpu = make_backend("cpu");
  for (const std::string& model : cb::test::model_names()) {
    SCOPED_TRACE(model);
    std::shared_ptr<Graph> g = import_onnx((cb::test::models_dir() / model / "model.onnx").string());
    std::shared_ptr<Graph> bf16 = inference_graph(g, Precision::bf16);
    auto want_exe = Executable::compile(bf16, *reference);
    const auto feeds = cb::test::case_inputs(*want_exe, cb::test::models_dir() / model / "case0");
    const Tensor want = want_exe->run(feeds)[0];
    const Tensor got = Executable::compile(bf16, *cpu)->run(feeds)[0];
    const Tensor f32 = Executable::compile(g, *reference)->run(feeds)[0];
    const double scale = 1 + max_abs(f32);
    EXPECT_LE(max_abs_diff(got, want), 1e-3 * scale);
    EXPECT_LE(max_abs_diff(got, f32), 5e-2 * scale);
    EXPECT_GT(max_abs_diff(want, f32), 0.0) << "the marks changed nothing";
  }
}

}  // namespace

namespace {

// A weight that is a graph input (a parameter training feeds anew each step)
// changes between runs: every run multiplies the new one.
TEST(Bf16Cpu, AWeightFedAtRunTimeIsNeverStale) {
  if (!cpu_supports_bf16_matmuls()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  auto reference = make_backend("reference");
  auto cpu = make_backend("cpu");
  for (const MatMulCase& c : matmul_cases()) {
    if (c.constant_b) continue;
    SCOPED_TRACE(c.name);
    std::mt19937 rng(9);
    auto [g, feeds] = case_graph(c, true, rng);
    auto ref = Executable::compile(g, *reference);
    auto exe = Executable::compile(g, *cpu);
    for (int run = 0; run < 3; ++run) {
      feeds["a"] = random_tensor(DType::f32, c.a, uniform(-2, 2), rng);
      feeds["b"] = random_tensor(DType::f32, c.b, uniform(-2, 2), rng);
      const Tensor want = ref->run(feeds)[0];
      EXPECT_LE(max_abs_diff(exe->run(feeds)[0], want), 2e-5 * (1 + max_abs(want))) << "run " << run;
    }
  }
}

// A constant weight read by many rows and by one row in turn, as a prefill
// and its decode steps read it: the rows' first call reads the GEMV's bf16
// rows, the one-row calls the same rows, the rows' second call oneDNN's
// packed copy; every call matches the reference, for [K, N] and transposed
// weights.
TEST(Bf16Cpu, ManyRowsAndOneRowShareTheRoundedWeight) {
  if (!cpu_supports_bf16_matmuls()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  auto reference = make_backend("reference");
  auto cpu = make_backend("cpu");
  for (const bool trans_b : {false, true}) {
    SCOPED_TRACE(trans_b ? "transB" : "[K, N]");
    const int64_t K = 48, N = 70;
    std::mt19937 rng(13);
    auto g = std::make_shared<Graph>();
    Value* a = g->add_input("a", TensorType{DType::f32, Shape({Dim::sym("rows"), Dim::fixed(K)})});
    Value* b = g->add_constant(
        "b", random_tensor(DType::f32, trans_b ? cb::test::Dims{N, K} : cb::test::Dims{K, N}, uniform(-2, 2), rng));
    Value* y = g->add_value("y");
    g->add_node("Gemm", {a, b}, {y}, {{"transB", int64_t(trans_b)}, {kPrecisionAttr, std::string("bf16")}});
    g->outputs = {y};
    infer_types(*g);
    auto ref = Executable::compile(g, *reference);
    auto exe = Executable::compile(g, *cpu);
    for (int64_t rows : {9, 1, 9, 1, 9}) {
      std::map<std::string, Tensor> feeds = {{"a", random_tensor(DType::f32, {rows, K}, uniform(-2, 2), rng)}};
      const Tensor want = ref->run(feeds)[0];
      EXPECT_LE(max_abs_diff(exe->run(feeds)[0], want), 2e-5 * (1 + max_abs(want))) << rows << " rows";
    }
  }
}

}  // namespace
