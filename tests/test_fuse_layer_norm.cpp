// LayerNorm fusion (passes/fuse_layer_norm.h):
//   - every decomposed spelling (TorchScript's opset-14 form, Mul(d, d),
//     Reciprocal, Pow(., -0.5), x - mean computed twice, eps as either
//     operand, the scale before the division or as a scalar, the affine's
//     operands in either order, no affine) becomes one LayerNormalization with
//     the graph's epsilon and the right scale and bias, and computes what a
//     LayerNorm computed by hand in double does, as the unfused graph does;
//   - near-LayerNorms are left alone (a mean over another axis, an
//     intermediate value used elsewhere, eps after the Sqrt, another
//     exponent, the mean of another tensor, a bias inside the normalisation,
//     f64), and every graph computes the same before and after;
//   - the decomposed tiny models (tests/models/decomposed_ln/, made by
//     scripts/make_decomposed_ln_models.py from tests/models/*/model.onnx):
//     unfused the anatomy fails (the defect); fused, every LayerNorm is one
//     LayerNormalization with the model's weights, the logits are the
//     unfused graph's (reference backend) and ONNX Runtime's for the
//     original model, the anatomy is the original's, and a train step graph
//     trains the same parameters;
//   - the command line: `inspect` finds every layer and all 7 placements, as
//     on the original model, and `compile --at mlp,attn_preproj` gives the
//     codes compiling the original gives.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <random>
#include <regex>
#include <set>

#include "frontend/npy.h"
#include "frontend/onnx_import.h"
#include "ir/builder.h"
#include "ir/verifier.h"
#include "passes/fuse_layer_norm.h"
#include "passes/transformer_anatomy.h"
#include "support/error.h"
#include "tests/cli_util.h"
#include "tests/test_util.h"
#include "train/training_graph.h"

namespace cb {
namespace {

namespace fs = std::filesystem;
using test::random_tensor;
using test::run_graph;

const std::string kModels = std::string(CB_SOURCE_DIR) + "/tests/models/";

std::mt19937& rng() {
  static std::mt19937 r(20261206);
  return r;
}

int count_ops(const Graph& g, const std::string& op) {
  int n = 0;
  for (auto& node : g.nodes()) n += node->op_type == op && node->domain.empty();
  return n;
}

std::vector<const Node*> layer_norms(const Graph& g) {
  std::vector<const Node*> out;
  for (auto& n : g.nodes())
    if (n->op_type == "LayerNormalization") out.push_back(n.get());
  return out;
}

// max |a - b| <= tol element by element, and the same dims.
void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.dims(), b.dims()) << what;
  double worst = 0;
  for (int64_t i = 0; i < b.numel(); ++i) worst = std::max(worst, std::fabs(a.get_double(i) - b.get_double(i)));
  EXPECT_LE(worst, tol) << what;
}

// ------------------------------------------------------------- the spellings

constexpr int64_t kD = 8;
constexpr float kEps = 1e-3f;  // large enough that a wrong epsilon shows in the outputs
const std::vector<float> kWeight = {1.f, -0.5f, 2.f, 0.25f, 1.5f, -1.f, 0.75f, 3.f};
const std::vector<float> kBias = {0.1f, -0.2f, 0.3f, 0.f, -1.f, 0.5f, 2.f, -0.3f};

Value* f32s(Builder& b, const std::vector<float>& v, std::vector<int64_t> dims) {
  return b.constant(Tensor::from_vector<float>(v, std::move(dims)));
}
Value* weight(Builder& b) { return f32s(b, kWeight, {kD}); }
Value* bias(Builder& b) { return f32s(b, kBias, {kD}); }
Value* mean(Builder& b, Value* x, int64_t axis = -1) { return b.op("ReduceMean", {x, b.i64s({axis})}); }
Value* torch_std(Builder& b, Value* d) {  // Sqrt(ReduceMean(Pow(d, 2)) + eps)
  return b.op("Sqrt", {b.add(mean(b, b.op("Pow", {d, b.f32(2.f)})), b.f32(kEps))});
}

std::vector<float> scaled(const std::vector<float>& v, float f) {
  std::vector<float> out;
  for (float e : v) out.push_back(e * f);
  return out;
}

using LnForm = std::function<Value*(Builder&, Value*)>;

