// Tests of passes/lower_codebook: every Codebook node becomes standard ONNX
// ops with the same results. Small graphs x[B,T,D] -> Codebook -> (y, ids,
// scores) with random N(0,1) codes and random LayerNorm affines run before
// (reference kernel) and after lowering (reference kernels of the standard
// ops) at two sequence lengths; ids must be identical, y and scores within
// 1e-5. Hand-checkable cases pin the semantics of ir/codebook.h, and the
// `codebook export` tests write what tests/ort_codebook_check.py runs with
// ONNX Runtime (the `ort_codebook_check` ctest).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "backends/backend.h"
#include "frontend/npy.h"
#include "frontend/onnx_export.h"
#include "frontend/onnx_import.h"
#include "ir/codebook.h"
#include "ir/verifier.h"
#include "passes/canonicalize.h"
#include "passes/lower_codebook.h"
#include "runtime/executable.h"
#include "tests/cli_util.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::random_tensor;
namespace fs = std::filesystem;

namespace {

constexpr float kTolerance = 1e-5f;
constexpr int64_t kBatch = 2;
constexpr int64_t kSeqLens[] = {5, 9};

struct Case {
  std::string name;
  int64_t G = 1, K = 12, Dg = 8, k = 1;
  CodebookMetric metric = CodebookMetric::inner_product;
  bool keep_k_codes = true;
  float epsilon = 1e-5f;
  std::vector<CodebookAblation> ablate;
  std::vector<CodebookTopkBlock> disable_topk;
  std::vector<CodebookForce> force;
  bool codes_as_input = false;  // codes a graph input, not a constant
  bool ties = false;            // duplicated and (inner_product) zero codes
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

Tensor make_codes(const Case& c, std::mt19937& rng) {
  Tensor codes = random_tensor(DType::f32, {c.G, c.K, c.Dg}, test::normal(0, 1), rng);
  if (c.ties) {
    float* p = codes.data<float>();
    for (int64_t g = 0; g < c.G; ++g) {
      float* cg = p + g * c.K * c.Dg;
      for (int64_t d = 0; d < c.Dg; ++d) {
        cg[5 * c.Dg + d] = cg[2 * c.Dg + d];  // code 5 == code 2
        cg[9 * c.Dg + d] = cg[7 * c.Dg + d];  // code 9 == code 7
        if (c.metric == CodebookMetric::inner_product) cg[3 * c.Dg + d] = cg[8 * c.Dg + d] = 0;
        cg[4 * c.Dg + d] = 2.0f * cg[2 * c.Dg + d];  // same direction as 2 and 5
      }
    }
  }
  return codes;
}

// x [batch, seq, G*Dg] -> one codebook node -> (y, ids, scores). The same
// seed gives the same graph, so the original and the lowered copy agree.
std::shared_ptr<Graph> build_graph(const Case& c, uint32_t seed = 7) {
  std::mt19937 rng(seed);
  auto g = std::make_shared<Graph>();
  g->opsets[""] = 18;
  g->opsets[kCodebookDomain] = 1;
  const int64_t D = c.G * c.Dg;
  Value* x = g->add_input("x", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(D)})});
  Tensor codes_t = make_codes(c, rng);
  Value* codes = c.codes_as_input ? g->add_input("codes", {DType::f32, Shape::of({c.G, c.K, c.Dg})})
                                  : g->add_constant("codes", codes_t);
  Value* scale = g->add_constant("ln_scale", random_tensor(DType::f32, {c.G, c.Dg}, test::normal(1.0f, 0.3f), rng));
  Value* bias = g->add_constant("ln_bias", random_tensor(DType::f32, {c.G, c.Dg}, test::normal(0.0f, 0.3f), rng));
  Value* y = g->add_value("y");
  Value* ids = g->add_value("ids");
  Value* scores = g->add_value("scores");
  Node* n = g->add_node(kCodebookOp, {x, codes, scale, bias}, {y, ids, scores}, {}, "site0", kCodebookDomain);
  CodebookAttrs a;
  a.k = c.k;
  a.metric = c.metric;
  a.epsilon = c.epsilon;
  a.keep_k_codes = c.keep_k_codes;
  a.ablate = c.ablate;
  a.disable_topk = c.disable_topk;
  a.force = c.force;
  a.to_node(*n);
  g->outputs = {y, ids, scores};
  infer_types(*g);
  return g;
}

