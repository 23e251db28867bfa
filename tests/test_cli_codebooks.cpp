// End-to-end tests of the codebook workflow from the command line on the
// tiny GPT-2 / GPT-Neo / GPT-NeoX models: compile at every placement, run and
// show codes, ablate and force codes and see the next-token distribution move
// (or not), tap activations to .npy, and bad input named clearly.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>

#include "frontend/npy.h"
#include "tests/cli_util.h"

namespace fs = std::filesystem;
using cb::test::Result;
using cb::test::run_tool;
using cb::test::temp_dir;

namespace {

std::string model(const std::string& name) {
  return std::string(CB_SOURCE_DIR) + "/tests/models/" + name + "/model.onnx";
}

const char* kTokens = "--tokens 464,268,318,257,92,17";

double jsd_of(const std::string& json) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex(R"("jsd": ([0-9.eE+-]+))"))) return -1;
  return std::stod(m[1]);
}

class EveryPlacementCli : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(EveryPlacementCli, CompileRunShowCodes) {
  auto [name, placement] = GetParam();
  fs::path dir = temp_dir("cb_" + name + "_" + placement);
  std::string out = (dir / "cb.onnx").string();
  Result c = run_tool("compile " + model(name) + " -o " + out + " --at " + placement + " --codes 24 -k 3 --seed 1");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_NE(c.out.find("layer1." + placement), std::string::npos) << c.out;
  Result r = run_tool("run " + out + " " + kTokens + " --show-codes layer1." + placement);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("codes at layer1." + placement), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("next tokens:"), std::string::npos) << r.out;
  // The inspect of a compiled model lists its codebooks.
  Result i = run_tool("inspect " + out);
  EXPECT_EQ(i.code, 0) << i.out;
  EXPECT_NE(i.out.find("codebook.Codebook"), std::string::npos) << i.out;
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(TinyModels, EveryPlacementCli,
                         ::testing::Combine(::testing::Values("gpt2", "gpt-neo", "gpt-neox"),
                                            ::testing::Values("attn_preproj", "attn", "mlp", "mlp_mid", "qkv",
                                                              "transformer_block", "attn_plus_mlp")),
                         [](const auto& p) {
                           std::string s = std::get<0>(p.param) + "_" + std::get<1>(p.param);
                           for (char& ch : s)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return s;
                         });

class Interventions : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("interventions");
    cb_ = (dir_ / "cb.onnx").string();
    Result c = run_tool("compile " + model("gpt2") + " -o " + cb_ +
                        " --at attn_preproj,mlp --groups heads,1 --codes 32,16 -k 4,2 --seed 3");
    ASSERT_EQ(c.code, 0) << c.out;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static Result run(const std::string& args) { return run_tool("run " + cb_ + " " + kTokens + " " + args); }
  static inline fs::path dir_;
  static inline std::string cb_;
};

TEST_F(Interventions, ForcingCodesMovesTheDistribution) {
  Result r = run("--force layer0.mlp:1,2 --compare --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_GT(jsd_of(r.out), 1e-6) << r.out;
  EXPECT_NE(r.out.find("\"clean_next\""), std::string::npos) << r.out;
}

TEST_F(Interventions, AblatingACodeThatNeverFiresChangesNothing) {
  // Find the codes layer0.mlp uses, then ablate one it does not use.
  Result shown = run("--show-codes layer0.mlp --json");
  ASSERT_EQ(shown.code, 0) << shown.out;
  std::set<int> used;
  std::string codes = shown.out.substr(shown.out.find("\"layer0.mlp\"") + 12);
  static const std::regex number(R"(-?\d+)");
  for (std::sregex_iterator it(codes.begin(), codes.end(), number), end; it != end; ++it)
    used.insert(std::stoi((*it)[0]));
  int unused = 0;
  while (used.count(unused)) ++unused;
  ASSERT_LT(unused, 16);
  Result r = run("--ablate layer0.mlp:" + std::to_string(unused) + " --compare --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(jsd_of(r.out), 0.0) << r.out;
  // Ablating the best code of position 0 changes what layer 1 attends to.
  int first = std::stoi(codes.substr(codes.find("[[[") + 3));
  Result r2 = run("--ablate layer0.mlp:" + std::to_string(first) + " --compare --json");
  EXPECT_GT(jsd_of(r2.out), 0.0) << r2.out;
}

TEST_F(Interventions, ZeroModeAndSlotsShowAsMinusOne) {
  Result r = run("--disable-slot layer0.mlp:0 --show-codes layer0.mlp --json");
  ASSERT_EQ(r.code, 0) << r.out;
  std::string codes = r.out.substr(r.out.find("\"layer0.mlp\""));
  EXPECT_EQ(codes.find("[[[-1, "), codes.find("[[[")) << r.out;  // slot 0 of position 0 is -1
  Result z = run("--ablate-mode zero --disable-topk 'layer0.attn_preproj[1]:4@0' --show-codes layer0.attn_preproj");
  ASSERT_EQ(z.code, 0) << z.out;
  EXPECT_NE(z.out.find("[1] -1 -1 -1 -1"), std::string::npos) << z.out;
}

TEST_F(Interventions, NegativeLayersCountFromTheLast) {
  Result a = run("--show-codes layer-1.mlp --json");
  Result b = run("--show-codes layer1.mlp --json");
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(a.out, b.out);
}

TEST_F(Interventions, TapsWriteNpyFiles) {
  fs::path out = dir_ / "taps";
  Result r = run("--tap layer1.mlp --output-dir " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  cb::Tensor ids = cb::npy_read((out / "layer1.mlp.ids.npy").string());
  EXPECT_EQ(ids.dims(), (std::vector<int64_t>{1, 6, 1, 2}));
  cb::Tensor x = cb::npy_read((out / "layer1.mlp.input.npy").string());
  EXPECT_EQ(x.dims(), (std::vector<int64_t>{1, 6, 64}));
  EXPECT_TRUE(fs::exists(out / "layer1.mlp.scores.npy"));
  EXPECT_TRUE(fs::exists(out / "layer1.mlp.output.npy"));
}

TEST_F(Interventions, BadInterventionsAreNamed) {
  for (auto [args, needle] : std::vector<std::pair<std::string, std::string>>{
           {"--ablate layer0.attn:1", "has no codebook"},
           {"--ablate layer0.mlp:77", "code 77"},
           {"--force layer0.mlp:1#9", "slot 9"},
           {"--ablate layer7.mlp:1", "layers 0..1"},
           {"--ablate-mode sideways", "skip or zero"},
           {"--show-codes layer0.nothing", "bad site"},
           {"--show-codes layer0.attn", "has no codebook"},
       }) {
    Result r = run(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos) << args << "\n" << r.out;
  }
}

TEST(CompileCli, BadOptionsAreNamed) {
  fs::path dir = temp_dir("compile_bad");
  std::string out = (dir / "x.onnx").string();
  for (auto [args, needle] : std::vector<std::pair<std::string, std::string>>{
           {"--at nowhere", "nowhere"},
           {"--at mlp --layers 5", "layer 5 does not exist"},
           {"--at mlp --groups 5", "do not divide"},
           {"--at mlp,attn --codes 1,2,3", "one per placement"},
           {"--at mlp --metric manhattan", "manhattan"},
       }) {
    Result r = run_tool("compile " + model("gpt2") + " -o " + out + " " + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos) << args << "\n" << r.out;
    EXPECT_FALSE(fs::exists(out)) << args;
  }
  fs::remove_all(dir);
}

}  // namespace