struct FormCase {
  const char* label;
  LnForm form;
  std::vector<float> scale, bias;  // what the fused LayerNormalization must hold
};

std::vector<FormCase> fusable_forms() {
  const std::vector<float> ones(kD, 1.f), zeros(kD, 0.f);
  return {
      {"torch opset 14",
       [](Builder& b, Value* x) {
         Value* d = b.sub(x, mean(b, x));
         return b.add(b.mul(b.div(d, torch_std(b, d)), weight(b)), bias(b));
       },
       kWeight, kBias},
      {"Mul(d, d), eps first, Reciprocal, x - mean twice, operands swapped",
       [](Builder& b, Value* x) {
         Value* m = mean(b, x);
         Value* d0 = b.sub(x, m);
         Value* d1 = b.sub(x, m);
         Value* r = b.op("Reciprocal", {b.op("Sqrt", {b.add(b.f32(kEps), mean(b, b.mul(d0, d0)))})});
         return b.add(bias(b), b.mul(weight(b), b.mul(r, d1)));
       },
       kWeight, kBias},
      {"Pow(ve, -0.5), i64 exponent, axis 2, [1,1,D] weight before the division, [1] eps",
       [](Builder& b, Value* x) {
         Value* d = b.sub(x, mean(b, x, 2));
         Value* var = mean(b, b.op("Pow", {d, b.i64(2)}), 2);
         Value* r = b.op("Pow", {b.add(var, f32s(b, {kEps}, {1})), b.f32(-0.5f)});
         return b.add(b.mul(b.mul(d, f32s(b, kWeight, {1, 1, kD})), r), bias(b));
       },
       kWeight, kBias},
      {"no affine",
       [](Builder& b, Value* x) {
         Value* d = b.sub(x, mean(b, x));
         return b.div(d, torch_std(b, d));
       },
       ones, zeros},
      {"scale only, then times a scalar",
       [](Builder& b, Value* x) {
         Value* d = b.sub(x, mean(b, x));
         return b.mul(b.f32(2.f), b.mul(b.div(d, torch_std(b, d)), weight(b)));
       },
       scaled(kWeight, 2.f), zeros},
      {"divided by a scalar, bias only",
       [](Builder& b, Value* x) {
         Value* d = b.sub(x, mean(b, x));
         return b.add(b.div(b.div(d, torch_std(b, d)), b.f32(4.f)), bias(b));
       },
       scaled(ones, 0.25f), kBias},
  };
}

// x = in + a per-column offset (so x is a node output with a non-zero mean),
// then the form; its output is the graph output, or feeds one.
std::shared_ptr<Graph> ln_graph(const LnForm& form, bool y_is_output) {
  auto g = std::make_shared<Graph>();
  Builder b(*g);
  Value* in = g->add_input("in", {DType::f32, Shape::of({3, 5, kD})});
  Value* x = b.add(in, f32s(b, {0.5f, -1.f, 2.f, 0.f, 1.f, 3.f, -2.f, 0.25f}, {kD}));
  Value* y = form(b, x);
  g->outputs = {y_is_output ? y : b.named_op("Sigmoid", {y}, "after")};
  infer_types(*g);
  return g;
}

std::map<std::string, Tensor> ln_feed() {
  return {{"in", random_tensor(DType::f32, {3, 5, kD}, cb::test::uniform(-3, 3), rng())}};
}

// LayerNorm over the last axis of in + offset, in double, with the given affine.
Tensor hand_layer_norm(const Tensor& in, const std::vector<float>& scale, const std::vector<float>& bias,
                       bool sigmoid) {
  const std::vector<double> offset = {0.5, -1, 2, 0, 1, 3, -2, 0.25};
  Tensor out = Tensor::empty(DType::f32, in.dims());
  for (int64_t row = 0; row < in.numel() / kD; ++row) {
    std::vector<double> x(kD);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < kD; ++i) mean += x[size_t(i)] = in.get_double(row * kD + i) + offset[size_t(i)];
    mean /= kD;
    for (double e : x) var += (e - mean) * (e - mean);
    var /= kD;
    for (int64_t i = 0; i < kD; ++i) {
      double y = (x[size_t(i)] - mean) / std::sqrt(var + double(kEps)) * scale[size_t(i)] + bias[size_t(i)];
      if (sigmoid) y = 1 / (1 + std::exp(-y));
      out.data<float>()[row * kD + i] = float(y);
    }
  }
  return out;
}