std::map<std::string, Tensor> make_inputs(const Case& c, int64_t T, uint32_t seed) {
  std::mt19937 rng(seed);
  std::map<std::string, Tensor> in;
  in["x"] = random_tensor(DType::f32, {kBatch, T, c.G * c.Dg}, test::normal(0.5f, 2.0f), rng);
  if (c.codes_as_input) {
    std::mt19937 code_rng(7);  // the graph's seed: same codes as the constant variant
    in["codes"] = make_codes(c, code_rng);
  }
  return in;
}

std::vector<Tensor> run(std::shared_ptr<Graph> g, const std::map<std::string, Tensor>& inputs) {
  auto exe = Executable::compile(g, *make_reference_backend());
  return exe->run(inputs);
}

// Number of positions where a and b differ (ids) / exceed the tolerance
// (floats; -inf must match -inf).
int64_t mismatches(const Tensor& a, const Tensor& b, float tol) {
  EXPECT_EQ(a.dims(), b.dims());
  EXPECT_EQ(a.dtype(), b.dtype());
  if (a.dims() != b.dims() || a.dtype() != b.dtype()) return -1;
  int64_t bad = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (a.dtype() == DType::i64) {
      bad += a.data<int64_t>()[i] != b.data<int64_t>()[i];
      continue;
    }
    float p = a.data<float>()[i], q = b.data<float>()[i];
    bool same = std::isinf(p) || std::isinf(q) ? p == q : std::fabs(p - q) <= tol;
    bad += !same;
  }
  return bad;
}

void expect_same_outputs(const std::vector<Tensor>& want, const std::vector<Tensor>& got, const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(mismatches(want[i], got[i], kTolerance), 0)
        << what << ", output " << i << ":\n  want " << want[i].str(24) << "\n  got  " << got[i].str(24);
}

