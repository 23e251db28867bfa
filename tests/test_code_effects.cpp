// What a code writes and similar codes (tools/code_effects.h).
// similar_codes is checked against a brute-force cosine over every pair,
// computed here. code_logit_effect is checked against the direct logit effect
// built here from the Hugging Face weights of the same tiny models
// (tests/models/*/hf/model.safetensors, read by their state-dict names:
// transformer.ln_f.weight, transformer.wte.weight (tied), embed_out.weight,
// the attention and MLP output projections), so the graph matcher, the
// exporters' weight layouts (Gemm, transposed MatMul constants, the tied
// copy) and the placement rules are all checked against an independent
// source; gpt2-dynamo and gpt2-optimum hold the same weights as gpt2.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "frontend/hf_import.h"
#include "frontend/onnx_import.h"
#include "frontend/safetensors.h"
#include "passes/canonicalize.h"
#include "passes/insert_codebooks.h"
#include "support/error.h"
#include "tools/code_effects.h"

using namespace cb;
using cb::tools::CodeEffects;
using cb::tools::LogitEffect;
using cb::tools::SimilarCode;

namespace {

const std::string kModels = std::string(CB_SOURCE_DIR) + "/tests/models/";

// ------------------------------------------------------------ similar codes

// cos(a, b) over `n` values, 0 when either is zero: the definition, in long double.
double cosine(const float* a, const float* b, int64_t n) {
  long double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += (long double)a[i] * b[i];
    aa += (long double)a[i] * a[i];
    bb += (long double)b[i] * b[i];
  }
  return aa == 0 || bb == 0 ? 0.0 : double(ab / std::sqrt(aa * bb));
}

// Every other code of the member, by cosine, descending, ties to the lower id.
std::vector<SimilarCode> brute_force_similar(const Tensor& codes, int64_t g, int64_t code) {
  const int64_t K = codes.dim(1), Dg = codes.dim(2);
  const float* c = codes.data<float>() + g * K * Dg;
  std::vector<SimilarCode> all;
  for (int64_t j = 0; j < K; ++j)
    if (j != code) all.push_back({j, cosine(c + code * Dg, c + j * Dg, Dg)});
  std::stable_sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.cosine > b.cosine; });
  return all;
}

void expect_same(const std::vector<SimilarCode>& got, const std::vector<SimilarCode>& want, size_t n) {
  ASSERT_EQ(got.size(), std::min(n, want.size()));
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].code, want[i].code) << "rank " << i;
    EXPECT_NEAR(got[i].cosine, want[i].cosine, 1e-12) << "rank " << i;
  }
}

// Two members of 12 codes of width 5: random codes, plus in member 1 a zero
// code (3), an exact copy of code 0 (7) and a scaled copy of it (9; same
// cosine, so tied with 7), and its negation (10).
Tensor test_codes() {
  const int64_t G = 2, K = 12, Dg = 5;
  Tensor t = Tensor::empty(DType::f32, {G, K, Dg});
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.f, 1.f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = normal(rng);
  float* m1 = p + K * Dg;
  for (int64_t d = 0; d < Dg; ++d) {
    m1[3 * Dg + d] = 0.f;
    m1[7 * Dg + d] = m1[d];
    m1[9 * Dg + d] = 2.f * m1[d];  // 2x is exact in floats: cos is the same as code 7's
    m1[10 * Dg + d] = -m1[d];
  }
  return t;
}

TEST(SimilarCodes, MatchBruteForceCosines) {
  Tensor codes = test_codes();
  for (int64_t g = 0; g < 2; ++g)
    for (int64_t code = 0; code < 12; ++code)
      for (int64_t n : {0, 1, 4, 11, 50})
        expect_same(tools::similar_codes(codes, g, code, n), brute_force_similar(codes, g, code), size_t(n));
}

