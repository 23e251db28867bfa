// Tests of the structural transformer matcher (passes/transformer_anatomy.h)
// on the six tiny models in tests/models: every layer and codebook site is
// found, in residual-stream order, with the right shapes; the sites are the
// values the exporters' module names say they are; renaming every node and
// value changes nothing; and, run on the reference backend, the sites hold
// the activations the architecture defines (for GPT-2 recomputed from its
// weights: LayerNorm, projections, causal attention, GELU).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "frontend/onnx_import.h"
#include "passes/transformer_anatomy.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::max_abs_diff;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kWidth = 64, kHeads = 4, kMlp = 256, kVocab = 500;

std::shared_ptr<Graph> load(const std::string& model) {
  auto g = import_onnx((fs::path(CB_SOURCE_DIR) / "tests" / "models" / model / "model.onnx").string());
  expose_merged_heads(*g);
  return g;
}

struct ModelCase {
  std::string name;
  std::string architecture;
  bool separate_qkv;
  bool parallel;
};
const std::vector<ModelCase> kModels = {
    {"gpt2", "gpt2", false, false},         {"gpt2-dynamo", "gpt2", false, false},
    {"gpt2-optimum", "gpt2", false, false}, {"gpt-neo", "gpt_neo", true, false},
    {"gpt-neox", "gpt_neox", false, true},  {"gpt-neox-sequential", "gpt_neox", false, false}};

void PrintTo(const ModelCase& m, std::ostream* os) { *os << m.name; }

std::string case_name(const ::testing::TestParamInfo<ModelCase>& info) {
  std::string s = info.param.name;
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

// Every site of a layer with its name, qkv members as qkv[0..2].
std::vector<std::pair<std::string, Value*>> named_sites(const LayerSites& l) {
  std::vector<std::pair<std::string, Value*>> s = {{"input", l.input}, {"attn_preproj", l.attn_preproj},
                                                   {"attn", l.attn},   {"mlp_mid", l.mlp_mid},
                                                   {"mlp", l.mlp},     {"output", l.output}};
  for (size_t i = 0; i < l.qkv.size(); ++i) s.push_back({"qkv[" + std::to_string(i) + "]", l.qkv[i]});
  return s;
}

// A [B,T,width] value whose B is the graph's batch dim; T may show as `?`.
void expect_site_shape(const Graph& g, const std::string& what, const Value* v, int64_t width) {
  ASSERT_NE(v, nullptr) << what;
  const Shape& s = v->type.shape;
  ASSERT_TRUE(s.rank_known && s.rank() == 3) << what << " " << v->name << " is " << v->type.str();
  EXPECT_TRUE(s[2].is_static() && s[2].value == width) << what << " " << v->name << " is " << v->type.str();
  const Shape& ids = g.inputs[0]->type.shape;
  EXPECT_TRUE(s[0].same_as(ids[0])) << what << " " << v->name << " is " << v->type.str();
  EXPECT_TRUE(s[1].same_as(ids[1]) || s[1].is_unknown()) << what << " " << v->name << " is " << v->type.str();
  EXPECT_EQ(v->type.dtype, DType::f32) << what;
}

class Anatomy : public ::testing::TestWithParam<ModelCase> {};

TEST_P(Anatomy, FindsTwoLayersAndEverySite) {
  const ModelCase& mc = GetParam();
  auto g = load(mc.name);
  ModelAnatomy a = find_anatomy(*g);
  EXPECT_EQ(a.architecture, mc.architecture);
  EXPECT_EQ(a.d_model, kWidth);
  EXPECT_EQ(a.num_heads, kHeads);
  EXPECT_EQ(a.d_mlp, kMlp);
  ASSERT_EQ(a.layers.size(), 2u);
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerSites& l = a.layers[i];
    SCOPED_TRACE("layer " + std::to_string(i));
    EXPECT_EQ(l.index, int64_t(i));
    ASSERT_NE(l.softmax, nullptr);
    EXPECT_EQ(l.softmax->op_type, "Softmax");
    EXPECT_EQ(l.parallel_residual, mc.parallel);
    for (auto& [name, v] : named_sites(l))
      if (name != "mlp_mid" && name.rfind("qkv", 0) != 0) expect_site_shape(*g, name, v, kWidth);
    expect_site_shape(*g, "mlp_mid", l.mlp_mid, kMlp);
    if (mc.separate_qkv) {
      ASSERT_EQ(l.qkv.size(), 3u);
      for (Value* v : l.qkv) expect_site_shape(*g, "qkv", v, kWidth);
      EXPECT_NE(l.qkv[0], l.qkv[1]);
      EXPECT_NE(l.qkv[1], l.qkv[2]);
      EXPECT_NE(l.qkv[0], l.qkv[2]);
    } else {
      ASSERT_EQ(l.qkv.size(), 1u);
      expect_site_shape(*g, "qkv", l.qkv[0], 3 * kWidth);
    }
    // Seven distinct sites (output is the sum, not one of its terms).
    std::set<const Value*> distinct;
    for (auto& [name, v] : named_sites(l)) distinct.insert(v);
    EXPECT_EQ(distinct.size(), named_sites(l).size());
    if (mc.name == "gpt-neo")
      EXPECT_EQ(l.attention_kind, i == 0 ? "global" : "local");
    else
      EXPECT_NE(l.attention_kind, "local");
  }
  // The residual stream: block output 0 is block input 1; the first block
  // reads the embeddings, the last one feeds the final LayerNorm.
  EXPECT_EQ(a.layers[0].output, a.layers[1].input);
  ASSERT_NE(a.layers[0].input->producer, nullptr);
  EXPECT_TRUE(a.layers[0].input->producer->op_type == "Add" || a.layers[0].input->producer->op_type == "Gather")
      << a.layers[0].input->producer->describe();
  bool final_norm = false;
  const auto users = g->users();
  for (const Node* u : users.at(a.layers[1].output)) final_norm |= u->op_type == "LayerNormalization";
  EXPECT_TRUE(final_norm);
}

