// `codebook similar MODEL SITE[g] CODE`: the most similar codes, with cosines
// recomputed here from the compiled model's codes, and the code's direct
// logit effect (its numbers are tools/code_effects's, checked against the
// Hugging Face weights in test_code_effects); token strings when the model
// records a tokenizer or --tokenizer names one; one JSON object with --json;
// one error line and exit 2 for a site without codebook, a member or code out
// of range.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "frontend/onnx_import.h"
#include "passes/insert_codebooks.h"
#include "support/json.h"
#include "tests/cli_util.h"
#include "tools/code_effects.h"

namespace fs = std::filesystem;
using cb::Json;
using cb::test::Result;
using cb::test::run_tool;
using cb::test::temp_dir;

namespace {

const std::string kModels = std::string(CB_SOURCE_DIR) + "/tests/models/";
const std::string kGpt2Bpe = std::string(CB_SOURCE_DIR) + "/../shared/data/gpt2-bpe";

// Cosine of codes a and b of member g, 0 when either is zero.
double cosine(const cb::Tensor& codes, int64_t g, int64_t a, int64_t b) {
  const int64_t K = codes.dim(1), Dg = codes.dim(2);
  const float* c = codes.data<float>() + g * K * Dg;
  double ab = 0, aa = 0, bb = 0;
  for (int64_t d = 0; d < Dg; ++d) {
    ab += double(c[a * Dg + d]) * c[b * Dg + d];
    aa += double(c[a * Dg + d]) * c[a * Dg + d];
    bb += double(c[b * Dg + d]) * c[b * Dg + d];
  }
  return aa == 0 || bb == 0 ? 0.0 : ab / std::sqrt(aa * bb);
}

void expect_error(const Result& r, const std::vector<std::string>& parts) {
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
  for (auto& p : parts) EXPECT_NE(r.out.find(p), std::string::npos) << p << " in: " << r.out;
}

Json parse_json(const Result& r) {
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line: " << r.out;
  return cb::json_parse(r.out);
}

class SimilarCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("similar");
    gpt2_ = (dir_ / "gpt2.onnx").string();
    Result c =
        run_tool("compile " + kModels + "gpt2/model.onnx -o " + gpt2_ +
                 " --at attn_preproj,mlp,qkv --groups heads,1,1 --codes 16 -k 2 --seed 4 --tokenizer " + kGpt2Bpe);
    ASSERT_EQ(c.code, 0) << c.out;
    neox_ = (dir_ / "neox.onnx").string();  // records no tokenizer
    c = run_tool("compile " + kModels + "gpt-neox/model.onnx -o " + neox_ + " --at mlp_mid --codes 12 -k 3");
    ASSERT_EQ(c.code, 0) << c.out;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static inline fs::path dir_;
  static inline std::string gpt2_, neox_;
};

TEST_F(SimilarCli, JsonHasTheCosinesAndTheLogitEffect) {
  Json j = parse_json(run_tool("similar " + gpt2_ + " 'layer1.attn_preproj[2]' 9 -n 5 --json"));
  EXPECT_EQ(j.at("site").as_string(), "layer1.attn_preproj[2]");
  EXPECT_EQ(j.at("member").as_int(), 2);
  EXPECT_EQ(j.at("code").as_int(), 9);
  EXPECT_EQ(j.at("num_codes").as_int(), 16);
  EXPECT_EQ(j.at("k").as_int(), 2);

  // The 5 most similar, against every cosine computed here.
  auto g = cb::import_onnx(gpt2_);
  const cb::Tensor& codes = *cb::find_codebook_node(*g, "layer1.attn_preproj")->input(1)->constant;
  std::vector<std::pair<double, int64_t>> want;  // (-cos, id): ascending = most similar first, ties to lower id
  for (int64_t c = 0; c < 16; ++c)
    if (c != 9) want.push_back({-cosine(codes, 2, 9, c), c});
  std::sort(want.begin(), want.end());
  const Json::Array& sim = j.at("similar").as_array();
  ASSERT_EQ(sim.size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(sim[i].at("code").as_int(), want[i].second);
    EXPECT_NEAR(sim[i].at("cosine").as_double(), -want[i].first, 1e-12);
  }

  // The top 10 promoted and suppressed tokens, with their strings.
  const Json& eff = j.at("logit_effect");
  ASSERT_TRUE(eff.at("available").as_bool());
  cb::tools::LogitEffect lib = cb::tools::code_logit_effect(*g, cb::parse_site("layer1.attn_preproj[2]"), 9, 10);
  for (const char* key : {"promoted", "suppressed"}) {
    const Json::Array& toks = eff.at(key).as_array();
    const auto& want_toks = std::string(key) == "promoted" ? lib.promoted : lib.suppressed;
    ASSERT_EQ(toks.size(), 10u) << key;
    for (size_t i = 0; i < 10; ++i) {
      EXPECT_EQ(toks[i].at("token").as_int(), want_toks[i].token);
      EXPECT_NEAR(toks[i].at("logit").as_double(), want_toks[i].logit, 1e-12);
      EXPECT_TRUE(toks[i].at("text").is_string()) << key << " " << i;
      if (i)
        EXPECT_TRUE(std::string(key) == "promoted"
                        ? toks[i].at("logit").as_double() <= toks[i - 1].at("logit").as_double()
                        : toks[i].at("logit").as_double() >= toks[i - 1].at("logit").as_double());
    }
  }
  EXPECT_GT(eff.at("promoted").at(0).at("logit").as_double(), 0);
  EXPECT_LT(eff.at("suppressed").at(0).at("logit").as_double(), 0);
}