TEST(SimilarCodes, CopiesTieToTheLowerIdAndTheNegationComesLast) {
  auto s = tools::similar_codes(test_codes(), 1, 0, 11);
  ASSERT_EQ(s.size(), 11u);  // every code but itself
  EXPECT_EQ(s[0].code, 7);
  EXPECT_EQ(s[1].code, 9);
  EXPECT_NEAR(s[0].cosine, 1.0, 1e-12);
  EXPECT_EQ(s[0].cosine, s[1].cosine);
  EXPECT_EQ(s.back().code, 10);
  EXPECT_NEAR(s.back().cosine, -1.0, 1e-12);
  for (const SimilarCode& c : s) EXPECT_NE(c.code, 0);
}

TEST(SimilarCodes, ZeroCodeHasCosineZeroWithEverything) {
  Tensor codes = test_codes();
  auto s = tools::similar_codes(codes, 1, 3, 11);
  ASSERT_EQ(s.size(), 11u);
  for (size_t i = 0; i < s.size(); ++i) {
    EXPECT_EQ(s[i].cosine, 0.0);
    EXPECT_EQ(s[i].code, int64_t(i < 3 ? i : i + 1));  // all tied: ascending ids
  }
  // And as a neighbour of another code.
  for (const SimilarCode& c : tools::similar_codes(codes, 1, 5, 11))
    if (c.code == 3) EXPECT_EQ(c.cosine, 0.0);
}

TEST(SimilarCodes, OutOfRangeIsAnError) {
  Tensor codes = test_codes();
  EXPECT_THROW(tools::similar_codes(codes, 2, 0, 3), Error);
  EXPECT_THROW(tools::similar_codes(codes, -1, 0, 3), Error);
  EXPECT_THROW(tools::similar_codes(codes, 0, 12, 3), Error);
}

// ------------------------------------------------------------ the reference weights

// A model's weights as Hugging Face stores them, and what the effect needs.
struct Reference {
  std::shared_ptr<SafetensorsFile> st;
  std::string arch;  // gpt2 | gpt_neo | gpt_neox

  Tensor get(const std::string& name) const { return st->tensor_f32(name); }
  Tensor ln_f() const {
    return get(arch == "gpt_neox" ? "gpt_neox.final_layer_norm.weight" : "transformer.ln_f.weight");
  }
  // [vocab, D]: the embedding itself when tied (GPT-2, GPT-Neo), embed_out for GPT-NeoX.
  Tensor unembedding() const { return get(arch == "gpt_neox" ? "embed_out.weight" : "transformer.wte.weight"); }
  // Element (i, o) of a projection [in, out]: GPT-2's Conv1D stores [in, out],
  // nn.Linear (GPT-Neo, GPT-NeoX) [out, in].
  struct Proj {
    Tensor w;
    bool conv1d;
    double at(int64_t i, int64_t o) const {
      return conv1d ? w.data<float>()[i * w.dim(1) + o] : w.data<float>()[o * w.dim(1) + i];
    }
  };
  Proj attn_out(int64_t L) const {
    std::string l = std::to_string(L);
    if (arch == "gpt2") return {get("transformer.h." + l + ".attn.c_proj.weight"), true};
    if (arch == "gpt_neo") return {get("transformer.h." + l + ".attn.attention.out_proj.weight"), false};
    return {get("gpt_neox.layers." + l + ".attention.dense.weight"), false};
  }
  Proj mlp_out(int64_t L) const {
    std::string l = std::to_string(L);
    if (arch == "gpt2") return {get("transformer.h." + l + ".mlp.c_proj.weight"), true};
    if (arch == "gpt_neo") return {get("transformer.h." + l + ".mlp.c_proj.weight"), false};
    return {get("gpt_neox.layers." + l + ".mlp.dense_4h_to_h.weight"), false};
  }
};

Reference reference_of(const std::string& hf_folder, const std::string& arch) {
  return {SafetensorsFile::open(kModels + hf_folder + "/hf/model.safetensors"), arch};
}