// The sites are the values the exporters named after the HF modules (the
// dynamo exporter names values after the aten ops instead).
TEST_P(Anatomy, SitesAreTheNamedModuleOutputs) {
  const ModelCase& mc = GetParam();
  // site -> value name in layer 0 and layer 1; "{i}" is the layer index.
  std::map<std::string, std::vector<std::string>> want;
  auto per_layer = [](const std::string& pattern) {
    std::vector<std::string> out;
    for (int i = 0; i < 2; ++i) {
      std::string s = pattern;
      s.replace(s.find("{i}"), 3, std::to_string(i));
      out.push_back(s);
    }
    return out;
  };
  if (mc.name == "gpt2" || mc.name == "gpt2-optimum") {
    const std::string p = mc.name == "gpt2" ? "/model/transformer/" : "/transformer/";
    want["input"] = {p + "Add_output_0", p + "h.0/Add_1_output_0"};
    want["qkv[0]"] = per_layer(p + "h.{i}/attn/c_attn/Reshape_1_output_0");
    want["attn_preproj"] = per_layer(p + "h.{i}/attn/Reshape_3_output_0");
    want["attn"] = per_layer(p + "h.{i}/attn/c_proj/Reshape_1_output_0");
    want["mlp_mid"] = per_layer(p + "h.{i}/mlp/act/Mul_3_output_0");
    want["mlp"] = per_layer(p + "h.{i}/mlp/c_proj/Reshape_1_output_0");
    want["output"] = per_layer(p + "h.{i}/Add_1_output_0");
  } else if (mc.name == "gpt2-dynamo") {
    want["input"] = {"add", "add_7"};
    want["qkv[0]"] = {"view_3", "view_14"};
    want["attn_preproj"] = {"transpose_4/merged_heads", "transpose_9/merged_heads"};  // made by expose_merged_heads
    want["attn"] = {"view_8", "view_19"};
    want["mlp_mid"] = {"mul_26", "mul_52"};
    want["mlp"] = {"view_12", "view_23"};
    want["output"] = {"add_7", "add_12"};
  } else if (mc.name == "gpt-neo") {
    const std::string p = "/model/transformer/";
    want["input"] = {p + "Add_1_output_0", p + "h.0/Add_1_output_0"};
    want["qkv[0]"] = per_layer(p + "h.{i}/attn/attention/q_proj/MatMul_output_0");
    want["qkv[1]"] = per_layer(p + "h.{i}/attn/attention/k_proj/MatMul_output_0");
    want["qkv[2]"] = per_layer(p + "h.{i}/attn/attention/v_proj/MatMul_output_0");
    want["attn_preproj"] = per_layer(p + "h.{i}/attn/attention/Reshape_3_output_0");
    want["attn"] = per_layer(p + "h.{i}/attn/attention/out_proj/Add_output_0");
    want["mlp_mid"] = per_layer(p + "h.{i}/mlp/act/Mul_3_output_0");
    want["mlp"] = per_layer(p + "h.{i}/mlp/c_proj/Add_output_0");
    want["output"] = per_layer(p + "h.{i}/Add_1_output_0");
  } else {  // both GPT-NeoX models
    const std::string p = "/model/gpt_neox/";
    want["input"] = {p + "embed_in/Gather_output_0", p + "layers.0/Add_1_output_0"};
    want["qkv[0]"] = per_layer(p + "layers.{i}/attention/query_key_value/Add_output_0");
    want["attn_preproj"] = per_layer(p + "layers.{i}/attention/Reshape_1_output_0");
    want["attn"] = per_layer(p + "layers.{i}/attention/dense/Add_output_0");
    want["mlp_mid"] = per_layer(p + "layers.{i}/mlp/act/Mul_1_output_0");
    want["mlp"] = per_layer(p + "layers.{i}/mlp/dense_4h_to_h/Add_output_0");
    want["output"] = per_layer(p + "layers.{i}/Add_1_output_0");
  }
  auto g = load(mc.name);
  ModelAnatomy a = find_anatomy(*g);
  ASSERT_EQ(a.layers.size(), 2u);
  for (size_t i = 0; i < 2; ++i)
    for (auto& [site, v] : named_sites(a.layers[i])) {
      ASSERT_TRUE(want.count(site)) << "unexpected site " << site;
      EXPECT_EQ(v->name, want[site][i]) << "layer " << i << " " << site;
    }
}

