// `run --show-codes SITE --scores`: each shown code's score and cosine
// similarity. The scores equal u·C/‖C‖ (−‖u − C‖ for euclidean) and the
// cosines u·C/(‖u‖‖C‖), both recomputed here from the tapped SITE.input and
// the model's codes and LayerNorm parameters (set to non-trivial values, so a
// LayerNorm computed wrongly shows); forced codes carry the kernel's score,
// blocked slots none; the labels say what the numbers are.
#include <gtest/gtest.h>

#include <cmath>

#include "frontend/npy.h"
#include "frontend/onnx_export.h"
#include "frontend/onnx_import.h"
#include "ir/codebook.h"
#include "passes/insert_codebooks.h"
#include "support/json.h"
#include "tests/cli_util.h"

namespace fs = std::filesystem;
using cb::test::Result;
using cb::test::run_json;
using cb::test::run_tool;
using cb::test::temp_dir;

namespace {

const std::string kGpt2 = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";
const char* kTokens = "--tokens 464,268,318,257,92,17";

// One codebook's parameters, read back from the model file the tool ran.
struct Codebook {
  cb::Tensor codes, scale, bias;  // [G, K, Dg], [G, Dg], [G, Dg]
  float epsilon;
};

Codebook codebook_of(const cb::Graph& g, const std::string& site) {
  const cb::Node* n = cb::find_codebook_node(g, site);
  EXPECT_TRUE(n) << site;
  return {*n->input(1)->constant, *n->input(2)->constant, *n->input(3)->constant,
          cb::CodebookAttrs::from_node(*n).epsilon};
}

// u = LayerNorm(x_g) * ln_scale[g] + ln_bias[g] of token `bt`, member `g`.
std::vector<double> u_of(const cb::Tensor& x, int64_t bt, int64_t g, const Codebook& c) {
  const int64_t Dg = c.scale.dim(1), D = x.dim(2);
  const float* xg = x.data<float>() + bt * D + g * Dg;
  double mean = 0, var = 0;
  for (int64_t d = 0; d < Dg; ++d) mean += xg[d] / double(Dg);
  for (int64_t d = 0; d < Dg; ++d) var += (xg[d] - mean) * (xg[d] - mean) / double(Dg);
  std::vector<double> u(static_cast<size_t>(Dg));
  for (int64_t d = 0; d < Dg; ++d)
    u[size_t(d)] = (xg[d] - mean) / std::sqrt(var + c.epsilon) * c.scale.data<float>()[g * Dg + d] +
                   c.bias.data<float>()[g * Dg + d];
  return u;
}

struct Similarity {
  double dot, u_norm, code_norm, distance;
};
Similarity similarity(const std::vector<double>& u, const Codebook& c, int64_t g, int64_t code) {
  const int64_t K = c.codes.dim(1), Dg = c.codes.dim(2);
  const float* cc = c.codes.data<float>() + (g * K + code) * Dg;
  Similarity s{0, 0, 0, 0};
  for (int64_t d = 0; d < Dg; ++d) {
    s.dot += u[size_t(d)] * cc[d];
    s.u_norm += u[size_t(d)] * u[size_t(d)];
    s.code_norm += double(cc[d]) * cc[d];
    s.distance += (u[size_t(d)] - cc[d]) * (u[size_t(d)] - cc[d]);
  }
  s.u_norm = std::sqrt(s.u_norm), s.code_norm = std::sqrt(s.code_norm), s.distance = std::sqrt(s.distance);
  return s;
}

class Scores : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("scores");
    std::string compiled = (dir_ / "compiled.onnx").string();
    Result c = run_tool("compile " + kGpt2 + " -o " + compiled +
                        " --at attn_preproj,mlp --groups heads,1 --codes 32,16 -k 4,2 --seed 3");
    ASSERT_EQ(c.code, 0) << c.out;
    // Non-trivial LayerNorm affines (compile starts them at scale 1, bias 0).
    graph_ = cb::import_onnx(compiled);
    for (cb::Node* n : cb::codebook_nodes(*graph_))
      for (size_t input : {size_t(2), size_t(3)}) {
        cb::Tensor t = *n->input(input)->constant;
        for (int64_t i = 0; i < t.numel(); ++i)
          t.data<float>()[i] = input == 2 ? 0.5f + 0.25f * float((i * 7) % 5) : 0.1f * float((i * 3) % 7 - 3);
        n->input(input)->constant = t;
      }
    cb_ = (dir_ / "cb.onnx").string();
    cb::export_onnx(*graph_, cb_);
    euclid_ = (dir_ / "euclid.onnx").string();
    Result e =
        run_tool("compile " + kGpt2 + " -o " + euclid_ + " --at mlp --codes 16 -k 2 --metric euclidean --seed 3");
    ASSERT_EQ(e.code, 0) << e.out;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static inline fs::path dir_;
  static inline std::string cb_, euclid_;
  static inline std::shared_ptr<cb::Graph> graph_;
};