std::vector<float> constant_floats(const Value* v) {
  std::vector<float> out;
  if (!v || !v->is_constant()) return out;
  for (int64_t i = 0; i < v->constant->numel(); ++i) out.push_back(float(v->constant->get_double(i)));
  return out;
}

TEST(FuseLayerNorm, FusesEverySpellingAndComputesTheSame) {
  for (const FormCase& c : fusable_forms())
    for (bool y_is_output : {true, false}) {
      SCOPED_TRACE(std::string(c.label) + (y_is_output ? ", output" : ", used"));
      auto plain = ln_graph(c.form, y_is_output);
      auto fused = ln_graph(c.form, y_is_output);
      const std::string out_name = fused->outputs[0]->name;
      FuseLayerNormPass pass;
      ASSERT_TRUE(pass.run(*fused));
      EXPECT_EQ(pass.fused(), 1);
      verify_graph(*fused);
      ASSERT_EQ(layer_norms(*fused).size(), 1u);
      for (const char* op : {"ReduceMean", "Sub", "Pow", "Sqrt", "Reciprocal", "Div", "Mul"})
        EXPECT_EQ(count_ops(*fused, op), 0) << op;
      EXPECT_EQ(count_ops(*fused, "Add"), 1);  // the offset
      const Node& ln = *layer_norms(*fused)[0];
      EXPECT_EQ(ln.attr_int("axis", 0), -1);
      EXPECT_EQ(ln.attr_float("epsilon", 0), kEps);
      EXPECT_EQ(ln.input(0), fused->nodes()[0]->outputs[0]) << "normalises x = in + offset";
      const std::vector<float> scale = constant_floats(ln.input(1)), bias = constant_floats(ln.input(2));
      ASSERT_EQ(scale.size(), size_t(kD));
      ASSERT_EQ(bias.size(), size_t(kD));
      for (int64_t i = 0; i < kD; ++i) {
        EXPECT_FLOAT_EQ(scale[size_t(i)], c.scale[size_t(i)]) << "scale " << i;
        EXPECT_FLOAT_EQ(bias[size_t(i)], c.bias[size_t(i)]) << "bias " << i;
      }
      EXPECT_EQ(fused->outputs[0]->name, out_name);  // the output keeps its name
      EXPECT_GE(fused->opsets.at(""), 17);
      EXPECT_EQ(fuse_layer_norm(*fused), 0) << "a second run finds nothing";

      const auto feed = ln_feed();
      const Tensor hand = hand_layer_norm(feed.at("in"), c.scale, c.bias, !y_is_output);
      expect_close(run_graph(plain, "reference", feed)[0], hand, 1e-5, "unfused vs by hand");
      for (const char* backend : {"reference", "cpu"})
        expect_close(run_graph(fused, backend, feed)[0], hand, 1e-5, std::string("fused vs by hand, ") + backend);
    }
}