TEST_F(SimilarCli, TextShowsCodesCosinesAndTokenStrings) {
  Result r = run_tool("similar " + gpt2_ + " layer0.mlp 3 -n 4");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("layer0.mlp code 3 (16 codes of width 64, k = 2)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("4 most similar codes (cosine of the code vectors):"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("direct effect on the logits of the whole code vector"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("k = 2: a selected code adds 1/2 of it"), std::string::npos) << r.out;
  // The first similar code and its cosine as the JSON has them, to 4 decimals.
  Json j = parse_json(run_tool("similar " + gpt2_ + " layer0.mlp 3 -n 4 --json"));
  char line[64];
  std::snprintf(line, sizeof line, "  %6lld  %.4f\n", (long long)j.at("similar").at(0).at("code").as_int(),
                j.at("similar").at(0).at("cosine").as_double());
  EXPECT_NE(r.out.find(line), std::string::npos) << line << " in: " << r.out;
  // Each promoted token line ends with its quoted string.
  size_t promoted = r.out.find("  promoted:\n"), suppressed = r.out.find("  suppressed:\n");
  ASSERT_NE(promoted, std::string::npos);
  ASSERT_NE(suppressed, std::string::npos);
  std::string block = r.out.substr(promoted, suppressed - promoted);
  std::istringstream lines(block);
  std::string line_text;
  std::getline(lines, line_text);  // "  promoted:"
  int tokens = 0;
  for (; std::getline(lines, line_text); ++tokens) EXPECT_EQ(line_text.back(), '"') << line_text;
  EXPECT_EQ(tokens, 10) << block;
  // "layer0.mlp[0]" names the same single codebook.
  Result member = run_tool("similar " + gpt2_ + " 'layer0.mlp[0]' 3 -n 4");
  EXPECT_EQ(member.out, r.out);
}

TEST_F(SimilarCli, IdsAloneWithoutATokenizerStringsWithOne) {
  Result r = run_tool("similar " + neox_ + " layer1.mlp_mid 0");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find('"'), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("8 most similar codes"), std::string::npos) << r.out;  // -n 8 by default
  Json j = parse_json(run_tool("similar " + neox_ + " layer1.mlp_mid 0 --json"));
  EXPECT_TRUE(j.at("logit_effect").at("promoted").at(0).at("text").is_null());
  Json t = parse_json(run_tool("similar " + neox_ + " layer1.mlp_mid 0 --json --tokenizer " + kGpt2Bpe));
  EXPECT_TRUE(t.at("logit_effect").at("promoted").at(0).at("text").is_string());
}

TEST_F(SimilarCli, QkvHasNoDirectEffect) {
  Result r = run_tool("similar " + gpt2_ + " 'layer0.qkv[1]' 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("direct effect on the logits: not available (layer0.qkv[1]: "), std::string::npos) << r.out;
  Json j = parse_json(run_tool("similar " + gpt2_ + " 'layer0.qkv[1]' 2 --json"));
  EXPECT_FALSE(j.at("logit_effect").at("available").as_bool());
  EXPECT_NE(j.at("logit_effect").at("reason").as_string().find("attention"), std::string::npos);
  EXPECT_EQ(j.at("similar").size(), 8u);
}

TEST_F(SimilarCli, ErrorsNameTheSiteAndCode) {
  expect_error(run_tool("similar " + gpt2_ + " layer0.attn 1"), {"layer0.attn has no codebook", "--at attn"});
  expect_error(run_tool("similar " + gpt2_ + " layer0.mlp 16"), {"layer0.mlp: code 16 out of range", "16 codes"});
  expect_error(run_tool("similar " + gpt2_ + " layer0.mlp -- -1"), {"code -1 out of range"});
  expect_error(run_tool("similar " + gpt2_ + " 'layer0.attn_preproj[4]' 1"),
               {"layer0.attn_preproj[4]", "member 4 out of range", "4 codebooks"});
  expect_error(run_tool("similar " + gpt2_ + " layer0.attn_preproj 1"), {"4 codebooks", "layer0.attn_preproj[0]"});
  expect_error(run_tool("similar " + gpt2_ + " layer7.mlp 1"), {"layer7"});
  expect_error(run_tool("similar " + gpt2_ + " layer0.mlp x"), {"code 'x'"});
  expect_error(run_tool("similar " + gpt2_ + " layer0.mlp"), {"MODEL SITE[g] CODE"});
  expect_error(run_tool("similar " + gpt2_ + " layer0.mlp 1 -n -2"), {"-n: must be >= 0, got -2"});
}

}  // namespace