bool has_codebook_node(const Graph& g) {
  for (auto& n : g.nodes())
    if (n->domain == kCodebookDomain) return true;
  return false;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = [] {
    std::vector<Case> v;
    for (auto metric : {CodebookMetric::inner_product, CodebookMetric::euclidean})
      for (int64_t G : {1, 4})
        for (int64_t k : {1, 4}) {
          Case c;
          c.name = std::string("plain_") + metric_name(metric) + "_G" + std::to_string(G) + "_k" + std::to_string(k);
          c.G = G, c.k = k, c.metric = metric;
          v.push_back(c);
        }
    Case c;
    c.G = 4, c.k = 4;
    // Ablations everywhere, per member, and at positions (T = 5 and 9:
    // position 7 exists only in the longer call, -20 in neither).
    c.name = "ablate_everywhere";
    c.ablate = {{kAll, kAll, 3}, {1, kAll, 5}, {kAll, kAll, 0}, {2, kAll, 11}};
    v.push_back(c);
    c.name = "ablate_positions";
    c.metric = CodebookMetric::euclidean;
    c.ablate = {{kAll, 0, 2}, {2, -1, 7}, {kAll, 3, 1}, {0, -20, 4}, {1, 7, 3}, {kAll, -4, 6}, {3, 1, 9}};
    v.push_back(c);
    c.name = "ablate_positions_zero_mode";
    c.keep_k_codes = false;
    v.push_back(c);
    c = Case{};
    c.G = 4, c.k = 4;
    c.name = "disable_topk_skip";
    c.disable_topk = {{kAll, kAll, 1}, {2, 1, 3}, {kAll, -2, 2}, {1, 8, 4}, {kAll, 1, 2}};
    v.push_back(c);
    c.name = "disable_topk_zero_mode";
    c.keep_k_codes = false;
    v.push_back(c);
    c.name = "disable_topk_and_ablate_skip_k1";
    c.k = 1, c.G = 1, c.keep_k_codes = true;
    c.ablate = {{kAll, -1, 0}, {kAll, 2, 4}, {kAll, kAll, 8}};
    c.disable_topk = {{kAll, -1, 2}, {0, 0, 1}};
    v.push_back(c);
    c.name = "disable_topk_and_ablate_zero_k1";
    c.keep_k_codes = false;
    v.push_back(c);
    // The original test suite's Mode B case (K=15, k=10).
    c = Case{};
    c.name = "spec_worked_example";
    c.K = 15, c.k = 10, c.keep_k_codes = false;
    for (int64_t p : {0, 1, 2}) {
      for (int64_t code : {0, 1, 2}) c.ablate.push_back({kAll, p, code});
      c.disable_topk.push_back({kAll, p, 3});
    }
    v.push_back(c);
    c = Case{};
    c.G = 4, c.k = 4;
    c.name = "force";
    c.force = {{kAll, kAll, 0, 5}, {1, -1, -1, 2}, {kAll, 2, 1, -1}, {kAll, 2, 1, 3}, {3, -9, 2, -1}, {0, 0, -2, 11}};
    v.push_back(c);
    c.name = "force_k1_blocking_euclidean";
    c.G = 1, c.k = 1, c.metric = CodebookMetric::euclidean;
    c.force = {{kAll, 1, 0, -1}, {kAll, -1, -1, 6}, {0, 4, 0, 2}, {kAll, 4, 0, -1}};
    v.push_back(c);
    c = Case{};
    c.name = "everything_skip";
    c.G = 4, c.k = 4, c.K = 16, c.metric = CodebookMetric::euclidean, c.epsilon = 1e-3f;
    c.ablate = {{kAll, kAll, 0}, {1, -1, 3}, {kAll, 2, 5}, {3, -3, 12}};
    c.disable_topk = {{kAll, -1, 1}, {0, 3, 2}, {kAll, 6, 3}};
    c.force = {{2, kAll, 3, 15}, {kAll, -2, 0, -1}, {1, 0, -4, 7}};
    v.push_back(c);
    c.name = "everything_zero_mode";
    c.keep_k_codes = false;
    v.push_back(c);
    c = Case{};
    c.name = "codes_input_ablate_force";
    c.G = 4, c.k = 4, c.codes_as_input = true;
    c.ablate = {{kAll, 1, 2}, {kAll, -1, 4}};
    c.force = {{kAll, 3, 0, 7}};
    v.push_back(c);
    c.name = "codes_input_zero_mode_euclidean";
    c.metric = CodebookMetric::euclidean, c.keep_k_codes = false;
    c.disable_topk = {{kAll, -2, 1}};
    v.push_back(c);
    for (auto metric : {CodebookMetric::inner_product, CodebookMetric::euclidean}) {
      c = Case{};
      c.name = std::string("ties_") + metric_name(metric);
      c.G = 4, c.k = 4, c.ties = true, c.metric = metric;
      c.ablate = {{kAll, 1, 2}};
      v.push_back(c);
    }
    // Fewer unablated codes than k + m: ablated (-inf) codes are taken in
    // code order after the others.
    c = Case{};
    c.name = "ablated_codes_still_selected";
    c.K = 6, c.k = 4;
    c.ablate = {{kAll, kAll, 1}, {kAll, kAll, 2}, {kAll, kAll, 4}};
    c.disable_topk = {{kAll, kAll, 1}};
    v.push_back(c);
    return v;
  }();
  return all;
}

const Case& case_named(const std::string& name) {
  for (const Case& c : cases())
    if (c.name == name) return c;
  CB_FAIL("no test case named " << name);
}

bool has_interventions(const Case& c) { return !c.ablate.empty() || !c.disable_topk.empty() || !c.force.empty(); }

class LowerCodebook : public ::testing::TestWithParam<Case> {};