// Graphs that look like a LayerNorm but are not one, or whose intermediate
// values are needed elsewhere: nothing changes. Two controls fuse. Every
// graph computes the same before and after.
TEST(FuseLayerNorm, LeavesOthersAlone) {
  struct Case {
    const char* label;
    std::function<void(Builder&, Graph&, Value* in, Value* x)> build;  // sets the graph outputs
    int fuses = 0;
  };
  // The torch form, with what a case needs to reach.
  struct Parts {
    Value *mean, *d, *var, *std, *n, *y;
  };
  auto torch_ln = [](Builder& b, Value* x) {
    Parts p;
    p.mean = mean(b, x);
    p.d = b.sub(x, p.mean);
    p.var = mean(b, b.op("Pow", {p.d, b.f32(2.f)}));
    p.std = b.op("Sqrt", {b.add(p.var, b.f32(kEps))});
    p.n = b.div(p.d, p.std);
    p.y = b.add(b.mul(p.n, weight(b)), bias(b));
    return p;
  };
  // d / Sqrt(ReduceMean(d^e, var_axis) + eps) for d = x - ReduceMean(x, axis).
  auto variant = [](Builder& b, Value* x, int64_t axis, int64_t var_axis, float exponent) {
    Value* d = b.sub(x, mean(b, x, axis));
    Value* var = mean(b, b.op("Pow", {d, b.f32(exponent)}), var_axis);
    return b.div(d, b.op("Sqrt", {b.add(var, b.f32(kEps))}));
  };
  std::vector<Case> cases = {
      {"control: the torch form", [&](Builder& b, Graph& g, Value*, Value* x) { g.outputs = {torch_ln(b, x).y}; }, 1},
      {"control: the normalised value also an output: fused up to it, the affine stays",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Parts p = torch_ln(b, x);
         g.outputs = {p.y, p.n};
       },
       1},
      {"mean over axis 1", [&](Builder& b, Graph& g, Value*, Value* x) { g.outputs = {variant(b, x, 1, 1, 2.f)}; }},
      {"variance over axis 1",
       [&](Builder& b, Graph& g, Value*, Value* x) { g.outputs = {variant(b, x, -1, 1, 2.f)}; }},
      {"d cubed", [&](Builder& b, Graph& g, Value*, Value* x) { g.outputs = {variant(b, x, -1, -1, 3.f)}; }},
      {"the variance is also an output",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Parts p = torch_ln(b, x);
         g.outputs = {p.y, p.var};
       }},
      {"d is used elsewhere",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Parts p = torch_ln(b, x);
         g.outputs = {p.y, b.op("Relu", {p.d})};
       }},
      {"the mean is used elsewhere",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Parts p = torch_ln(b, x);
         g.outputs = {b.add(p.y, p.mean)};
       }},
      {"the std is used elsewhere",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Parts p = torch_ln(b, x);
         g.outputs = {b.add(p.y, p.std)};
       }},
      {"eps added after the Sqrt",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Value* d = b.sub(x, mean(b, x));
         Value* s = b.op("Sqrt", {mean(b, b.op("Pow", {d, b.f32(2.f)}))});
         g.outputs = {b.div(d, b.add(s, b.f32(kEps)))};
       }},
      {"the mean of another tensor than the one centred",
       [&](Builder& b, Graph& g, Value* in, Value* x) {
         Value* d = b.sub(x, mean(b, in));
         g.outputs = {b.div(d, torch_std(b, d))};
       }},
      {"mean - x",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Value* d = b.sub(mean(b, x), x);
         g.outputs = {b.div(d, torch_std(b, d))};
       }},
      {"a constant added inside the normalisation",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Value* d = b.sub(x, mean(b, x));
         g.outputs = {b.div(b.add(d, bias(b)), torch_std(b, d))};
       }},
      {"the variance of x, not of d",
       [&](Builder& b, Graph& g, Value*, Value* x) {
         Value* d = b.sub(x, mean(b, x));
         Value* var = mean(b, b.op("Pow", {x, b.f32(2.f)}));
         g.outputs = {b.div(d, b.op("Sqrt", {b.add(var, b.f32(kEps))}))};
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    auto build = [&] {
      auto g = std::make_shared<Graph>();
      Builder b(*g);
      Value* in = g->add_input("in", {DType::f32, Shape::of({3, 5, kD})});
      c.build(b, *g, in, b.add(in, b.f32(0.25f)));
      infer_types(*g);
      return g;
    };
    auto plain = build(), g = build();
    const size_t nodes = g->num_nodes();
    EXPECT_EQ(fuse_layer_norm(*g), c.fuses);
    verify_graph(*g);
    if (!c.fuses) {
      EXPECT_EQ(g->num_nodes(), nodes);
      EXPECT_EQ(count_ops(*g, "LayerNormalization"), 0);
    }
    const auto feed = ln_feed();
    const std::vector<Tensor> want = run_graph(plain, "reference", feed), got = run_graph(g, "reference", feed);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) expect_close(got[i], want[i], 1e-5, "output " + std::to_string(i));
  }

  // f64 LayerNorms are left alone.
  auto g = std::make_shared<Graph>();
  Builder b(*g);
  Value* x = g->add_input("x", {DType::f64, Shape::of({3, kD})});
  Value* d = b.sub(x, mean(b, x));
  Value* var = mean(b, b.op("Pow", {d, b.constant(Tensor::scalar<double>(2))}));
  g->outputs = {b.div(d, b.op("Sqrt", {b.add(var, b.constant(Tensor::scalar<double>(1e-5)))}))};
  infer_types(*g);
  EXPECT_EQ(fuse_layer_norm(*g), 0);
}

// ------------------------------------------------- the decomposed tiny models

