// GELU fusion (passes/fuse_gelu.h) and the GeluGrad op (ir/ops/grad.h):
//   - the pass fuses Builder's gelu_tanh and gelu_erf, reassociated and
//     reordered variants and the GELUs of the three ONNX exports of the test
//     GPT-2, into one Gelu each, and the fused graph computes what the
//     unfused one does; it leaves a GELU alone when an intermediate value is
//     used outside it, a constant is wrong, or a constant would broadcast;
//   - the train step graph of a GPT-2 has Gelu and GeluGrad and no Tanh, and
//     its loss and gradients are those of the unfused graph;
//   - GeluGrad's reference kernel against finite differences of Gelu (f64),
//     and the cpu kernel against the reference within 1e-6 absolute for
//     |x| < 10 (on random inputs and thread counts: the op harness).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "backends/backend.h"
#include "frontend/hf_import.h"
#include "frontend/onnx_import.h"
#include "ir/builder.h"
#include "ir/ops/grad.h"
#include "ir/verifier.h"
#include "passes/fuse_gelu.h"
#include "passes/insert_codebooks.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "tests/test_util.h"
#include "train/training_graph.h"

namespace cb {
namespace {

using test::one_node_graph;
using test::random_tensor;
using test::run_graph;
using test::run_node;

std::mt19937& rng() {
  static std::mt19937 r(20241127);
  return r;
}

int count_ops(const Graph& g, const std::string& op, const std::string& domain = "") {
  int n = 0;
  for (auto& node : g.nodes()) n += node->op_type == op && node->domain == domain;
  return n;
}

// |a - b| <= tol * (1 + |b|) element by element.
void expect_near(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.dims(), b.dims()) << what;
  int bad = 0;
  for (int64_t i = 0; i < b.numel() && bad < 5; ++i) {
    const double x = a.get_double(i), y = b.get_double(i);
    if (!(std::fabs(x - y) <= tol * (1 + std::fabs(y)))) {
      ADD_FAILURE() << what << ": element " << i << " is " << x << ", expected " << y;
      ++bad;
    }
  }
}

Value* f32s(Builder& b, float v, std::vector<int64_t> dims) {
  return b.constant(Tensor::from_vector<float>({v}, dims));
}

// ------------------------------------------------------------- the patterns

constexpr float kS = 0.7978845608f;  // sqrt(2/pi)
constexpr float kA = 0.044715f;

using GeluForm = std::function<Value*(Builder&, Value*)>;

struct FormCase {
  const char* label;
  GeluForm form;
  const char* approximate;  // what the fused Gelu must say
};

std::vector<FormCase> fusable_forms() {
  return {
      {"builder tanh", [](Builder& b, Value* x) { return b.gelu_tanh(x); }, "tanh"},
      {"builder erf", [](Builder& b, Value* x) { return b.gelu_erf(x); }, "none"},
      // torch.onnx's order: constants first, (0.5 * x) * (1 + tanh(...));
      // an integer exponent.
      {"constants first, i64 exponent",
       [](Builder& b, Value* x) {
         Value* cube = b.mul(b.f32(kA), b.op("Pow", {x, b.i64(3)}));
         Value* t = b.op("Tanh", {b.mul(b.f32(kS), b.add(x, cube))});
         return b.mul(b.mul(b.f32(0.5f), x), b.add(b.f32(1.f), t));
       },
       "tanh"},
      // x * (0.5 * (1 + t)), x^3 as x * x * x.
      {"x times half s, x*x*x",
       [](Builder& b, Value* x) {
         Value* cube = b.mul(b.mul(x, x), x);
         Value* t = b.op("Tanh", {b.mul(b.add(b.mul(cube, b.f32(kA)), x), b.f32(kS))});
         return b.mul(x, b.mul(b.f32(0.5f), b.add(t, b.f32(1.f))));
       },
       "tanh"},
      // (x * (1 + t)) * 0.5 with sqrt(2/pi) distributed over the sum.
      {"distributed sqrt(2/pi)",
       [](Builder& b, Value* x) {
         Value* cube = b.mul(x, b.mul(x, x));
         Value* arg = b.add(b.mul(b.f32(kS), x), b.mul(b.f32(kS * kA), cube));
         return b.mul(b.mul(x, b.add(b.op("Tanh", {arg}), b.f32(1.f))), b.f32(0.5f));
       },
       "tanh"},
      // HF's gelu_fast: x * sqrt(2/pi) * (1 + 0.044715 x^2); x / 2 outside;
      // single-element constants of rank 1 and 3 (x has rank 3).
      {"gelu_fast, x/2, [1] constants",
       [](Builder& b, Value* x) {
         Value* inner = b.add(f32s(b, 1.f, {1}), b.mul(f32s(b, kA, {1, 1, 1}), b.mul(x, x)));
         Value* t = b.op("Tanh", {b.mul(b.mul(x, f32s(b, kS, {1})), inner)});
         return b.mul(b.div(x, b.f32(2.f)), b.add(t, b.f32(1.f)));
       },
       "tanh"},
      {"erf by Mul 1/sqrt(2)",
       [](Builder& b, Value* x) {
         Value* e = b.op("Erf", {b.mul(b.f32(0.70710678f), x)});
         return b.mul(b.f32(0.5f), b.mul(x, b.add(b.f32(1.f), e)));
       },
       "none"},
      {"erf, Div by 1.41421, (x * s) * 0.5",
       [](Builder& b, Value* x) {
         Value* e = b.op("Erf", {b.div(x, b.f32(1.41421f))});
         return b.mul(b.mul(x, b.add(e, b.f32(1.f))), f32s(b, 0.5f, {1}));
       },
       "none"},
  };
}

// x = input + bias (so x is itself an Add output, as after a Linear), then
// the GELU form; the GELU's output is the graph output "y", or feeds one.
std::shared_ptr<Graph> gelu_graph(const GeluForm& form, bool y_is_output, DType dt = DType::f32) {
  auto g = std::make_shared<Graph>();
  Builder b(*g);
  Value* in = g->add_input("in", {dt, Shape::of({3, 5, 8})});
  std::vector<double> bias;  // the same in every copy
  for (int64_t i = 0; i < 8; ++i) bias.push_back(0.25 * double(i) - 1.0);
  Value* x = b.add(in, b.cast(b.constant(Tensor::from_vector(bias, {8})), dt));
  Value* y = form(b, x);
  if (y_is_output) {
    g->outputs = {y};
  } else {
    g->outputs = {b.named_op("Sigmoid", {y}, "after")};
  }
  infer_types(*g);
  return g;
}

std::map<std::string, Tensor> gelu_feed() {
  return {{"in", random_tensor(DType::f32, {3, 5, 8}, cb::test::uniform(-6, 6), rng())}};
}

TEST(FuseGelu, FusesEveryFormAndComputesTheSame) {
  for (const FormCase& c : fusable_forms())
    for (bool y_is_output : {true, false}) {
      SCOPED_TRACE(std::string(c.label) + (y_is_output ? ", output" : ", used"));
      auto plain = gelu_graph(c.form, y_is_output);
      auto fused = gelu_graph(c.form, y_is_output);
      const std::string out_name = fused->outputs[0]->name;
      ASSERT_TRUE(fuse_gelu(*fused));
      verify_graph(*fused);
      EXPECT_EQ(count_ops(*fused, "Gelu"), 1);
      for (const char* op : {"Tanh", "Erf", "Pow", "Mul", "Div"}) EXPECT_EQ(count_ops(*fused, op), 0) << op;
      EXPECT_EQ(count_ops(*fused, "Add"), 1);  // the bias
      for (auto& n : fused->nodes()) {
        if (n->op_type == "Gelu") {
          EXPECT_EQ(n->attr_string("approximate", "?"), c.approximate);
        }
      }
      EXPECT_EQ(fused->outputs[0]->name, out_name);  // the output keeps its name
      EXPECT_GE(fused->opsets.at(""), 20);
      EXPECT_FALSE(fuse_gelu(*fused)) << "a second run finds nothing";

      const auto feed = gelu_feed();
      const Tensor want = run_graph(plain, "reference", feed)[0];
      for (const char* backend : {"reference", "cpu"})
        expect_near(run_graph(fused, backend, feed)[0], want, 2e-6, backend);
    }
}

// A GELU one of whose intermediate values is used elsewhere, or whose
// constants are not GELU's, stays as it is.
TEST(FuseGelu, LeavesOthersAlone) {
  struct Case {
    const char* label;
    std::function<void(Builder&, Graph&, Value*)> build;  // sets the graph outputs
    bool fuses = false;                                   // the control case
  };
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) with the constants given.
  struct Constants {
    float half = 0.5f, cubic = kA, scale = kS, one = 1.f;
  };
  struct TanhGelu {
    Value *y, *t, *half_x, *cube;
  };
  auto tanh_gelu = [](Builder& b, Value* x, Constants k) {
    Value* half_x = b.mul(x, b.f32(k.half));
    Value* cube = b.op("Pow", {x, b.f32(3.f)});
    Value* t = b.op("Tanh", {b.mul(b.add(x, b.mul(cube, b.f32(k.cubic))), b.f32(k.scale))});
    return TanhGelu{b.mul(half_x, b.add(t, b.f32(k.one))), t, half_x, cube};
  };
  auto with = [&](Constants k) {
    return [&tanh_gelu, k](Builder& b, Graph& g, Value* x) { g.outputs = {tanh_gelu(b, x, k).y}; };
  };
  std::vector<Case> cases = {
      {"control: GELU's constants", with({}), true},
      {"tanh output is also a graph output",
       [&](Builder& b, Graph& g, Value* x) {
         TanhGelu p = tanh_gelu(b, x, {});
         g.outputs = {p.y, p.t};
       }},
      {"0.5 x is also a graph output",
       [&](Builder& b, Graph& g, Value* x) {
         TanhGelu p = tanh_gelu(b, x, {});
         g.outputs = {p.y, p.half_x};
       }},
      {"x^3 is used outside",
       [&](Builder& b, Graph& g, Value* x) {
         TanhGelu p = tanh_gelu(b, x, {});
         g.outputs = {b.add(p.y, p.cube)};
       }},
      {"0.04 instead of 0.044715", with({.cubic = 0.04f})},
      {"0.6 instead of 0.5", with({.half = 0.6f})},
      {"0.8 instead of sqrt(2/pi)", with({.scale = 0.8f})},
      {"2 + tanh", with({.one = 2.f})},
      {"erf of x / 1.5",
       [&](Builder& b, Graph& g, Value* x) {
         Value* e = b.op("Erf", {b.div(x, b.f32(1.5f))});
         g.outputs = {b.mul(b.mul(x, b.add(e, b.f32(1.f))), b.f32(0.5f))};
       }},
      {"erf of another value",
       [&](Builder& b, Graph& g, Value* x) {
         Value* other = b.op("Sigmoid", {x});
         Value* e = b.op("Erf", {b.div(other, b.f32(std::sqrt(2.f)))});
         g.outputs = {b.mul(b.mul(x, b.add(e, b.f32(1.f))), b.f32(0.5f))};
       }},
      {"a [1,1,1,1] constant broadcasts x [3,5,8] up",
       [&](Builder& b, Graph& g, Value* x) {
         Value* e = b.op("Erf", {b.div(x, b.f32(std::sqrt(2.f)))});
         g.outputs = {b.mul(b.mul(x, b.add(e, b.f32(1.f))), f32s(b, 0.5f, {1, 1, 1, 1}))};
       }},
      {"erf output is used twice",
       [&](Builder& b, Graph& g, Value* x) {
         Value* e = b.op("Erf", {b.div(x, b.f32(std::sqrt(2.f)))});
         g.outputs = {b.add(b.mul(b.mul(x, b.add(e, b.f32(1.f))), b.f32(0.5f)), e)};
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    auto g = std::make_shared<Graph>();
    Builder b(*g);
    Value* x = b.add(g->add_input("in", {DType::f32, Shape::of({3, 5, 8})}), b.f32(0.25f));
    c.build(b, *g, x);
    infer_types(*g);
    const size_t nodes = g->num_nodes();
    EXPECT_EQ(fuse_gelu(*g), c.fuses);
    if (c.fuses) continue;
    EXPECT_EQ(g->num_nodes(), nodes);
    EXPECT_EQ(count_ops(*g, "Gelu"), 0);
  }
  // f64 GELUs (f64 constants) are left alone too.
  GeluForm f64_erf = [](Builder& b, Value* x) {
    auto f64 = [&](double v) { return b.constant(Tensor::scalar<double>(v)); };
    Value* e = b.op("Erf", {b.div(x, f64(std::sqrt(2.0)))});
    return b.mul(b.mul(x, b.add(e, f64(1.0))), f64(0.5));
  };
  EXPECT_FALSE(fuse_gelu(*gelu_graph(f64_erf, true, DType::f64)));
}

// The GELUs of the test GPT-2 as the three ONNX exporters wrote it: one
// Gelu per layer, and the same logits.
TEST(FuseGelu, FusesTheExportedGpt2s) {
  for (const char* model : {"gpt2", "gpt2-dynamo", "gpt2-optimum"}) {
    SCOPED_TRACE(model);
    const std::string path = std::string(CB_SOURCE_DIR) + "/tests/models/" + model + "/model.onnx";
    auto plain = import_onnx(path);
    auto fused = import_onnx(path);
    const int before = count_ops(*fused, "Gelu");
    ASSERT_TRUE(fuse_gelu(*fused));
    verify_graph(*fused);
    EXPECT_EQ(count_ops(*fused, "Gelu") - before, 2);  // two layers
    EXPECT_EQ(count_ops(*fused, "Tanh"), 0);
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < 2 * 9; ++i) ids.push_back((i * 37 + 5) % 500);
    const auto feed = causal_lm_feeds(*plain, Tensor::from_vector(ids, {2, 9}));
    expect_near(run_graph(fused, "cpu", feed)[0], run_graph(plain, "cpu", feed)[0], 1e-5, "logits");
  }
}

// ------------------------------------------------------ the train step graph

HfConfig gpt2_config() { return read_hf_config(std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/hf/config.json"); }

TEST(FuseGelu, TrainStepHasGeluAndGeluGrad) {
  const HfConfig c = gpt2_config();
  auto model = build_hf_random(c, 3);
  CodebookConfig cc;
  cc.placements = {{Placement::mlp_mid, 16, 1, 1}};  // a codebook reads the GELU's output
  insert_codebooks(*model, cc);
  StepGraph s = build_train_graph(model, StepGraphOptions{});
  EXPECT_EQ(count_ops(*s.graph, "Gelu"), c.num_layers);
  EXPECT_EQ(count_ops(*s.graph, "GeluGrad", kGradDomain), c.num_layers);
  EXPECT_EQ(count_ops(*s.graph, "Tanh"), 0);
  EXPECT_EQ(count_ops(*s.graph, "Pow"), 0);
}

// The same step unfused: a model whose Tanh outputs are also model outputs
// keeps its GELUs decomposed (the fusion would have to keep them), and the
// step graph drops those outputs again. Loss, accuracy and gradient norm
// agree within 1e-5 relative, and so do the AdamW moments (0.1 g and 0.001
// g^2 after a first step), relative to each tensor's largest element (the
// two differ by rounding, ~3e-7 of that here; single elements that are sums
// cancelling to ~0 differ more relative to themselves).
// The updated parameters are not compared: a first AdamW step moves each by
// lr * g / (|g| + eps), which amplifies the sign of gradients that are ~0.
TEST(FuseGelu, TrainStepMatchesTheUnfusedOne) {
  const HfConfig c = gpt2_config();
  auto unfusable = build_hf_random(c, 3);
  for (auto& n : unfusable->nodes())
    if (n->op_type == "Tanh") unfusable->outputs.push_back(n->outputs[0]);
  StepGraph plain = build_train_graph(unfusable, StepGraphOptions{});
  StepGraph fused = build_train_graph(build_hf_random(c, 3), StepGraphOptions{});
  ASSERT_EQ(count_ops(*plain.graph, "Gelu"), 0);
  ASSERT_EQ(count_ops(*fused.graph, "Gelu"), c.num_layers);
  ASSERT_EQ(plain.updates, fused.updates);

  std::vector<int64_t> data;
  for (int64_t i = 0; i < 4 * 16; ++i) data.push_back((i * 131 + 7) % c.vocab_size);
  const Tensor ids = Tensor::from_vector(data, {4, 16});
  auto step = [&](const StepGraph& s) {
    std::map<std::string, Tensor> in = causal_lm_feeds(s.data_inputs, ids);
    for (auto& [name, t] : s.initial) in[name] = t;
    in[kStepInput] = Tensor::scalar<float>(1.f);
    in[kLearningRateInput] = Tensor::scalar<float>(1e-3f);
    auto exe = Executable::compile(s.graph, *make_backend("cpu"));
    std::vector<Tensor> out = exe->run(in);
    std::map<std::string, Tensor> named;
    std::vector<std::string> names = exe->output_names();
    for (size_t i = 0; i < names.size(); ++i) named[names[i]] = out[i];
    return named;
  };
  std::map<std::string, Tensor> a = step(plain), b = step(fused);
  for (const char* name : {kLossOutput, kAccuracyOutput, kGradNormOutput})
    EXPECT_NEAR(b.at(name).get_double(0), a.at(name).get_double(0), 1e-5 * std::fabs(a.at(name).get_double(0))) << name;
  // The optimizer states (after the parameters in `updates`).
  for (size_t i = plain.parameters.size(); i < plain.updates.size(); ++i) {
    const std::string& name = plain.updates[i].second;
    const Tensor& want = a.at(name);
    double peak = 0;
    for (int64_t j = 0; j < want.numel(); ++j) peak = std::max(peak, std::fabs(want.get_double(j)));
    const Tensor& got = b.at(name);
    for (int64_t j = 0; j < want.numel(); ++j)
      ASSERT_NEAR(got.get_double(j), want.get_double(j), 1e-5 * peak) << name << "[" << j << "]";
  }
}

// ---------------------------------------------------------------- GeluGrad

test::Attrs approx(const std::string& approximate) { return {{"approximate", approximate}}; }

TEST(GeluGrad, ReferenceMatchesFiniteDifferencesOfGelu) {
  for (const char* approximate : {"none", "tanh"}) {
    SCOPED_TRACE(approximate);
    const Tensor x = random_tensor(DType::f64, {200}, cb::test::uniform(-8, 8), rng());
    const Tensor dy = random_tensor(DType::f64, {200}, cb::test::uniform(-2, 2), rng());
    const Tensor dx = run_node("reference", "GeluGrad", kGradDomain, {dy, x}, approx(approximate), {true})[0];
    const double h = 1e-5;
    Tensor xp = x.clone(), xm = x.clone();
    for (int64_t i = 0; i < x.numel(); ++i) {
      xp.data<double>()[i] += h;
      xm.data<double>()[i] -= h;
    }
    const Tensor yp = run_node("reference", "Gelu", "", {xp}, approx(approximate), {true})[0];
    const Tensor ym = run_node("reference", "Gelu", "", {xm}, approx(approximate), {true})[0];
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double fd = dy.get_double(i) * (yp.get_double(i) - ym.get_double(i)) / (2 * h);
      EXPECT_NEAR(dx.get_double(i), fd, 1e-8 * (1 + std::fabs(fd))) << "x = " << x.get_double(i);
    }
  }
}

// cpu against the reference: within 1e-6 absolute of the reference's Gelu'
// (dy = 1) on a fine grid of [-10, 10]. (Random dy and x of many sizes, 1, 2
// and 3 threads, other dtypes: cases of the op harness, tests/op_cases/grad.cpp.)
TEST(GeluGrad, CpuKernelMatchesTheReference) {
  for (const char* approximate : {"none", "tanh"}) {
    SCOPED_TRACE(approximate);
    const int64_t n = 200001;
    Tensor grid = Tensor::empty(DType::f32, {n});
    for (int64_t i = 0; i < n; ++i) grid.data<float>()[i] = float(-10.0 + 20.0 * double(i) / double(n - 1));
    Tensor ones = Tensor::empty(DType::f32, {n});
    for (int64_t i = 0; i < n; ++i) ones.data<float>()[i] = 1.f;
    const Tensor want = run_node("reference", "GeluGrad", kGradDomain, {ones, grid}, approx(approximate), {true})[0];
    const Tensor got = run_node("cpu", "GeluGrad", kGradDomain, {ones, grid}, approx(approximate), {true})[0];
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(got.get_double(i) - want.get_double(i)));
    EXPECT_LE(worst, 1e-6);
  }
}

// The cpu backend's own Gelu kernel (backends/cpu/elementwise_kernels.cpp):
// against f64 GELU on a dense grid of [-10, 10] (shared with a helper
// thread: bitwise the same on 1 and 2 threads), and on special values.
TEST(GeluForward, CpuKernelAccuracy) {
  const int64_t n = 2200001;
  Tensor grid = Tensor::empty(DType::f32, {n});
  for (int64_t i = 0; i < n; ++i) grid.data<float>()[i] = float(-10.0 + 20.0 * double(i) / double(n - 1));
  for (const char* approximate : {"none", "tanh"}) {
    SCOPED_TRACE(approximate);
    const bool tanh = std::string(approximate) == "tanh";
    auto exact = [tanh](double x) {
      return tanh ? 0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
                  : 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    };
    const Tensor one = run_node("cpu", "Gelu", "", {grid}, approx(approximate), {true}, 1)[0];
    EXPECT_TRUE(run_node("cpu", "Gelu", "", {grid}, approx(approximate), {true}, 2)[0].bitwise_equal(one));
    // Errors in units of 1e-7 (1 + |Gelu(x)|): about an f32 step of the result
    // where |Gelu(x)| > 1, an absolute 1e-7 below (0.83 and 0.99 measured).
    double worst = 0, worst_at = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double x = grid.get_double(i), want = exact(x);
      const double err = std::fabs(one.get_double(i) - want) / (1e-7 * (1 + std::fabs(want)));
      if (err > worst) worst = err, worst_at = x;
    }
    EXPECT_LE(worst, 1.5) << "at x = " << worst_at;

    const float inf = std::numeric_limits<float>::infinity();
    const Tensor special = Tensor::from_vector<float>({std::nanf(""), inf, 0.f, -0.f, 100.f, -100.f}, {6});
    const Tensor y = run_node("cpu", "Gelu", "", {special}, approx(approximate), {true})[0];
    EXPECT_TRUE(std::isnan(y.data<float>()[0]));
    EXPECT_EQ(y.data<float>()[1], inf);
    EXPECT_EQ(y.data<float>()[2], 0.f);
    EXPECT_EQ(y.data<float>()[3], 0.f);
    EXPECT_EQ(y.data<float>()[4], 100.f);
    EXPECT_EQ(y.data<float>()[5], 0.f);
  }
}

TEST(GeluGrad, SchemaChecks) {
  auto bad = [](std::vector<int64_t> dy, std::vector<int64_t> x, DType dt, const std::string& approximate) {
    return one_node_graph("GeluGrad", kGradDomain, {Tensor::zeros(dt, dy), Tensor::zeros(DType::f32, x)},
                          approx(approximate))
        .graph;
  };
  EXPECT_NO_THROW(bad({2, 3}, {2, 3}, DType::f32, "tanh"));
  EXPECT_THROW(bad({2, 3}, {2, 4}, DType::f32, "none"), Error);
  EXPECT_THROW(bad({2, 3}, {2, 3}, DType::f64, "none"), Error);
  EXPECT_THROW(bad({2, 3}, {2, 3}, DType::f32, "fast"), Error);
}

}  // namespace
}  // namespace cb