// Names are hints only: with every node and value renamed n0, n1, ... the
// same nodes are found (compared by position in the node list).
void rename_everything(Graph& g) {
  int64_t next = 0;
  for (auto& v : g.values()) v->name = "n" + std::to_string(next++);
  for (auto& n : g.nodes()) n->name = "n" + std::to_string(next++);
}

std::string position_of(const Graph& g, const Value* v) {
  const auto& nodes = g.nodes();
  for (size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].get() == v->producer)
      return "node " + std::to_string(i) + " output " + std::to_string(v->producer_output);
  for (size_t i = 0; i < g.values().size(); ++i)
    if (g.values()[i].get() == v) return "value " + std::to_string(i);
  return "?";
}

TEST_P(Anatomy, RenamingChangesNothing) {
  const ModelCase& mc = GetParam();
  auto named = load(mc.name);
  auto renamed = load(mc.name);
  rename_everything(*renamed);
  for (auto& v : renamed->values()) ASSERT_EQ(v->name.rfind("n", 0), 0u);
  ModelAnatomy a = find_anatomy(*named), b = find_anatomy(*renamed);
  EXPECT_EQ(b.architecture, "unknown");  // the label is the only name-based part
  EXPECT_EQ(a.d_model, b.d_model);
  EXPECT_EQ(a.num_heads, b.num_heads);
  EXPECT_EQ(a.d_mlp, b.d_mlp);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t i = 0; i < a.layers.size(); ++i) {
    const LayerSites &x = a.layers[i], &y = b.layers[i];
    EXPECT_EQ(x.index, y.index);
    EXPECT_EQ(x.attention_kind, y.attention_kind);
    EXPECT_EQ(x.parallel_residual, y.parallel_residual);
    EXPECT_EQ(position_of(*named, x.softmax->outputs[0]), position_of(*renamed, y.softmax->outputs[0]));
    auto xs = named_sites(x), ys = named_sites(y);
    ASSERT_EQ(xs.size(), ys.size());
    for (size_t s = 0; s < xs.size(); ++s) {
      EXPECT_EQ(xs[s].first, ys[s].first);
      EXPECT_EQ(position_of(*named, xs[s].second), position_of(*renamed, ys[s].second))
          << "layer " << i << " " << xs[s].first;
    }
  }
}