TEST_P(LowerCodebook, SameResultsAsTheKernelAtTwoSequenceLengths) {
  const Case& c = GetParam();
  auto original = build_graph(c);
  auto lowered = build_graph(c);
  EXPECT_EQ(lower_codebooks(*lowered), 1);
  verify_graph(*lowered);
  EXPECT_FALSE(has_codebook_node(*lowered));
  EXPECT_EQ(lowered->opsets.count(kCodebookDomain), 0u);
  ASSERT_EQ(lowered->outputs.size(), 3u);
  EXPECT_EQ(lowered->outputs[0]->name, "y");
  EXPECT_EQ(lowered->outputs[1]->name, "ids");
  EXPECT_EQ(lowered->outputs[2]->name, "scores");
  // What `codebook export --standard` writes: canonicalised, through ONNX.
  auto reimported = import_onnx_bytes(export_onnx_bytes(*lowered), "", "lowered " + c.name);
  EXPECT_FALSE(has_codebook_node(*reimported));

  auto plain_case = c;
  plain_case.ablate.clear(), plain_case.disable_topk.clear(), plain_case.force.clear();
  auto plain = build_graph(plain_case);
  for (int64_t T : kSeqLens) {
    auto inputs = make_inputs(c, T, uint32_t(100 + T));
    std::vector<Tensor> want = run(original, inputs);
    ASSERT_EQ(want.size(), 3u);
    expect_same_outputs(want, run(lowered, inputs), c.name + " lowered, T=" + std::to_string(T));
    expect_same_outputs(want, run(reimported, inputs), c.name + " lowered and re-imported, T=" + std::to_string(T));
    if (has_interventions(c))  // the interventions must do something for the test to mean anything
      EXPECT_GT(mismatches(want[1], run(plain, inputs)[1], 0), 0) << c.name << ": interventions changed no id";
    if (c.ties) {  // ... and the tied codes 2 and 5 must both be selected somewhere
      int64_t both = 0;
      const int64_t* id = want[1].data<int64_t>();
      for (int64_t i = 0; i < want[1].numel(); i += c.k)
        both += std::count(id + i, id + i + c.k, 2) && std::count(id + i, id + i + c.k, 5);
      EXPECT_GT(both, 0) << c.name << ": no token selected both tied codes";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, LowerCodebook, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

// ------------------------------------------------ hand-checkable semantics

// D = 2, G = 1: LayerNorm maps (5, 1) to about (1, -1), and (1, 5) to
// (-1, 1) (epsilon shrinks them by 2/sqrt(4 + 1e-5)).
struct Tiny {
  std::shared_ptr<Graph> g;
  Node* node;
};

Tiny tiny_graph(int64_t k, const std::vector<float>& codes) {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(2)})});
  int64_t K = int64_t(codes.size()) / 2;
  Value* c = g->add_constant("codes", Tensor::from_vector(codes, {1, K, 2}));
  Value* s = g->add_constant("ln_scale", Tensor::from_vector<float>({1, 1}, {1, 2}));
  Value* b = g->add_constant("ln_bias", Tensor::from_vector<float>({0, 0}, {1, 2}));
  Value* y = g->add_value("y");
  Value* ids = g->add_value("ids");
  Value* scores = g->add_value("scores");
  Node* n = g->add_node(kCodebookOp, {x, c, s, b}, {y, ids, scores}, {{"k", k}}, "tiny", kCodebookDomain);
  g->outputs = {y, ids, scores};
  return {g, n};
}

// Codes: 0 = zero, 1 = 3*(1,-1), 2 = (-1,1), 3 = (1,0), 4 = zero.
const std::vector<float> kTinyCodes = {0, 0, 3, -3, -1, 1, 1, 0, 0, 0};

std::vector<Tensor> run_lowered(Tiny t, const Tensor& x) {
  infer_types(*t.g);
  lower_codebooks(*t.g);
  return run(t.g, {{"x", x}});
}