struct Fixture {
  const char* file;      // in tests/models/decomposed_ln/
  const char* original;  // the folder in tests/models/ it was made from
};
const Fixture kFixtures[] = {
    {"gpt2-opset14.onnx", "gpt2"},
    {"gpt2-opset13-mul.onnx", "gpt2"},
    {"gpt-neo-opset14.onnx", "gpt-neo"},
    {"gpt-neox-opset14.onnx", "gpt-neox"},
};
std::string fixture_path(const Fixture& f) { return kModels + "decomposed_ln/" + f.file; }
std::string original_path(const Fixture& f) { return kModels + f.original + "/model.onnx"; }

// The graph inputs of tests/models/<original>/case<N>/ and the ORT logits.
std::map<std::string, Tensor> case_inputs(const Graph& g, const Fixture& f, int n) {
  std::map<std::string, Tensor> in;
  for (const Value* v : g.inputs)
    in[v->name] = npy_read(kModels + f.original + "/case" + std::to_string(n) + "/" + v->name + ".npy");
  return in;
}

TEST(DecomposedModels, FuseBackToTheOriginalsLayerNorms) {
  for (const Fixture& f : kFixtures) {
    SCOPED_TRACE(f.file);
    auto original = import_onnx(original_path(f));
    auto plain = import_onnx(fixture_path(f));
    ASSERT_EQ(count_ops(*plain, "LayerNormalization"), 0);
    EXPECT_GE(count_ops(*plain, "ReduceMean"), 5);  // one mean per LayerNorm at least (CSE may share them)
    try {
      find_anatomy(*plain);
      ADD_FAILURE() << "the anatomy of the unfused model should fail";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not a LayerNormalization"), std::string::npos) << e.what();
    }

    auto fused = import_onnx(fixture_path(f));
    FuseLayerNormPass pass;
    ASSERT_TRUE(PassManager().run(pass, *fused));
    EXPECT_EQ(pass.fused(), 5);  // ln_1, ln_2 per layer and the final norm
    for (const char* op : {"ReduceMean", "Sub", "Pow", "Sqrt", "Div", "Mul", "Add"})  // as many as the original has
      EXPECT_EQ(count_ops(*fused, op), count_ops(*original, op)) << op;
    // The original's LayerNormalizations: same weights (by name), epsilon and order.
    std::vector<const Node*> want = layer_norms(*original), got = layer_norms(*fused);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i]->input(1)->name, want[i]->input(1)->name);
      EXPECT_EQ(got[i]->input(2)->name, want[i]->input(2)->name);
      EXPECT_EQ(got[i]->attr_float("epsilon", 0), want[i]->attr_float("epsilon", 1));
      EXPECT_EQ(got[i]->name, want[i]->name);
    }

    for (int n : {1, 3}) {  // 2 x 16 with a padded row; 3 x 40
      SCOPED_TRACE("case" + std::to_string(n));
      const auto feed = case_inputs(*plain, f, n);
      const Tensor unfused = run_graph(plain, "reference", feed)[0];
      expect_close(run_graph(fused, "reference", feed)[0], unfused, 1e-5, "fused vs unfused, reference");
      const Tensor ort = npy_read(kModels + f.original + "/case" + std::to_string(n) + "/logits.npy");
      expect_close(run_graph(fused, "cpu", feed)[0], ort, 1e-4, "fused (cpu) vs ORT on the original");
    }
  }
}

TEST(DecomposedModels, AnatomyIsTheOriginals) {
  for (const Fixture& f : kFixtures) {
    SCOPED_TRACE(f.file);
    auto original = import_onnx(original_path(f));
    auto decomposed = import_onnx(fixture_path(f));
    const ModelAnatomy want = analyze_model(*original);
    const ModelAnatomy got = analyze_model(*decomposed);  // fuses first
    EXPECT_EQ(got.architecture, want.architecture);
    EXPECT_EQ(got.d_model, want.d_model);
    EXPECT_EQ(got.num_heads, want.num_heads);
    EXPECT_EQ(got.d_mlp, want.d_mlp);
    ASSERT_EQ(got.layers.size(), 2u);
    ASSERT_EQ(got.layers.size(), want.layers.size());
    for (size_t l = 0; l < want.layers.size(); ++l) {
      EXPECT_EQ(got.layers[l].parallel_residual, want.layers[l].parallel_residual);
      EXPECT_EQ(got.layers[l].attention_kind, want.layers[l].attention_kind);
      EXPECT_EQ(got.layers[l].input->name, want.layers[l].input->name);
      for (Placement p : kAllPlacements) {
        std::vector<Value*> a = site_values(want.layers[l], p), b = site_values(got.layers[l], p);
        ASSERT_EQ(b.size(), a.size()) << placement_name(p);
        for (size_t i = 0; i < a.size(); ++i)
          EXPECT_EQ(b[i]->name, a[i]->name) << "layer " << l << " " << placement_name(p);
      }
    }
    ASSERT_TRUE(got.final_norm && got.logits);
    EXPECT_EQ(got.logits->name, want.logits->name);
  }
}