// ---- Running the model with the sites as extra outputs --------------------

constexpr int64_t kBatch = 2, kSeq = 7;

// Random token ids (never all the same), full attention mask, positions 0..T-1.
std::map<std::string, Tensor> random_lm_inputs(const Graph& g) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int64_t> token(1, kVocab - 1);
  std::vector<int64_t> ids(kBatch * kSeq), mask(kBatch * kSeq, 1), pos(kBatch * kSeq);
  for (int64_t i = 0; i < kBatch * kSeq; ++i) {
    ids[size_t(i)] = token(rng);
    pos[size_t(i)] = i % kSeq;
  }
  std::map<std::string, Tensor> feeds;
  for (const Value* in : g.inputs) {
    const std::vector<int64_t>& data = in->name == "input_ids" ? ids : in->name == "attention_mask" ? mask : pos;
    EXPECT_TRUE(in->name == "input_ids" || in->name == "attention_mask" || in->name == "position_ids") << in->name;
    feeds[in->name] = Tensor::from_vector<int64_t>(data, {kBatch, kSeq});
  }
  return feeds;
}

// Runs `g` on the reference backend with `extra` added as graph outputs (when
// they are not outputs already); returns every output's value as a flat
// float vector.
std::map<const Value*, std::vector<float>> run_with_outputs(std::shared_ptr<Graph> g,
                                                            const std::vector<Value*>& extra) {
  std::map<const Value*, size_t> index;
  for (size_t i = 0; i < g->outputs.size(); ++i) index.emplace(g->outputs[i], i);
  for (Value* v : extra)
    if (!index.count(v)) {
      index[v] = g->outputs.size();
      g->outputs.push_back(v);
    }
  auto backend = make_backend("reference");
  auto exe = Executable::compile(g, *backend);
  std::vector<Tensor> results = exe->run(random_lm_inputs(*g));
  std::map<const Value*, std::vector<float>> out;
  for (auto& [v, i] : index) {
    const Tensor& t = results.at(i);
    EXPECT_EQ(t.dtype(), DType::f32);
    out[v].assign(t.data<float>(), t.data<float>() + t.numel());
  }
  return out;
}

std::vector<float> add(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> s(a.size());
  for (size_t i = 0; i < a.size(); ++i) s[i] = a[i] + b[i];
  return s;
}
// Mean |x| (so a site of zeros cannot pass a sum check by accident).
double mean_abs(const std::vector<float>& a) {
  double s = 0;
  for (float x : a) s += std::fabs(x);
  return a.empty() ? 0 : s / double(a.size());
}