TEST(LowerCodebookSemantics, InnerProductRanksByCosineAndBreaksTiesToTheLowerId) {
  Tiny t = tiny_graph(4, kTinyCodes);
  // position 0: u ~ (1,-1); position 1: u ~ (-1,1)
  auto out = run_lowered(t, Tensor::from_vector<float>({5, 1, 1, 5}, {1, 2, 2}));
  // u.(1,-1)*3/|.| = sqrt2, (1,0) -> 1, the zero codes 0 and 4 -> 0 (tie: 0 first), (-1,1) -> -sqrt2
  EXPECT_EQ(out[1].to_int_vector(), (std::vector<int64_t>{1, 3, 0, 4, 2, 0, 4, 3}));
  const float s = 2.0f / std::sqrt(4.0f + 1e-5f);  // u = (2,-2) / sqrt(var + eps)
  const float* sc = out[2].data<float>();
  EXPECT_NEAR(sc[0], std::sqrt(2.0f) * s, 1e-6);
  EXPECT_NEAR(sc[1], s, 1e-6);
  EXPECT_EQ(sc[2], 0.0f);
  EXPECT_EQ(sc[3], 0.0f);
  EXPECT_NEAR(sc[4], std::sqrt(2.0f) * s, 1e-6);
  EXPECT_NEAR(sc[7], -s, 1e-6);
  // y = mean of the 4 rows: ((3,-3) + (1,0) + 0 + 0) / 4
  EXPECT_NEAR(out[0].data<float>()[0], 1.0f, 1e-6);
  EXPECT_NEAR(out[0].data<float>()[1], -0.75f, 1e-6);
  EXPECT_NEAR(out[0].data<float>()[2], 0.0f, 1e-6);  // ((-1,1) + 0 + 0 + (1,0)) / 4
  EXPECT_NEAR(out[0].data<float>()[3], 0.25f, 1e-6);
}

TEST(LowerCodebookSemantics, EuclideanRanksByDistance) {
  Tiny t = tiny_graph(2, kTinyCodes);
  t.node->attrs["metric"] = std::string("euclidean");
  auto out = run_lowered(t, Tensor::from_vector<float>({5, 1}, {1, 1, 2}));
  // u ~ (1,-1): distances (1,0) -> 1, zero codes -> sqrt2 (0 before 4), 3*(1,-1) -> 2 sqrt2
  EXPECT_EQ(out[1].to_int_vector(), (std::vector<int64_t>{3, 0}));
  EXPECT_NEAR(out[2].data<float>()[0], -1.0f, 1e-5);
  EXPECT_NEAR(out[2].data<float>()[1], -std::sqrt(2.0f), 1e-5);
  EXPECT_NEAR(out[0].data<float>()[0], 0.5f, 1e-6);
  EXPECT_NEAR(out[0].data<float>()[1], 0.0f, 1e-6);
}

TEST(LowerCodebookSemantics, SkipModeTakesTheNextBestAndZeroModeBlocks) {
  Tensor x = Tensor::from_vector<float>({5, 1, 5, 1, 5, 1}, {1, 3, 2});  // u ~ (1,-1) at every position
  {
    Tiny t = tiny_graph(2, kTinyCodes);
    // ablate code 3 at position 1; skip the best code at the last position
    t.node->attrs["ablate"] = std::vector<int64_t>{kAll, 1, 3};
    t.node->attrs["disable_topk"] = std::vector<int64_t>{0, -1, 1};
    auto out = run_lowered(t, x);
    EXPECT_EQ(out[1].to_int_vector(), (std::vector<int64_t>{1, 3, 1, 0, 3, 0}));
  }
  {
    Tiny t = tiny_graph(2, kTinyCodes);
    t.node->attrs["ablate"] = std::vector<int64_t>{kAll, 1, 3};
    t.node->attrs["disable_topk"] = std::vector<int64_t>{0, -1, 1};
    t.node->attrs["keep_k_codes"] = int64_t(0);
    auto out = run_lowered(t, x);
    EXPECT_EQ(out[1].to_int_vector(), (std::vector<int64_t>{1, 3, 1, -1, -1, 3}));
    const float* y = out[0].data<float>();
    EXPECT_NEAR(y[2], 1.5f, 1e-6);  // (3,-3)/2: the divisor stays k
    EXPECT_NEAR(y[4], 0.5f, 1e-6);  // (1,0)/2
    EXPECT_TRUE(std::isinf(out[2].data<float>()[3]) && out[2].data<float>()[3] < 0);
  }
}