// A train step graph of a decomposed model trains what the original's does,
// with LayerNormalizations (and their one-node backward).
TEST(DecomposedModels, TrainStepTrainsTheOriginalsParameters) {
  const Fixture& f = kFixtures[0];
  StepGraph want = build_train_graph(import_onnx(original_path(f)), StepGraphOptions{});
  StepGraph got = build_train_graph(import_onnx(fixture_path(f)), StepGraphOptions{});
  EXPECT_EQ(std::set<std::string>(got.parameters.begin(), got.parameters.end()),
            std::set<std::string>(want.parameters.begin(), want.parameters.end()));
  EXPECT_EQ(count_ops(*got.graph, "LayerNormalization"), 5);
  EXPECT_EQ(count_ops(*got.graph, "ReduceMean"), count_ops(*want.graph, "ReduceMean"));
}

// ----------------------------------------------------------- the command line

using test::Result;
using test::run_tool;

// `inspect`'s anatomy: from the "architecture:" line to the end.
std::string inspected_anatomy(const std::string& model) {
  Result r = run_tool("inspect " + model);
  EXPECT_EQ(r.code, 0) << r.out;
  const size_t at = r.out.find("\narchitecture:");
  EXPECT_NE(at, std::string::npos) << r.out;
  return at == std::string::npos ? "" : r.out.substr(at + 1);
}

TEST(DecomposedModelsCli, InspectFindsEveryLayerAndPlacement) {
  for (const Fixture& f : kFixtures) {
    SCOPED_TRACE(f.file);
    const std::string got = inspected_anatomy(fixture_path(f));
    EXPECT_EQ(got, inspected_anatomy(original_path(f)));
    for (int layer = 0; layer < 2; ++layer)
      for (Placement p : kAllPlacements) {
        const std::regex site("\n  layer" + std::to_string(layer) + "\\." + placement_name(p) + "(\\[[qkv]\\])? ");
        EXPECT_TRUE(std::regex_search(got, site)) << "layer" << layer << "." << placement_name(p) << "\n" << got;
      }
  }
}

TEST(DecomposedModelsCli, CompileGivesTheOriginalsCodes) {
  const fs::path dir = test::temp_dir("fuse_layer_norm");
  const std::string flags = " --at mlp,attn_preproj --groups 1,heads --codes 32,16 -k 4,2 --seed 5";
  const std::string run = " --tokens 464,268,318,257,92,17,5,300 --show-codes all --json";
  for (const Fixture& f : kFixtures) {
    SCOPED_TRACE(f.file);
    const std::string a = (dir / (std::string(f.file) + ".original.onnx")).string();
    const std::string b = (dir / (std::string(f.file) + ".decomposed.onnx")).string();
    Result ca = run_tool("compile " + original_path(f) + " -o " + a + flags);
    ASSERT_EQ(ca.code, 0) << ca.out;
    Result cb = run_tool("compile " + fixture_path(f) + " -o " + b + flags);
    ASSERT_EQ(cb.code, 0) << cb.out;
    EXPECT_EQ(cb.out.substr(0, cb.out.find("wrote")), ca.out.substr(0, ca.out.find("wrote")));  // the same sites
    Result ra = run_tool("run " + a + run), rb = run_tool("run " + b + run);
    ASSERT_EQ(ra.code, 0) << ra.out;
    ASSERT_EQ(rb.code, 0) << rb.out;
    const Json want = test::run_json(ra.out), got = test::run_json(rb.out);
    ASSERT_EQ(want.at("codes").dump(), got.at("codes").dump());
    EXPECT_NE(want.at("codes").dump().find("layer1.attn_preproj"), std::string::npos);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace cb
