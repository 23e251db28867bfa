// The training graphs (train/training_graph.h, train/parameters.h): which
// constants are parameters, the loss and accuracy they compute, parameter
// groups and the compatibility preset.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "backends/backend.h"
#include "frontend/hf_import.h"
#include "frontend/onnx_import.h"
#include "ir/codebook.h"
#include "ir/ops/grad.h"
#include "passes/insert_codebooks.h"
#include "runtime/executable.h"
#include "train/parameters.h"
#include "train/training_graph.h"

namespace cb {
namespace {

std::string model_dir(const std::string& name) { return std::string(CB_SOURCE_DIR) + "/tests/models/" + name; }

// Every Hugging Face parameter of the built models is found by its use, and
// nothing else (masks, rotary tables, scalars) is.
TEST(Parameters, ModelParametersAreTheHuggingFaceParameters) {
  for (const char* name : {"gpt2", "gpt-neo", "gpt-neox", "gpt-neox-sequential"}) {
    HfConfig c = read_hf_config(model_dir(name) + "/hf/config.json");
    auto g = import_hf(model_dir(name) + "/hf");
    std::set<std::string> found;
    for (Value* v : model_parameters(*g)) found.insert(v->name);
    std::set<std::string> expected;
    for (auto& p : hf_parameters(c)) expected.insert(p.name);
    EXPECT_EQ(found, expected) << name;
  }
}

TEST(Parameters, ImportedOnnxWeightsAreFoundToo) {
  auto g = import_onnx(model_dir("gpt2") + "/model.onnx");
  std::vector<Value*> ps = model_parameters(*g);
  int64_t n = 0;
  for (Value* v : ps) n += v->constant->numel();
  // The ONNX export carries the tied output matrix as a separate copy, so
  // there is one more matrix than in the Hugging Face count.
  HfConfig c = read_hf_config(model_dir("gpt2") + "/hf/config.json");
  EXPECT_EQ(n, hf_parameter_count(c) + c.vocab_size * c.hidden_size);
}

TEST(Parameters, ParameterizeAndBindRoundTrip) {
  auto g = import_hf(model_dir("gpt2") + "/hf");
  std::vector<Value*> ps = model_parameters(*g);
  size_t inputs = g->inputs.size();
  auto initial = parameterize(*g, ps);
  EXPECT_EQ(g->inputs.size(), inputs + ps.size());
  for (Value* v : ps) EXPECT_FALSE(v->is_constant());
  bind_parameters(*g, initial);
  EXPECT_EQ(g->inputs.size(), inputs);
  for (Value* v : ps) EXPECT_TRUE(v->is_constant());
  std::map<std::string, Tensor> wrong = {{ps[0]->name, Tensor::zeros(DType::f32, {1})}};
  EXPECT_THROW(assign_constants(*g, wrong), Error);
  EXPECT_THROW(assign_constants(*g, {{"no such tensor", Tensor::zeros(DType::f32, {1})}}), Error);
}

// loss = mean cross-entropy of logits[:, t] against ids[:, t+1]; accuracy =
// share of argmax hits; checked against the model's own logits, for a
// Hugging Face import and an ONNX export.
TEST(TrainingGraph, LossAndAccuracyMatchTheLogits) {
  auto backend = make_backend("cpu");
  for (const char* name : {"gpt-neox", "gpt2"}) {
    SCOPED_TRACE(name);
    const bool onnx = std::string(name) == "gpt2";
    auto load = [&] {
      return onnx ? import_onnx(model_dir(name) + "/model.onnx") : import_hf(model_dir(name) + "/hf");
    };
    auto plain = load();
    int64_t B = 2, T = 7, V = read_hf_config(model_dir(name) + "/hf/config.json").vocab_size;
    std::vector<int64_t> data;
    for (int64_t i = 0; i < B * T; ++i) data.push_back((i * 37 + 11) % V);
    Tensor ids = Tensor::from_vector(data, {B, T});
    auto exe = Executable::compile(plain, *backend);
    Tensor logits = exe->run(causal_lm_feeds(*plain, ids)).at(0);
    double nll = 0, hits = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t + 1 < T; ++t) {
        const float* l = logits.data<float>() + (b * T + t) * V;
        double mx = l[0], sum = 0;
        int64_t arg = 0;
        for (int64_t v = 0; v < V; ++v)
          if (l[v] > mx) mx = l[v], arg = v;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(l[v] - mx);
        int64_t label = data[size_t(b * T + t + 1)];
        nll -= l[label] - mx - std::log(sum);
        hits += arg == label;
      }
    int64_t n = B * (T - 1);

    StepGraph sg = build_eval_graph(load(), StepGraphOptions{});
    auto eval = Executable::compile(sg.graph, *backend);
    std::map<std::string, Tensor> in = causal_lm_feeds(sg.data_inputs, ids);
    for (auto& p : sg.parameters) in[p] = sg.initial.at(p);
    std::vector<Tensor> out = eval->run(in);
    auto names = eval->output_names();
    auto get = [&](const char* output) {
      return out.at(size_t(std::find(names.begin(), names.end(), output) - names.begin())).get_double(0);
    };
    EXPECT_NEAR(get(kLossOutput), nll / double(n), 1e-5);
    EXPECT_NEAR(get(kAccuracyOutput), hits / double(n), 1e-6);
  }
}

std::shared_ptr<Graph> with_codebooks(std::vector<PlacementConfig> places) {
  auto g = import_hf(model_dir("gpt2") + "/hf");
  CodebookConfig cc;
  cc.placements = std::move(places);
  insert_codebooks(*g, cc);
  return g;
}

TEST(TrainingGraph, ParameterGroupsAndFrozenModel) {
  StepGraphOptions o;
  StepGraph all = build_train_graph(with_codebooks({{Placement::mlp, 16, 2, 1}}), o);
  size_t cb = all.groups.at("codebooks").size(), model = all.groups.at("model").size();
  EXPECT_EQ(cb, 2u * 3u);  // codes, ln scale and ln bias per layer (2 layers)
  EXPECT_GT(model, 0u);
  // Parameters and AdamW's two moments, all fed back.
  EXPECT_EQ(all.updates.size(), 3 * (cb + model));
  o.train_model = false;
  StepGraph frozen = build_train_graph(with_codebooks({{Placement::mlp, 16, 2, 1}}), o);
  EXPECT_TRUE(frozen.groups.at("model").empty());
  EXPECT_EQ(frozen.updates.size(), 3 * cb);
  // Nothing to train at all is an error.
  EXPECT_THROW(build_train_graph(import_hf(model_dir("gpt2") + "/hf"), o), Error);
}

// Data-parallel training's cut (separate_optimizer): the step graph's
// gradients fed to the optimizer graph give the fused step's updates and grad
// norm (clipping on, so the norm matters), on random tokens.
TEST(TrainingGraph, SeparateOptimizerGivesTheFusedUpdates) {
  auto backend = make_backend("cpu");
  StepGraphOptions o;
  o.optimizer.max_grad_norm = 0.5f;
  StepGraph fused = build_train_graph(with_codebooks({{Placement::mlp, 16, 2, 1}}), o);
  o.separate_optimizer = true;
  StepGraph split = build_train_graph(with_codebooks({{Placement::mlp, 16, 2, 1}}), o);
  ASSERT_TRUE(split.optimizer);
  ASSERT_EQ(split.gradients.size(), split.parameters.size());
  ASSERT_EQ(split.updates, fused.updates);

  std::vector<int64_t> data;
  uint64_t x = 99;
  for (int i = 0; i < 2 * 9; ++i) data.push_back(int64_t((x = x * 6364136223846793005ull + 1) >> 40) % 50);
  Tensor ids = Tensor::from_vector(data, {2, 9});
  auto step_inputs = [&](std::map<std::string, Tensor>& in) {
    for (auto& [input, output] : fused.updates) in[input] = fused.initial.at(input);
    in[kStepInput] = Tensor::scalar<float>(1.f);
    in[kLearningRateInput] = Tensor::scalar<float>(1e-2f);
  };
  std::map<std::string, Tensor> in = causal_lm_feeds(fused.data_inputs, ids);
  step_inputs(in);
  auto fused_exe = Executable::compile(fused.graph, *backend);
  std::vector<Tensor> expected = fused_exe->run(in);

  std::map<std::string, Tensor> grad_in = causal_lm_feeds(split.data_inputs, ids);
  for (const std::string& p : split.parameters) grad_in[p] = split.initial.at(p);
  auto grad_exe = Executable::compile(split.graph, *backend);
  std::vector<Tensor> grads = grad_exe->run(grad_in);
  std::map<std::string, Tensor> opt_in;
  step_inputs(opt_in);
  std::vector<std::string> grad_names = grad_exe->output_names();
  for (const std::string& g : split.gradients)
    opt_in[g] = grads.at(size_t(std::find(grad_names.begin(), grad_names.end(), g) - grad_names.begin()));
  auto opt_exe = Executable::compile(split.optimizer, *backend);
  std::vector<Tensor> got = opt_exe->run(opt_in);

  auto output = [](Executable& exe, const std::vector<Tensor>& outs, const std::string& name) -> const Tensor& {
    std::vector<std::string> names = exe.output_names();
    return outs.at(size_t(std::find(names.begin(), names.end(), name) - names.begin()));
  };
  EXPECT_NEAR(output(*opt_exe, got, kGradNormOutput).get_double(0),
              output(*fused_exe, expected, kGradNormOutput).get_double(0), 1e-5);
  EXPECT_GT(output(*opt_exe, got, kGradNormOutput).get_double(0), 0.5);  // clipped
  for (auto& [input, next] : split.updates) {
    const Tensor& a = output(*opt_exe, got, next);
    const Tensor& b = output(*fused_exe, expected, next);
    ASSERT_EQ(a.dims(), b.dims()) << next;
    double worst = 0;
    for (int64_t i = 0; i < a.numel(); ++i)
      worst = std::max(worst, std::abs(double(a.data<float>()[i]) - b.data<float>()[i]) /
                                  (1e-3 + std::abs(double(b.data<float>()[i]))));
    EXPECT_LT(worst, 1e-4) << next;
  }
}

// Attention fused before autodiff (one AttentionGrad per layer) gives the
// gradients of the exported ops' own backward, on all six test models (every
// exporter's attention pattern) with per-head codebooks after the attention,
// on the reference and cpu backends.
TEST(TrainingGraph, FusedAttentionGivesTheUnfusedGradients) {
  for (const char* name : {"gpt2", "gpt2-dynamo", "gpt2-optimum", "gpt-neo", "gpt-neox", "gpt-neox-sequential"}) {
    SCOPED_TRACE(name);
    auto build = [&](bool fuse) {
      auto g = import_onnx(model_dir(name) + "/model.onnx");
      CodebookConfig cc;
      cc.placements = {{Placement::attn_preproj, 16, 2, kGroupsPerHead}};
      insert_codebooks(*g, cc);
      StepGraphOptions o;
      o.separate_optimizer = true;
      o.fuse_attention = fuse;
      return build_train_graph(g, o);
    };
    StepGraph fused = build(true), plain = build(false);
    int grads = 0;
    for (auto& n : fused.graph->nodes()) grads += n->op_type == kAttentionGradOp;
    EXPECT_GE(grads, 2) << "attention was not fused";
    std::vector<int64_t> data;
    uint64_t x = 7;
    for (int i = 0; i < 2 * 11; ++i) data.push_back(int64_t((x = x * 6364136223846793005ull + 1) >> 40) % 50);
    Tensor ids = Tensor::from_vector(data, {2, 11});
    for (const char* backend_name : {"reference", "cpu"}) {
      SCOPED_TRACE(backend_name);
      auto backend = make_backend(backend_name);
      auto run = [&](StepGraph& s) {
        std::map<std::string, Tensor> in = causal_lm_feeds(s.data_inputs, ids);
        for (const std::string& p : s.parameters) in[p] = s.initial.at(p);
        auto exe = Executable::compile(s.graph, *backend);
        std::vector<Tensor> outs = exe->run(in);
        std::map<std::string, Tensor> by_name;
        std::vector<std::string> names = exe->output_names();
        for (size_t i = 0; i < outs.size(); ++i) by_name[names[i]] = outs[i];
        return by_name;
      };
      std::map<std::string, Tensor> a = run(fused), b = run(plain);
      ASSERT_EQ(fused.gradients, plain.gradients);
      for (const std::string& gname : fused.gradients) {
        const Tensor &ga = a.at(gname), &gb = b.at(gname);
        ASSERT_EQ(ga.dims(), gb.dims()) << gname;
        double scale = 0, worst = 0;
        for (int64_t i = 0; i < gb.numel(); ++i) scale = std::max(scale, std::abs(double(gb.data<float>()[i])));
        for (int64_t i = 0; i < ga.numel(); ++i)
          worst = std::max(worst, std::abs(double(ga.data<float>()[i]) - gb.data<float>()[i]));
        EXPECT_LE(worst, 1e-4 * scale + 1e-7) << gname << " (largest " << scale << ")";
      }
    }
  }
}

TEST(TrainingGraph, CompatPresetReproducesTheOriginalsCollection) {
  StepGraphOptions o;
  o.compat_original = true;
  // A vanilla mlp codebook trains its codes only; attn_preproj freezes the
  // attention projections of its layer (docs/original.md#which-parameters-train).
  StepGraph sg = build_train_graph(
      with_codebooks({{Placement::mlp, 16, 1, 1}, {Placement::attn_preproj, 16, 1, kGroupsPerHead}}), o);
  std::set<std::string> cb(sg.groups.at("codebooks").begin(), sg.groups.at("codebooks").end());
  std::set<std::string> model(sg.groups.at("model").begin(), sg.groups.at("model").end());
  int mlp_ln = 0, preproj_ln = 0;
  for (Node* n : codebook_nodes(*sg.graph)) {
    bool vanilla_mlp = n->attr_string("site", "").find(".mlp") != std::string::npos;
    int& counter = vanilla_mlp ? mlp_ln : preproj_ln;
    counter += cb.count(n->input(2)->name) + cb.count(n->input(3)->name);
    EXPECT_TRUE(cb.count(n->input(1)->name));
  }
  EXPECT_EQ(mlp_ln, 0);
  EXPECT_EQ(preproj_ln, 4);  // two layers x (scale, bias)
  for (const std::string& p : model) {
    EXPECT_EQ(p.find("attn.c_attn"), std::string::npos) << p;
    EXPECT_EQ(p.find("attn.c_proj"), std::string::npos) << p;
  }
  EXPECT_TRUE(model.count("transformer.h.0.mlp.c_fc.weight"));
  EXPECT_TRUE(model.count("transformer.h.0.ln_1.weight"));
}

}  // namespace
}  // namespace cb