// The expected logit change of every token: write = the code (its member's
// slice) or the code through the output projection's rows of that slice;
// logit[v] = sum_d write[d] * ln_f[d] * W_U[v, d].
std::vector<double> expected_logits(const Reference& r, Placement p, int64_t layer, const Tensor& codes, int64_t g,
                                    int64_t code) {
  const int64_t K = codes.dim(1), Dg = codes.dim(2);
  const float* c = codes.data<float>() + (g * K + code) * Dg;
  Tensor gamma = r.ln_f(), wu = r.unembedding();
  const int64_t V = wu.dim(0), D = wu.dim(1);
  std::vector<double> write(size_t(D), 0.0);
  if (p == Placement::attn_preproj || p == Placement::mlp_mid) {
    Reference::Proj w = p == Placement::attn_preproj ? r.attn_out(layer) : r.mlp_out(layer);
    for (int64_t o = 0; o < D; ++o)
      for (int64_t i = 0; i < Dg; ++i) write[size_t(o)] += double(c[i]) * w.at(g * Dg + i, o);
  } else {
    for (int64_t i = 0; i < Dg; ++i) write[size_t(g * Dg + i)] = c[i];
  }
  std::vector<double> logits(size_t(V), 0.0);
  for (int64_t v = 0; v < V; ++v)
    for (int64_t d = 0; d < D; ++d)
      logits[size_t(v)] += write[size_t(d)] * gamma.data<float>()[d] * wu.data<float>()[v * D + d];
  return logits;
}

// ------------------------------------------------------------ logit effects

struct ModelCase {
  std::string folder, hf_folder, arch;
};
void PrintTo(const ModelCase& m, std::ostream* os) { *os << m.folder; }
const ModelCase kCases[] = {
    {"gpt2", "gpt2", "gpt2"},
    {"gpt2-dynamo", "gpt2", "gpt2"},
    {"gpt2-optimum", "gpt2", "gpt2"},
    {"gpt-neo", "gpt-neo", "gpt_neo"},
    {"gpt-neox", "gpt-neox", "gpt_neox"},
    {"gpt-neox-sequential", "gpt-neox-sequential", "gpt_neox"},
};

std::shared_ptr<Graph> compiled(std::shared_ptr<Graph> g, const std::vector<PlacementConfig>& placements) {
  CodebookConfig cfg;
  cfg.placements = placements;
  cfg.seed = 5;
  insert_codebooks(*g, cfg);
  return g;
}

// Every codebook placement that writes into the residual stream: a group at
// attn_preproj (one member per head), mlp_mid and attn as groups of 2, the
// others single.
std::vector<PlacementConfig> writing_placements() {
  return {{Placement::attn_preproj, 24, 2, kGroupsPerHead},
          {Placement::attn, 24, 2, 2},
          {Placement::mlp_mid, 24, 2, 2},
          {Placement::mlp, 24, 3, 1},
          {Placement::transformer_block, 24, 1, 1}};
}