TEST(LowerCodebookSemantics, ForceRecordsApplyInOrderAndMinusOneBlocks) {
  Tiny t = tiny_graph(2, kTinyCodes);
  // slot -1 of the last position = 2, then slot 0 everywhere = 2, then slot 0 at 0 blocked
  t.node->attrs["force"] = std::vector<int64_t>{kAll, -1, -1, 2, kAll, kAll, 0, 2, 0, 0, 0, -1};
  auto out = run_lowered(t, Tensor::from_vector<float>({5, 1, 5, 1}, {1, 2, 2}));
  EXPECT_EQ(out[1].to_int_vector(), (std::vector<int64_t>{-1, 3, 2, 2}));
  const float* y = out[0].data<float>();
  EXPECT_NEAR(y[0], 0.5f, 1e-6);  // (1,0)/2
  EXPECT_NEAR(y[1], 0.0f, 1e-6);
  EXPECT_NEAR(y[2], -1.0f, 1e-6);  // (-1,1) twice: the mean of the forced codes
  EXPECT_NEAR(y[3], 1.0f, 1e-6);
  // a forced code reports its own similarity
  EXPECT_NEAR(out[2].data<float>()[2], -std::sqrt(2.0f), 1e-4);
}

TEST(LowerCodebookSemantics, SymbolicCodesShapeIsAnErrorNamingTheNode) {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(4)})});
  Value* c = g->add_input("codes", {DType::f32, Shape({Dim::fixed(1), Dim::sym("K"), Dim::fixed(4)})});
  Value* s = g->add_constant("ln_scale", Tensor::zeros(DType::f32, {1, 4}));
  Value* b = g->add_constant("ln_bias", Tensor::zeros(DType::f32, {1, 4}));
  Value* y = g->add_value("y");
  g->add_node(kCodebookOp, {x, c, s, b}, {y}, {{"k", int64_t(1)}}, "layer3_mlp", kCodebookDomain);
  g->outputs = {y};
  try {
    lower_codebooks(*g);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer3_mlp"), std::string::npos) << e.what();
  }
}

// Two sites in a chain; the first site's ids are an output too and also feed
// nothing else, the second reads the first's y.
TEST(LowerCodebook, TwoSitesInOneGraph) {
  auto build = [] {
    std::mt19937 rng(3);
    auto g = std::make_shared<Graph>();
    Value* x = g->add_input("x", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(16)})});
    auto site = [&](Value* in, int64_t G, int64_t k, const char* name, std::map<std::string, AttrValue> attrs) {
      Value* codes = g->add_constant(std::string(name) + ".codes",
                                     random_tensor(DType::f32, {G, 10, 16 / G}, test::normal(0, 1), rng));
      Value* s = g->add_constant(std::string(name) + ".ln_scale",
                                 random_tensor(DType::f32, {G, 16 / G}, test::normal(1, 0.3f), rng));
      Value* b = g->add_constant(std::string(name) + ".ln_bias",
                                 random_tensor(DType::f32, {G, 16 / G}, test::normal(0, 0.3f), rng));
      Value* y = g->add_value(std::string(name) + ".y");
      Value* ids = g->add_value(std::string(name) + ".ids");
      attrs["k"] = k;
      g->add_node(kCodebookOp, {in, codes, s, b}, {y, ids}, attrs, name, kCodebookDomain);
      return std::pair{y, ids};
    };
    auto [y1, ids1] = site(x, 4, 2, "first", {{"ablate", std::vector<int64_t>{kAll, -1, 3}}});
    Value* sum = g->add_value("sum");
    g->add_node("Add", {y1, x}, {sum});
    auto [y2, ids2] =
        site(sum, 1, 3, "second", {{"metric", std::string("euclidean")}, {"force", std::vector<int64_t>{0, 1, 2, 9}}});
    g->outputs = {y2, ids1, ids2};
    infer_types(*g);
    return g;
  };
  auto original = build(), lowered = build();
  EXPECT_EQ(lower_codebooks(*lowered), 2);
  EXPECT_FALSE(has_codebook_node(*lowered));
  canonicalize(*lowered);
  for (int64_t T : kSeqLens) {
    std::mt19937 rng(static_cast<uint32_t>(T));
    std::map<std::string, Tensor> in{{"x", random_tensor(DType::f32, {kBatch, T, 16}, test::normal(0, 1), rng)}};
    expect_same_outputs(run(original, in), run(lowered, in), "two sites, T=" + std::to_string(T));
  }
}