TEST_F(Scores, CosinesAndScoresEqualAnIndependentComputation) {
  fs::path out = dir_ / "taps";
  Result r = run_tool("run " + cb_ + " " + kTokens +
                      " --show-codes layer0.mlp,layer1.attn_preproj,'layer1.attn_preproj[2]' --scores --json"
                      " --tap layer0.mlp,layer1.attn_preproj --output-dir " +
                      out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  cb::Json j = run_json(r.out);
  struct Shown {
    std::string name, site;
    int64_t member;  // -1: all members
  };
  int checked = 0;
  for (const Shown& s : {Shown{"layer0.mlp", "layer0.mlp", -1}, Shown{"layer1.attn_preproj", "layer1.attn_preproj", -1},
                         Shown{"layer1.attn_preproj[2]", "layer1.attn_preproj", 2}}) {
    Codebook c = codebook_of(*graph_, s.site);
    cb::Tensor x = cb::npy_read((out / (s.site + ".input.npy")).string());
    const cb::Json &codes = j.at("codes").at(s.name), &scores = j.at("scores").at(s.name),
                   &cosines = j.at("cosines").at(s.name);
    ASSERT_EQ(codes.as_array().size(), 6u) << s.name;
    for (int64_t t = 0; t < 6; ++t) {
      ASSERT_EQ(codes.at(size_t(t)).as_array().size(), s.member < 0 ? size_t(c.codes.dim(0)) : 1u);
      for (size_t m = 0; m < codes.at(size_t(t)).as_array().size(); ++m) {
        int64_t g = s.member < 0 ? int64_t(m) : s.member;
        std::vector<double> u = u_of(x, t, g, c);
        for (size_t slot = 0; slot < codes.at(size_t(t)).at(m).as_array().size(); ++slot) {
          Similarity sim = similarity(u, c, g, codes.at(size_t(t)).at(m).at(slot).as_int());
          double score = scores.at(size_t(t)).at(m).at(slot).as_double();
          double cos = cosines.at(size_t(t)).at(m).at(slot).as_double();
          EXPECT_GE(cos, -1.0);
          EXPECT_LE(cos, 1.0);
          EXPECT_NEAR(score, sim.dot / sim.code_norm, 1e-4 * sim.u_norm) << s.name << " pos " << t;
          EXPECT_NEAR(cos, sim.dot / (sim.u_norm * sim.code_norm), 1e-4) << s.name << " pos " << t;
          if (std::abs(cos) > 1e-2) EXPECT_NEAR(score / cos, sim.u_norm, 1e-3 * sim.u_norm);  // score = ‖u‖ cos
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 6 * (2 + 4 * 4 + 4));  // 6 tokens x (mlp k = 2, 4 heads x k = 4, one head)
}

TEST_F(Scores, TextIsLabelledAndForcedCodesCarryTheKernelsScore) {
  Result plain = run_tool("run " + cb_ + " " + kTokens + " --show-codes layer0.mlp --scores");
  ASSERT_EQ(plain.code, 0) << plain.out;
  EXPECT_NE(plain.out.find("score = u·C/‖C‖ (u: LayerNorm'd input; scales with ‖u‖), cos = cosine similarity"),
            std::string::npos)
      << plain.out;
  EXPECT_NE(plain.out.find(", cos "), std::string::npos) << plain.out;

  // Code 5 forced into slot 0 at position 1, slot 1 blocked at position 2; scores of the intervened run.
  const std::string force = " --force 'layer0.mlp:5@1#0' --force 'layer0.mlp:-1@2#1'";
  Result text = run_tool("run " + cb_ + " " + kTokens + " --show-codes layer0.mlp --scores --compare" + force);
  ASSERT_EQ(text.code, 0) << text.out;
  EXPECT_NE(text.out.find("; scores of the run with interventions"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(" -1 (-)  *"), std::string::npos) << text.out;

  fs::path out = dir_ / "forced";
  Result r = run_tool("run " + cb_ + " " + kTokens + " --show-codes layer0.mlp --scores --json --compare" + force +
                      " --tap layer0.mlp --output-dir " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  cb::Json j = run_json(r.out);
  const cb::Json &codes = j.at("codes").at("layer0.mlp"), &scores = j.at("scores").at("layer0.mlp");
  ASSERT_EQ(codes.at(1).at(0).at(0).as_int(), 5);
  ASSERT_EQ(codes.at(2).at(0).at(1).as_int(), -1);
  EXPECT_TRUE(scores.at(2).at(0).at(1).is_null());
  EXPECT_TRUE(j.at("cosines").at("layer0.mlp").at(2).at(0).at(1).is_null());
  Codebook c = codebook_of(*graph_, "layer0.mlp");
  cb::Tensor x = cb::npy_read((out / "layer0.mlp.input.npy").string());
  Similarity forced = similarity(u_of(x, 1, 0, c), c, 0, 5);
  EXPECT_NEAR(scores.at(1).at(0).at(0).as_double(), forced.dot / forced.code_norm, 1e-4 * forced.u_norm);
}

TEST_F(Scores, EuclideanSitesShowTheDistanceAndNoCosine) {
  fs::path out = dir_ / "euclid";
  Result text = run_tool("run " + euclid_ + " " + kTokens + " --show-codes layer0.mlp --scores");
  ASSERT_EQ(text.code, 0) << text.out;
  EXPECT_NE(text.out.find("score = −‖u − C‖"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find(", cos "), std::string::npos) << text.out;

  Result r = run_tool("run " + euclid_ + " " + kTokens + " --show-codes layer0.mlp --scores --json --tap layer0.mlp " +
                      "--output-dir " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  cb::Json j = run_json(r.out);
  EXPECT_TRUE(j.at("cosines").at("layer0.mlp").is_null());
  Codebook c = codebook_of(*cb::import_onnx(euclid_), "layer0.mlp");
  cb::Tensor x = cb::npy_read((out / "layer0.mlp.input.npy").string());
  for (size_t t = 0; t < 6; ++t)
    for (size_t slot = 0; slot < 2; ++slot) {
      Similarity sim =
          similarity(u_of(x, int64_t(t), 0, c), c, 0, j.at("codes").at("layer0.mlp").at(t).at(0).at(slot).as_int());
      EXPECT_NEAR(j.at("scores").at("layer0.mlp").at(t).at(0).at(slot).as_double(), -sim.distance, 1e-4 * sim.distance);
    }
}

TEST_F(Scores, ScoresWithoutShowCodesIsAnError) {
  Result r = run_tool("run " + cb_ + " " + kTokens + " --scores");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("error: --scores: give the sites with --show-codes SITE"), std::string::npos) << r.out;
}

}  // namespace