// On every model: output = input + attn + mlp elementwise, output 0 is input 1,
// and the MLP's LayerNorm reads input + attn (sequential) or input (parallel).
TEST_P(Anatomy, SiteValuesAddUpOnTheResidualStream) {
  const ModelCase& mc = GetParam();
  auto g = load(mc.name);
  ModelAnatomy a = find_anatomy(*g);
  ASSERT_EQ(a.layers.size(), 2u);
  // The LayerNorms in graph order: per layer, the attention's then the MLP's.
  std::vector<Value*> norm_inputs;
  for (auto& n : g->nodes())
    if (n->op_type == "LayerNormalization") norm_inputs.push_back(n->inputs[0]);
  ASSERT_EQ(norm_inputs.size(), 5u);  // 2 per layer and the final one
  std::vector<Value*> extra = {norm_inputs[1], norm_inputs[3]};
  for (auto& l : a.layers)
    for (auto& [name, v] : named_sites(l)) extra.push_back(v);
  auto values = run_with_outputs(g, extra);

  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    const LayerSites& l = a.layers[i];
    const auto &x = values[l.input], &attn = values[l.attn], &mlp = values[l.mlp];
    EXPECT_GT(mean_abs(attn), 1e-3);
    EXPECT_GT(mean_abs(mlp), 1e-3);
    EXPECT_LE(max_abs_diff(values[l.output], add(add(x, attn), mlp)), 1e-5);
    const auto& mlp_norm_input = values[norm_inputs[2 * i + 1]];
    if (mc.parallel)
      EXPECT_EQ(max_abs_diff(mlp_norm_input, x), 0.0);
    else
      EXPECT_LE(max_abs_diff(mlp_norm_input, add(attn, x)), 1e-6);
  }
  EXPECT_EQ(max_abs_diff(values[a.layers[0].output], values[a.layers[1].input]), 0.0);
}

// ---- GPT-2, recomputed from its weights -----------------------------------

using Rows = std::vector<float>;  // [rows, width] row-major

const Tensor& weight(const Graph& g, const std::string& name) {
  const Value* v = g.find_value(name);
  EXPECT_TRUE(v && v->constant) << "no constant " << name;
  return *v->constant;
}
Rows layer_norm(const Rows& x, const Tensor& gamma, const Tensor& beta) {
  const size_t w = size_t(gamma.numel());
  Rows y(x.size());
  for (size_t r = 0; r < x.size() / w; ++r) {
    double mean = 0, var = 0;
    for (size_t c = 0; c < w; ++c) mean += x[r * w + c];
    mean /= double(w);
    for (size_t c = 0; c < w; ++c) var += (x[r * w + c] - mean) * (x[r * w + c] - mean);
    var /= double(w);
    for (size_t c = 0; c < w; ++c)
      y[r * w + c] =
          float((x[r * w + c] - mean) / std::sqrt(var + 1e-5) * gamma.data<float>()[c] + beta.data<float>()[c]);
  }
  return y;
}
// GPT-2's Conv1D: x [rows, in] @ w [in, out] + b [out].
Rows linear(const Rows& x, const Tensor& w, const Tensor& b) {
  const size_t in = size_t(w.dim(0)), out = size_t(w.dim(1));
  Rows y(x.size() / in * out);
  for (size_t r = 0; r < x.size() / in; ++r)
    for (size_t o = 0; o < out; ++o) {
      double s = b.data<float>()[o];
      for (size_t i = 0; i < in; ++i) s += double(x[r * in + i]) * w.data<float>()[i * out + o];
      y[r * out + o] = float(s);
    }
  return y;
}
Rows gelu_tanh(Rows x) {
  for (float& v : x) v = float(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))));
  return x;
}
// Causal multi-head attention over a fused [q|k|v] projection; returns the
// merged heads [B*T, D].
Rows causal_attention(const Rows& qkv) {
  const int64_t D = kWidth, dh = kWidth / kHeads;
  Rows out(size_t(kBatch * kSeq * D));
  for (int64_t b = 0; b < kBatch; ++b)
    for (int64_t h = 0; h < kHeads; ++h)
      for (int64_t t = 0; t < kSeq; ++t) {
        auto at = [&](int64_t tok, int64_t part, int64_t d) {
          return double(qkv[size_t((b * kSeq + tok) * 3 * D + part * D + h * dh + d)]);
        };
        std::vector<double> p(size_t(t + 1));
        double top = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= t; ++j) {
          double s = 0;
          for (int64_t d = 0; d < dh; ++d) s += at(t, 0, d) * at(j, 1, d);
          p[size_t(j)] = s / std::sqrt(double(dh));
          top = std::max(top, p[size_t(j)]);
        }
        for (double& v : p) sum += (v = std::exp(v - top));
        for (int64_t d = 0; d < dh; ++d) {
          double o = 0;
          for (int64_t j = 0; j <= t; ++j) o += p[size_t(j)] / sum * at(j, 2, d);
          out[size_t((b * kSeq + t) * D + h * dh + d)] = float(o);
        }
      }
  return out;
}