// ------------------------------------------------------- codebook export

using cb::test::Result;
using cb::test::run_tool;

TEST(ExportCommand, StandardLowersExternalDataSplitsAndPlainKeepsTheOp) {
  fs::path d = cb::test::temp_dir("export");
  const Case& c = case_named("everything_skip");
  auto original = build_graph(c);
  export_onnx(*original, (d / "original.onnx").string());

  Result r = run_tool("export " + (d / "original.onnx").string() + " -o " + (d / "std.onnx").string() +
                      " --standard --external-data");
  ASSERT_EQ(r.code, 0) << r.out;
  bool data_written = false;  // std.onnx.<hash>.data
  for (auto& e : fs::directory_iterator(d))
    data_written |= e.path().filename().string().rfind("std.onnx.", 0) == 0 &&
                    external_data_hash(e.path().filename().string()).has_value();
  EXPECT_TRUE(data_written) << r.out;
  auto standard = import_onnx((d / "std.onnx").string());
  EXPECT_FALSE(has_codebook_node(*standard));

  r = run_tool("export " + (d / "original.onnx").string() + " -o " + (d / "same.onnx").string());
  ASSERT_EQ(r.code, 0) << r.out;
  auto same = import_onnx((d / "same.onnx").string());
  EXPECT_TRUE(has_codebook_node(*same));

  for (int64_t T : kSeqLens) {
    auto in = make_inputs(c, T, uint32_t(T));
    auto want = run(original, in);
    expect_same_outputs(want, run(standard, in), "export --standard, T=" + std::to_string(T));
    expect_same_outputs(want, run(same, in), "export, T=" + std::to_string(T));
  }

  r = run_tool("export " + (d / "original.onnx").string());
  EXPECT_EQ(r.code, 2) << r.out;  // -o is required
  r = run_tool("export " + (d / "missing.onnx").string() + " -o " + (d / "x.onnx").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("missing.onnx"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(d / "x.onnx"));
  fs::remove_all(d);
}

// Writes the cases that tests/ort_codebook_check.py runs with ONNX Runtime:
// <dir>/<case>_T<T>/{original.onnx, model.onnx (from `codebook export
// --standard`), inputs/<name>.npy, expected/<name>.npy (reference kernel)}.
// The directory is $CB_ORT_CASES_DIR (the ctest sets it) or a temporary one.
// A model-level case (a compiled model) fits the same layout: `codebook
// export --standard` for model.onnx and `codebook run -o expected/` for the
// expected outputs.
TEST(OrtCases, WriteLoweredModelsInputsAndExpectedOutputs) {
  const char* env = std::getenv("CB_ORT_CASES_DIR");
  fs::path root = env && *env ? fs::path(env) : cb::test::temp_dir("ort_cases");
  fs::create_directories(root);
  const std::vector<std::string> chosen = {"plain_inner_product_G1_k1",
                                           "plain_euclidean_G4_k4",
                                           "ablate_positions",
                                           "disable_topk_zero_mode",
                                           "everything_skip",
                                           "everything_zero_mode",
                                           "force",
                                           "ties_inner_product",
                                           "spec_worked_example"};
  int written = 0;
  for (const std::string& name : chosen) {
    const Case& c = case_named(name);
    auto original = build_graph(c);
    for (int64_t T : kSeqLens) {
      fs::path d = root / (c.name + "_T" + std::to_string(T));
      fs::create_directories(d / "inputs");
      fs::create_directories(d / "expected");
      export_onnx(*original, (d / "original.onnx").string());
      Result r = run_tool("export " + (d / "original.onnx").string() + " --standard -o " + (d / "model.onnx").string());
      ASSERT_EQ(r.code, 0) << r.out;
      auto in = make_inputs(c, T, uint32_t(1000 + T));
      auto want = run(original, in);
      for (auto& [name, t] : in) npy_write((d / "inputs" / (name + ".npy")).string(), t);
      const std::vector<std::string> names = {"y", "ids", "scores"};
      for (size_t i = 0; i < names.size(); ++i) npy_write((d / "expected" / (names[i] + ".npy")).string(), want[i]);
      // What ORT will run must give these outputs here too.
      auto exported = import_onnx((d / "model.onnx").string());
      EXPECT_FALSE(has_codebook_node(*exported));
      expect_same_outputs(want, run(exported, in), d.string());
      ++written;
    }
  }
  EXPECT_EQ(written, int(2 * chosen.size()));
  if (!(env && *env)) fs::remove_all(root);
}

// The model-level case: the tiny GPT-2 compiled with `codebook compile`
// (a plain and a group codebook), interventions set on its codebook nodes,
// exported with `codebook export --standard`; expected logits from the
// reference backend on the original.
TEST(OrtCases, WriteCompiledGpt2Case) {
  const char* env = std::getenv("CB_ORT_CASES_DIR");
  fs::path root = env && *env ? fs::path(env) : cb::test::temp_dir("ort_model_case");
  fs::path d = root / "gpt2_compiled_interventions";
  fs::create_directories(d / "inputs");
  fs::create_directories(d / "expected");
  Result r = run_tool("compile " + std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx -o " +
                      (d / "compiled.onnx").string() + " --at mlp,attn_preproj --groups 1,heads --codes 100 -k 4,2");
  ASSERT_EQ(r.code, 0) << r.out;
  auto plain = import_onnx((d / "compiled.onnx").string());
  auto original = import_onnx((d / "compiled.onnx").string());
  int sites = 0;
  for (auto& n : original->nodes()) {
    if (!is_codebook_node(*n)) continue;
    const Shape& cs = n->input(1)->type.shape;
    CodebookAttrs a = CodebookAttrs::from_node(*n, cs.dims[0].value, cs.dims[1].value);
    a.ablate = {{kAll, -1, 7}, {0, 2, 3}};
    a.disable_topk = {{kAll, 0, 1}, {kAll, -3, 2}};
    a.force = {{kAll, 4, -1, 11}, {kAll, 5, 0, -1}};
    a.keep_k_codes = sites % 2 == 0;  // both modes
    a.to_node(*n);
    ++sites;
  }
  ASSERT_GE(sites, 4);
  export_onnx(*original, (d / "original.onnx").string());
  r = run_tool("export " + (d / "original.onnx").string() + " --standard -o " + (d / "model.onnx").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("lowered " + std::to_string(sites) + " codebook ops"), std::string::npos) << r.out;

  const int64_t B = 2, T = 11;
  std::mt19937 rng(17);
  std::uniform_int_distribution<int64_t> token(0, 499);
  std::vector<int64_t> ids(size_t(B * T)), positions(size_t(B * T));
  for (int64_t i = 0; i < B * T; ++i) ids[size_t(i)] = token(rng), positions[size_t(i)] = i % T;
  std::map<std::string, Tensor> in{
      {"input_ids", Tensor::from_vector(ids, {B, T})},
      {"attention_mask", Tensor::from_vector(std::vector<int64_t>(size_t(B * T), 1), {B, T})},
      {"position_ids", Tensor::from_vector(positions, {B, T})}};
  auto standard = import_onnx((d / "model.onnx").string());
  EXPECT_FALSE(has_codebook_node(*standard));
  std::vector<Tensor> want = run(original, in);
  std::vector<Tensor> got = run(standard, in);
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(mismatches(want[i], got[i], 1e-4f), 0) << original->outputs[i]->name;
  EXPECT_GT(mismatches(want[0], run(plain, in)[0], 1e-3f), 0) << "the interventions changed no logit";
  for (auto& [name, t] : in) npy_write((d / "inputs" / (name + ".npy")).string(), t);
  for (size_t i = 0; i < want.size(); ++i)
    npy_write((d / "expected" / (original->outputs[i]->name + ".npy")).string(), want[i]);
  fs::remove(d / "compiled.onnx");
  if (!(env && *env)) fs::remove_all(root);
}

}  // namespace