// Checks every codebook of g (members 0 and G-1, three codes); `sites` is how many it must have.
void check_effects(Graph& g, const Reference& ref, const std::string& what, size_t sites) {
  CodeEffects effects(g);
  ASSERT_EQ(codebook_nodes(g).size(), sites) << what;
  for (Node* n : codebook_nodes(g)) {
    SiteRef site = parse_site(n->attr_string("site", ""));
    const Tensor& codes = *n->input(1)->constant;
    const int64_t G = codes.dim(0);
    for (int64_t g_ : {int64_t(0), G - 1})
      for (int64_t code : {0, 13, 23}) {
        SiteRef s = site;
        s.group = g_;
        SCOPED_TRACE(what + " " + s.name() + " code " + std::to_string(code));
        LogitEffect e = effects.logit_effect(s, code, 6);
        ASSERT_TRUE(e.available) << e.reason;
        std::vector<double> want = expected_logits(ref, s.placement, s.layer, codes, g_, code);
        ASSERT_EQ(e.logits.size(), want.size());
        double max_diff = 0, max_abs = 0;
        for (size_t v = 0; v < want.size(); ++v) {
          max_diff = std::max(max_diff, std::abs(e.logits[v] - want[v]));
          max_abs = std::max(max_abs, std::abs(want[v]));
        }
        EXPECT_GT(max_abs, 0.1);  // not trivially zero
        EXPECT_LT(max_diff, 1e-9 * std::max(1.0, max_abs)) << "max |logit - expected| over the vocabulary";
        // The top and bottom 6 of the expected vector.
        std::vector<int64_t> order(want.size());
        for (size_t v = 0; v < order.size(); ++v) order[v] = int64_t(v);
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return want[a] > want[b]; });
        ASSERT_EQ(e.promoted.size(), 6u);
        ASSERT_EQ(e.suppressed.size(), 6u);
        for (size_t i = 0; i < 6; ++i) {
          EXPECT_EQ(e.promoted[i].token, order[i]);
          EXPECT_NEAR(e.promoted[i].logit, want[size_t(order[i])], 1e-9);
          EXPECT_EQ(e.suppressed[i].token, order[order.size() - 1 - i]);
        }
      }
  }
}

class LogitEffectOf : public ::testing::TestWithParam<ModelCase> {};

TEST_P(LogitEffectOf, EveryWritingPlacementMatchesTheHuggingFaceWeights) {
  const ModelCase& m = GetParam();
  auto g = compiled(import_onnx(kModels + m.folder + "/model.onnx"), writing_placements());
  check_effects(*g, reference_of(m.hf_folder, m.arch), m.folder, 10);
}

INSTANTIATE_TEST_SUITE_P(Committed, LogitEffectOf, ::testing::ValuesIn(kCases), [](const auto& info) {
  std::string s = info.param.folder;
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
});

// attn_plus_mlp rewrites the block output; its codes are added to the stream like mlp's.
TEST(LogitEffect, AttnPlusMlpOnGpt2AndNeox) {
  for (const ModelCase& m : {kCases[0], kCases[4]}) {
    auto g = compiled(import_onnx(kModels + m.folder + "/model.onnx"), {{Placement::attn_plus_mlp, 24, 2, 4}});
    check_effects(*g, reference_of(m.hf_folder, m.arch), m.folder, 2);
  }
}

// import-hf builds the unembedding as a Gemm with transB = 1 over the [vocab, D] matrix.
TEST(LogitEffect, HuggingFaceImportReadsTheTransposedGemm) {
  for (const ModelCase& m : {kCases[0], kCases[4]}) {
    auto g = compiled(import_hf(kModels + m.hf_folder + "/hf"), writing_placements());
    check_effects(*g, reference_of(m.hf_folder, m.arch), m.folder + " (import-hf)", 10);
  }
}

// The same compiled codebooks on the three GPT-2 exports give the same numbers.
TEST(LogitEffect, SameOnEveryGpt2Export) {
  std::vector<std::vector<double>> got;
  for (const char* folder : {"gpt2", "gpt2-dynamo", "gpt2-optimum"}) {
    auto g = compiled(import_onnx(kModels + folder + "/model.onnx"), {{Placement::attn_preproj, 24, 2, 4}});
    got.push_back(tools::code_logit_effect(*g, parse_site("layer1.attn_preproj[3]"), 17, 5).logits);
  }
  ASSERT_EQ(got[0].size(), 500u);
  for (size_t i = 1; i < got.size(); ++i)
    for (size_t v = 0; v < got[0].size(); ++v) ASSERT_NEAR(got[i][v], got[0][v], 1e-9) << i << " " << v;
}

