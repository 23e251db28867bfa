// The codebook insertion and intervention passes on the tiny GPT-2 / GPT-Neo /
// GPT-NeoX models: every placement on every architecture compiles, runs, and
// is wired where the original puts it (the codebook reads the site's activation and
// its output replaces it); compiled models survive an ONNX round trip bit for
// bit; interventions change attributes only, and none means no change.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "backends/backend.h"
#include "frontend/onnx_export.h"
#include "frontend/onnx_import.h"
#include "ir/codebook.h"
#include "ir/printer.h"
#include "passes/insert_codebooks.h"
#include "passes/interventions.h"
#include "runtime/executable.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::max_abs_diff;
namespace fs = std::filesystem;

namespace {

const std::string kModels[] = {"gpt2", "gpt2-dynamo", "gpt2-optimum", "gpt-neo", "gpt-neox", "gpt-neox-sequential"};

std::string model_path(const std::string& name) {
  return std::string(CB_SOURCE_DIR) + "/tests/models/" + name + "/model.onnx";
}

std::map<std::string, Tensor> lm_inputs(const Graph& g, int64_t T) {
  std::map<std::string, Tensor> in;
  std::vector<int64_t> ids, ones(size_t(T), 1), pos;
  for (int64_t t = 0; t < T; ++t) {
    ids.push_back((t * 37 + 11) % 500);
    pos.push_back(t);
  }
  for (const Value* v : g.inputs) {
    if (v->name == "input_ids") in[v->name] = Tensor::from_vector(ids, {1, T});
    if (v->name == "attention_mask") in[v->name] = Tensor::from_vector(ones, {1, T});
    if (v->name == "position_ids") in[v->name] = Tensor::from_vector(pos, {1, T});
  }
  return in;
}

std::map<std::string, Tensor> run(std::shared_ptr<Graph> g, int64_t T = 7, const char* backend = "reference") {
  auto b = make_backend(backend);
  auto exe = Executable::compile(g, *b);
  auto outs = exe->run(lm_inputs(*g, T));
  std::map<std::string, Tensor> named;
  auto names = exe->output_names();
  for (size_t i = 0; i < outs.size(); ++i) named[names[i]] = outs[i];
  return named;
}

CodebookConfig config(Placement p, int64_t groups = 1, int64_t K = 16, int64_t k = 2) {
  CodebookConfig c;
  c.placements.push_back({p, K, k, groups});
  c.seed = 7;
  return c;
}

class EveryPlacement : public ::testing::TestWithParam<std::tuple<std::string, Placement>> {};

TEST_P(EveryPlacement, CompilesRunsAndIsWired) {
  auto [model, placement] = GetParam();
  auto plain = import_onnx(model_path(model));
  InterventionSet plain_taps;
  plain_taps.taps = {"layer0." + std::string(placement_name(placement))};
  apply_interventions(*plain, plain_taps);
  auto plain_out = run(plain);

  auto g = import_onnx(model_path(model));
  auto inserted = insert_codebooks(*g, config(placement, placement == Placement::qkv ? 1 : 2));
  ASSERT_EQ(inserted.size(), 2u);
  EXPECT_EQ(codebook_nodes(*g).size(), 2u);
  std::string site = "layer0." + std::string(placement_name(placement));
  EXPECT_EQ(inserted[0].site, site);
  EXPECT_EQ(inserted[0].groups, placement == Placement::qkv ? 3 : 2);
  InterventionSet taps;
  taps.taps = {site, "layer1." + std::string(placement_name(placement))};
  apply_interventions(*g, taps);
  auto out = run(g);

  // Layer 0's codebook reads exactly the plain model's activation at the site.
  EXPECT_LT(max_abs_diff(out.at(site + ".input"), plain_out.at(site + ".input")), 1e-5);
  // Its output is the mean of the chosen codes' rows (here: the codes constant).
  const Tensor& ids = out.at(site + ".ids");
  const Tensor& y = out.at(site + ".output");
  const Tensor& codes = *find_codebook_node(*g, site)->inputs[1]->constant;
  int64_t G = codes.dim(0), K = codes.dim(1), Dg = codes.dim(2), k = ids.dim(3);
  ASSERT_EQ(ids.dim(2), G);
  for (int64_t t = 0; t < ids.dim(1); ++t)
    for (int64_t gi = 0; gi < G; ++gi)
      for (int64_t d = 0; d < Dg; ++d) {
        double s = 0;
        for (int64_t j = 0; j < k; ++j) {
          int64_t c = ids.data<int64_t>()[(t * G + gi) * k + j];
          ASSERT_GE(c, 0);
          ASSERT_LT(c, K);
          s += codes.data<float>()[(gi * K + c) * Dg + d];
        }
        ASSERT_NEAR(y.data<float>()[t * G * Dg + gi * Dg + d], s / double(k), 1e-5);
      }
  // The codebook's output replaces the activation: the logits change.
  const double changed = max_abs_diff(out.at("logits"), plain_out.at("logits"));
  EXPECT_GT(changed, 1e-3);
  EXPECT_TRUE(std::isfinite(changed));
  for (int64_t i = 0; i < out.at("logits").numel(); ++i) ASSERT_TRUE(std::isfinite(out.at("logits").get_double(i)));
  // The CPU backend agrees with the reference.
  auto cpu = run(g, 7, "cpu");
  EXPECT_LT(max_abs_diff(cpu.at("logits"), out.at("logits")), 1e-3);
}

std::string param_name(const ::testing::TestParamInfo<EveryPlacement::ParamType>& p) {
  std::string s = std::get<0>(p.param) + "_" + placement_name(std::get<1>(p.param));
  for (char& c : s)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

INSTANTIATE_TEST_SUITE_P(TinyModels, EveryPlacement,
                         ::testing::Combine(::testing::ValuesIn(kModels), ::testing::ValuesIn(kAllPlacements)),
                         param_name);

TEST(InsertCodebooks, GroupsPerHeadAndLayerSelection) {
  auto g = import_onnx(model_path("gpt2"));
  CodebookConfig c = config(Placement::attn_preproj, kGroupsPerHead, 32, 4);
  c.placements.push_back({Placement::mlp, 8, 1, 1});
  c.layers = {-1};
  auto cbs = insert_codebooks(*g, c);
  ASSERT_EQ(cbs.size(), 2u);
  EXPECT_EQ(cbs[0].site, "layer1.attn_preproj");
  EXPECT_EQ(cbs[0].groups, 4);  // 4 heads
  EXPECT_EQ(find_codebook_node(*g, "layer1.attn_preproj")->inputs[1]->constant->dims(),
            (std::vector<int64_t>{4, 32, 16}));
  EXPECT_EQ(cbs[1].site, "layer1.mlp");
  EXPECT_NE(g->metadata.at("codebook.config").find("\"site\": \"layer1.attn_preproj\""), std::string::npos);
  EXPECT_NE(g->metadata.at("codebook.config").find("\"groups\": 4"), std::string::npos);
}

TEST(InsertCodebooks, BadConfigsNameTheProblem) {
  auto expect_error = [](CodebookConfig c, const std::string& needle) {
    auto g = import_onnx(model_path("gpt2"));
    try {
      insert_codebooks(*g, c);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  CodebookConfig c = config(Placement::mlp);
  c.layers = {2};
  expect_error(c, "layer 2 does not exist");
  expect_error(config(Placement::mlp, 3), "do not divide");
  expect_error(config(Placement::mlp, 1, 4, 5), "k = 5");
  // A site gets one codebook.
  auto g = import_onnx(model_path("gpt2"));
  insert_codebooks(*g, config(Placement::mlp));
  try {
    insert_codebooks(*g, config(Placement::mlp));
    ADD_FAILURE() << "a second codebook at layer0.mlp";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer0.mlp already has a codebook"), std::string::npos) << e.what();
  }
}

TEST(InsertCodebooks, SeedsAreDeterministicPerSite) {
  auto a = import_onnx(model_path("gpt2"));
  auto b = import_onnx(model_path("gpt2"));
  insert_codebooks(*a, config(Placement::mlp));
  CodebookConfig both = config(Placement::mlp);
  both.placements.push_back({Placement::attn, 16, 2, 1});
  insert_codebooks(*b, both);
  // Adding the attn codebooks does not change the mlp ones.
  EXPECT_TRUE(find_codebook_node(*a, "layer1.mlp")
                  ->inputs[1]
                  ->constant->bitwise_equal(*find_codebook_node(*b, "layer1.mlp")->inputs[1]->constant));
  // Codes look like N(0, 1) draws.
  const Tensor& c = *find_codebook_node(*a, "layer0.mlp")->inputs[1]->constant;
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < c.numel(); ++i) {
    s += c.data<float>()[i];
    s2 += double(c.data<float>()[i]) * c.data<float>()[i];
  }
  double n = double(c.numel()), mean = s / n;
  EXPECT_NEAR(mean, 0, 0.1);
  EXPECT_NEAR(s2 / n - mean * mean, 1, 0.15);
}

TEST(CompiledModel, CompilingInStepsEqualsCompilingAtOnce) {
  for (const std::string& name : kModels) {
    SCOPED_TRACE(name);
    CodebookConfig all = config(Placement::qkv);
    for (Placement p :
         {Placement::attn_preproj, Placement::mlp, Placement::attn_plus_mlp, Placement::transformer_block})
      all.placements.push_back({p, 16, 2, 1});
    auto once = import_onnx(model_path(name));
    insert_codebooks(*once, all);
    auto steps = import_onnx(model_path(name));
    for (auto& pc : all.placements) {
      CodebookConfig one = all;
      one.placements = {pc};
      insert_codebooks(*steps, one);
    }
    EXPECT_EQ(codebook_nodes(*steps).size(), 10u);
    EXPECT_EQ(steps->metadata.at("codebook.config"), once->metadata.at("codebook.config"));
    EXPECT_TRUE(run(once).at("logits").bitwise_equal(run(steps).at("logits")));
    // The compiled model still has its anatomy: plain sites can be tapped.
    InterventionSet taps;
    taps.taps = {"layer1.attn", "layer0.mlp"};
    apply_interventions(*steps, taps);
    auto out = run(steps);
    EXPECT_EQ(out.at("layer1.attn.input").dim(2), 64);
    EXPECT_EQ(out.at("layer0.mlp.ids").dim(3), 2);
  }
}

TEST(CompiledModel, OnnxRoundTripIsBitIdentical) {
  auto g = import_onnx(model_path("gpt-neox"));
  CodebookConfig c = config(Placement::attn_preproj, kGroupsPerHead);
  c.placements.push_back({Placement::mlp, 16, 2, 1});
  c.metric = CodebookMetric::euclidean;
  insert_codebooks(*g, c);
  fs::path file = fs::temp_directory_path() / ("compiled_" + std::to_string(getpid()) + ".onnx");
  export_onnx(*g, file.string());
  auto back = import_onnx(file.string());
  fs::remove(file);
  EXPECT_EQ(print_graph(*back), print_graph(*g));
  EXPECT_EQ(back->metadata.at("codebook.config"), g->metadata.at("codebook.config"));
  auto a = run(g), b = run(back);
  EXPECT_TRUE(a.at("logits").bitwise_equal(b.at("logits")));
}

TEST(Interventions, NoneLeavesTheCompiledGraphUnchanged) {
  auto g = import_onnx(model_path("gpt2"));
  insert_codebooks(*g, config(Placement::mlp));
  std::string before = print_graph(*g);
  apply_interventions(*g, InterventionSet{});
  EXPECT_EQ(print_graph(*g), before);
}

TEST(Interventions, BecomeCodebookAttributes) {
  auto g = import_onnx(model_path("gpt2"));
  insert_codebooks(*g, config(Placement::attn_preproj, kGroupsPerHead));
  InterventionSet iv;
  iv.items.push_back(parse_intervention(InterventionKind::ablate, "layer0.attn_preproj[2]:3,5@0,-1"));
  iv.items.push_back(parse_intervention(InterventionKind::disable_topk, "layer0_attn_preproj:1"));
  iv.items.push_back(parse_intervention(InterventionKind::force, "layer-1.attn_preproj[1]:7,9@2"));
  iv.items.push_back(parse_intervention(InterventionKind::force, "layer1.attn_preproj:4@*#0"));
  iv.items.push_back(parse_intervention(InterventionKind::disable_slot, "layer1.attn_preproj[3]:1"));
  apply_interventions(*g, iv);
  CodebookAttrs a0 = CodebookAttrs::from_node(*find_codebook_node(*g, "layer0.attn_preproj"));
  ASSERT_EQ(a0.ablate.size(), 4u);
  EXPECT_EQ(a0.ablate[0].group, 2);
  EXPECT_EQ(a0.ablate[0].position, 0);
  EXPECT_EQ(a0.ablate[0].code, 3);
  EXPECT_EQ(a0.ablate[3].position, -1);
  EXPECT_EQ(a0.ablate[3].code, 5);
  ASSERT_EQ(a0.disable_topk.size(), 1u);
  EXPECT_EQ(a0.disable_topk[0].group, kAll);
  EXPECT_EQ(a0.disable_topk[0].position, kAll);
  EXPECT_EQ(a0.disable_topk[0].m, 1);
  CodebookAttrs a1 = CodebookAttrs::from_node(*find_codebook_node(*g, "layer1.attn_preproj"));
  ASSERT_EQ(a1.force.size(), 4u);
  // Codes without #SLOT take the last slots: -1, -2, ...
  EXPECT_EQ(a1.force[0].slot, -1);
  EXPECT_EQ(a1.force[0].code, 7);
  EXPECT_EQ(a1.force[1].slot, -2);
  EXPECT_EQ(a1.force[1].code, 9);
  EXPECT_EQ(a1.force[1].position, 2);
  EXPECT_EQ(a1.force[2].slot, 0);
  EXPECT_EQ(a1.force[2].position, kAll);
  EXPECT_EQ(a1.force[3].code, -1);  // a disabled slot is a forced -1
  EXPECT_EQ(a1.force[3].group, 3);
}

TEST(Interventions, ErrorsNameTheSiteAndValue) {
  auto g = import_onnx(model_path("gpt2"));
  insert_codebooks(*g, config(Placement::mlp));
  auto expect_error = [&](InterventionKind kind, const std::string& text, const std::string& needle) {
    try {
      InterventionSet iv;
      iv.items.push_back(parse_intervention(kind, text));
      apply_interventions(*g, iv);
      ADD_FAILURE() << "no error for " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(InterventionKind::ablate, "layer0.attn:3", "has no codebook");
  expect_error(InterventionKind::ablate, "layer0.mlp:99", "code 99");
  expect_error(InterventionKind::ablate, "layer0.mlp[4]:1", "member 4");
  expect_error(InterventionKind::force, "layer0.mlp:1#5", "slot 5");
  expect_error(InterventionKind::ablate, "layer0.mlp", "SITE:VALUES");
  expect_error(InterventionKind::ablate, "layer0.mlpx:1", "bad site");
  expect_error(InterventionKind::ablate, "layer0.mlp:1@x", "bad position");
  expect_error(InterventionKind::disable_topk, "layer0.mlp:15", "exceeds");
}

}  // namespace