TEST(AnatomyGpt2, SitesMatchTheArchitectureRecomputedFromWeights) {
  auto g = load("gpt2");
  ModelAnatomy a = find_anatomy(*g);
  ASSERT_EQ(a.layers.size(), 2u);
  std::vector<Value*> extra;
  for (auto& l : a.layers)
    for (auto& [name, v] : named_sites(l)) extra.push_back(v);
  auto values = run_with_outputs(g, extra);
  constexpr double kTol = 2e-4;
  for (size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    const LayerSites& l = a.layers[i];
    const std::string p = "model.transformer.h." + std::to_string(i) + ".";
    auto w = [&](const std::string& n) -> const Tensor& { return weight(*g, p + n); };
    const Rows& x = values[l.input];
    const Rows qkv =
        linear(layer_norm(x, w("ln_1.weight"), w("ln_1.bias")), w("attn.c_attn.weight"), w("attn.c_attn.bias"));
    EXPECT_LE(max_abs_diff(values[l.qkv[0]], qkv), kTol) << "qkv";
    EXPECT_LE(max_abs_diff(values[l.attn_preproj], causal_attention(values[l.qkv[0]])), kTol) << "attn_preproj";
    EXPECT_LE(
        max_abs_diff(values[l.attn], linear(values[l.attn_preproj], w("attn.c_proj.weight"), w("attn.c_proj.bias"))),
        kTol)
        << "attn";
    const Rows h = add(x, values[l.attn]);
    const Rows mid =
        gelu_tanh(linear(layer_norm(h, w("ln_2.weight"), w("ln_2.bias")), w("mlp.c_fc.weight"), w("mlp.c_fc.bias")));
    EXPECT_LE(max_abs_diff(values[l.mlp_mid], mid), kTol) << "mlp_mid";
    EXPECT_LE(max_abs_diff(values[l.mlp], linear(values[l.mlp_mid], w("mlp.c_proj.weight"), w("mlp.c_proj.bias"))),
              kTol)
        << "mlp";
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, Anatomy, ::testing::ValuesIn(kModels), case_name);

// ---- Graphs that are not (whole) transformers -----------------------------

std::string error_of(const Graph& g) {
  try {
    find_anatomy(g);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(AnatomyErrors, SingleMatMulIsNotATransformer) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(4)})});
  Value* w = g.add_constant("w", Tensor::from_vector<float>(std::vector<float>(20, 0.5f), {4, 5}));
  Value* y = g.add_value("y", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(5)})});
  g.add_node("MatMul", {x, w}, {y}, {}, "mm");
  g.outputs = {y};
  const std::string msg = error_of(g);
  EXPECT_NE(msg.find("no attention"), std::string::npos) << msg;
}

TEST(AnatomyErrors, BrokenResidualChainIsReported) {
  auto g = load("gpt2");
  ModelAnatomy a = find_anatomy(*g);
  // Layer 1 now reads a fresh input instead of layer 0's output.
  Value* fresh = g->add_input("detached", a.layers[0].output->type);
  g->replace_all_uses(a.layers[0].output, fresh);
  const std::string msg = error_of(*g);
  EXPECT_NE(msg.find("residual stream is broken"), std::string::npos) << msg;
}

TEST(AnatomyErrors, AttentionWithoutMlpIsReported) {
  auto g = load("gpt-neox");
  ModelAnatomy a = find_anatomy(*g);
  // Cut layer 0's MLP off its LayerNorm: no MLP reads a norm of the block input.
  Node* up = nullptr;
  for (auto& n : g->nodes())
    if (n->op_type == "MatMul" && n->inputs[0]->producer && n->inputs[0]->producer->op_type == "LayerNormalization" &&
        n->outputs[0]->type.shape[2].value == kMlp) {
      up = n.get();
      break;
    }
  ASSERT_NE(up, nullptr);
  Value* fresh = g->add_input("detached", up->inputs[0]->type);
  up->inputs[0] = fresh;
  const std::string msg = error_of(*g);
  EXPECT_NE(msg.find("no MLP"), std::string::npos) << msg;
  EXPECT_NE(msg.find(a.layers[0].softmax->name), std::string::npos) << msg;  // names the attention
}