TEST(LogitEffect, QkvIsNotAvailable) {
  for (const char* folder : {"gpt2", "gpt-neo", "gpt-neox"}) {
    auto g = compiled(import_onnx(kModels + folder + "/model.onnx"), {{Placement::qkv, 8, 1, 1}});
    LogitEffect e = tools::code_logit_effect(*g, parse_site("layer0.qkv[2]"), 3, 5);
    EXPECT_FALSE(e.available) << folder;
    EXPECT_NE(e.reason.find("layer0.qkv[2]"), std::string::npos) << e.reason;
    EXPECT_NE(e.reason.find("attention"), std::string::npos) << e.reason;
    EXPECT_TRUE(e.logits.empty() && e.promoted.empty());
  }
}

TEST(LogitEffect, TheReadoutIsFoundStructurally) {
  for (const ModelCase& m : kCases) {
    auto g = import_onnx(kModels + m.folder + "/model.onnx");
    ModelAnatomy a = analyze_model(*g);
    ASSERT_TRUE(a.final_norm && a.logits) << m.folder;
    EXPECT_EQ(a.logits, g->outputs[0]) << m.folder;  // the graph's logits output
    EXPECT_EQ(a.final_norm->op_type, "LayerNormalization");
    auto w = linear_weight(a.logits);
    ASSERT_TRUE(w) << m.folder;
    EXPECT_EQ(w->in(), 64);
    EXPECT_EQ(w->out(), 500);
  }
}

// A graph without its head: the effect is not available, and says why.
TEST(LogitEffect, NoReadoutIsNotAvailable) {
  auto g = compiled(import_onnx(kModels + "gpt2/model.onnx"), {{Placement::mlp, 8, 1, 1}});
  // The last block output becomes the graph output; the final LayerNorm and lm_head are dead code.
  g->outputs = {analyze_model(*g).layers.back().output};
  make_dead_code_elimination_pass()->run(*g);
  LogitEffect e = tools::code_logit_effect(*g, parse_site("layer0.mlp"), 3, 5);
  EXPECT_FALSE(e.available);
  EXPECT_NE(e.reason.find("final LayerNorm"), std::string::npos) << e.reason;
}

TEST(CodeEffects, ErrorsNameTheSiteAndCode) {
  auto g = compiled(import_onnx(kModels + "gpt2/model.onnx"),
                    {{Placement::attn_preproj, 16, 2, kGroupsPerHead}, {Placement::mlp, 16, 2, 1}});
  CodeEffects effects(*g);
  auto message = [&](const std::string& site, int64_t code) {
    try {
      effects.logit_effect(parse_site(site), code, 3);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("layer0.attn", 1).find("layer0.attn has no codebook"), std::string::npos);
  EXPECT_NE(message("layer0.attn_preproj[4]", 1).find("member 4 out of range"), std::string::npos);
  EXPECT_NE(message("layer0.attn_preproj", 1).find("name one member"), std::string::npos);
  EXPECT_NE(message("layer0.mlp", 16).find("code 16 out of range"), std::string::npos);
  EXPECT_NE(message("layer0.mlp", -1).find("layer0.mlp: code -1"), std::string::npos);
  EXPECT_EQ(message("layer0.mlp", 15), "no error");
  EXPECT_EQ(message("layer0.mlp[0]", 0), "no error");
  // similar() checks the same way.
  EXPECT_THROW(effects.similar(parse_site("layer1.mlp"), 99, 3), Error);
}

// CodeEffects::similar reads the member's codes out of the compiled graph.
TEST(CodeEffects, SimilarReadsTheMembersCodes) {
  auto g = compiled(import_onnx(kModels + "gpt-neox/model.onnx"), {{Placement::attn_preproj, 16, 2, kGroupsPerHead}});
  CodeEffects effects(*g);
  const Tensor& codes = *find_codebook_node(*g, "layer1.attn_preproj")->input(1)->constant;
  for (int64_t m = 0; m < 4; ++m)
    expect_same(effects.similar(parse_site("layer1.attn_preproj[" + std::to_string(m) + "]"), 5, 8),
                brute_force_similar(codes, m, 5), 8);
}

}  // namespace