TEST(AnatomyErrors, DynamoGraphNeedsTheMergedHeadsExposed) {
  auto g = import_onnx((fs::path(CB_SOURCE_DIR) / "tests" / "models" / "gpt2-dynamo" / "model.onnx").string());
  const std::string msg = error_of(*g);
  EXPECT_NE(msg.find("expose_merged_heads"), std::string::npos) << msg;
  auto logits_of = [](std::shared_ptr<Graph> graph) {
    return run_with_outputs(graph, {graph->outputs[0]})[graph->outputs[0]];
  };
  const std::vector<float> before = logits_of(g);
  EXPECT_TRUE(expose_merged_heads(*g));
  EXPECT_FALSE(expose_merged_heads(*g));  // idempotent
  ModelAnatomy a = find_anatomy(*g);
  ASSERT_EQ(a.layers.size(), 2u);
  EXPECT_EQ(a.layers[0].attn_preproj->producer->op_type, "Reshape");
  EXPECT_EQ(max_abs_diff(logits_of(g), before), 0.0);  // the same computation
}

// ---- Placements ------------------------------------------------------------

TEST(Placements, NamesRoundTripAndUnknownNamesListTheValidOnes) {
  const std::vector<std::string> names = {"qkv",           "attn_preproj",     "attn", "mlp_mid", "mlp",
                                          "attn_plus_mlp", "transformer_block"};
  ASSERT_EQ(std::size(kAllPlacements), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(placement_name(kAllPlacements[i]), names[i]);
    EXPECT_EQ(parse_placement(names[i]), kAllPlacements[i]);
  }
  try {
    parse_placement("attention");
    FAIL() << "no error for an unknown placement";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'attention'"), std::string::npos) << msg;
    for (auto& n : names) EXPECT_NE(msg.find(n), std::string::npos) << msg;
  }
}

TEST(Placements, SiteValuesAndWidths) {
  for (const char* model : {"gpt2", "gpt-neo"}) {
    SCOPED_TRACE(model);
    auto g = load(model);
    ModelAnatomy a = find_anatomy(*g);
    const LayerSites& l = a.layers[1];
    const bool separate = std::string(model) == "gpt-neo";
    EXPECT_EQ(site_values(l, Placement::attn_preproj), std::vector<Value*>{l.attn_preproj});
    EXPECT_EQ(site_values(l, Placement::attn), std::vector<Value*>{l.attn});
    EXPECT_EQ(site_values(l, Placement::mlp), std::vector<Value*>{l.mlp});
    EXPECT_EQ(site_values(l, Placement::mlp_mid), std::vector<Value*>{l.mlp_mid});
    EXPECT_EQ(site_values(l, Placement::qkv), l.qkv);
    EXPECT_EQ(site_values(l, Placement::transformer_block), std::vector<Value*>{l.output});
    EXPECT_EQ(site_values(l, Placement::attn_plus_mlp), std::vector<Value*>{l.output});
    for (Placement p : kAllPlacements) {
      const int64_t width = site_width(a, p);
      // Separate q, k, v count as one [q|k|v] vector.
      EXPECT_EQ(width, p == Placement::mlp_mid ? kMlp : p == Placement::qkv ? 3 * kWidth : kWidth) << placement_name(p);
      int64_t total = 0;
      for (const Value* v : site_values(l, p)) total += v->type.shape[2].value;
      EXPECT_EQ(total, p == Placement::attn_plus_mlp ? kWidth : width) << placement_name(p) << " " << separate;
    }
  }
}

}  // namespace
