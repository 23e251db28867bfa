// Sites, taps and interventions from the command line: every site `inspect`
// lists can be tapped, TransformerLens names are aliases of the same values,
// attention patterns are tappable, --show-codes takes lists, `all` and group
// members, errors name the option given, interventions without effect are
// warned about, and forcing by state (state-of:, --force-file, the command
// `fsm-codes` prints) equals forcing the same codes by number, bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "frontend/npy.h"
#include "support/json.h"
#include "tests/cli_util.h"

namespace fs = std::filesystem;
using cb::test::file_bytes;
using cb::test::Result;
using cb::test::run_json;
using cb::test::run_tool;
using cb::test::temp_dir;

namespace {

const std::string kGpt2 = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";
const char* kTokens = "--tokens 464,268,318,257,92,17";

class Sites : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("sites");
    cb_ = (dir_ / "cb.onnx").string();
    Result c = run_tool("compile " + kGpt2 + " -o " + cb_ +
                        " --at attn_preproj,mlp --groups heads,1 --codes 32,16 -k 4,2 --seed 3");
    ASSERT_EQ(c.code, 0) << c.out;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static Result run(const std::string& model, const std::string& args) {
    return run_tool("run " + model + " " + kTokens + " " + args);
  }
  static Result run(const std::string& args) { return run(cb_, args); }
  static inline fs::path dir_;
  static inline std::string cb_;
};

TEST_F(Sites, EverySiteInspectListsCanBeTapped) {
  std::string neo = std::string(CB_SOURCE_DIR) + "/tests/models/gpt-neo/model.onnx";  // separate q, k, v
  for (const std::string& model : {kGpt2, cb_, neo}) {
    Result inspect = run_tool("inspect " + model);
    ASSERT_EQ(inspect.code, 0) << inspect.out;
    std::set<std::string> sites;
    static const std::regex line(R"(\n  (layer\d+\.[a-z_]+(\[[qkv]\])?) )");
    for (std::sregex_iterator it(inspect.out.begin(), inspect.out.end(), line), end; it != end; ++it)
      sites.insert((*it)[1]);
    ASSERT_EQ(sites.size(), model == neo ? 20u : 16u) << inspect.out;  // 2 layers x (input + 7 placements)
    std::string list;                                                  // all at once: --tap takes a comma list
    for (const std::string& site : sites) list += (list.empty() ? "" : ",") + site;
    fs::path out = dir_ / ("tap_all_" + fs::path(model).parent_path().filename().string());
    Result r = run(model, "--tap '" + list + "' --output-dir " + out.string());
    ASSERT_EQ(r.code, 0) << list << "\n" << r.out;
    for (const std::string& site : sites) {
      std::string file = std::regex_replace(site, std::regex(R"([\[\]])"), "_");
      bool written = fs::exists(out / (file + ".npy")) || fs::exists(out / (file + ".input.npy"));
      EXPECT_TRUE(written) << site << "\n" << r.out;
    }
  }
  Result fused = run(kGpt2, "--tap 'layer0.qkv[k]'");
  EXPECT_EQ(fused.code, 2) << fused.out;
  EXPECT_NE(fused.out.find("one fused q, k, v projection; tap layer0.qkv"), std::string::npos) << fused.out;
}

TEST_F(Sites, AttentionPatternsAreTappable) {
  fs::path out = dir_ / "pattern";
  Result r = run(kGpt2, "--tap layer1.attn_pattern,layer0.attn_pattern --output-dir " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  cb::Tensor p = cb::npy_read((out / "layer1.attn_pattern.npy").string());
  ASSERT_EQ(p.dims(), (std::vector<int64_t>{1, 4, 6, 6}));
  for (int64_t row = 0; row < 4 * 6; ++row) {  // causal rows of probabilities
    double sum = 0;
    for (int64_t j = 0; j < 6; ++j) {
      sum += p.data<float>()[row * 6 + j];
      if (j > row % 6) EXPECT_EQ(p.data<float>()[row * 6 + j], 0.0f) << "a later token is attended";
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
  }
  EXPECT_TRUE(fs::exists(out / "layer0.attn_pattern.npy"));
}

TEST_F(Sites, TransformerLensNamesAreAliases) {
  for (auto [lens, ours] : std::vector<std::pair<std::string, std::string>>{
           {"blocks.1.hook_resid_pre", "layer1.input"},
           {"blocks.1.hook_resid_mid", "layer1.resid_mid"},
           {"blocks.0.hook_resid_post", "layer0.transformer_block"},
           {"blocks.1.attn.hook_z", "layer1.attn_preproj"},
           {"blocks.0.hook_attn_out", "layer0.attn"},
           {"blocks.1.mlp.hook_post", "layer1.mlp_mid"},
           {"blocks.-1.hook_mlp_out", "layer1.mlp"},
           {"blocks.0.attn.hook_pattern", "layer0.attn_pattern"},
       }) {
    fs::path a = dir_ / ("lens_" + lens), b = dir_ / ("ours_" + lens);
    Result ra = run(kGpt2, "--tap " + lens + " --output-dir " + a.string());
    Result rb = run(kGpt2, "--tap " + ours + " --output-dir " + b.string());
    ASSERT_EQ(ra.code, 0) << lens << "\n" << ra.out;
    ASSERT_EQ(rb.code, 0) << ours << "\n" << rb.out;
    size_t files = 0;
    for (auto& f : fs::directory_iterator(b)) {
      ++files;
      EXPECT_EQ(file_bytes(f.path()), file_bytes(a / f.path().filename())) << lens << " vs " << ours;
    }
    EXPECT_EQ(files, size_t(std::distance(fs::directory_iterator(a), fs::directory_iterator{})));
    EXPECT_TRUE(fs::exists(b / (ours + ".npy")) || fs::exists(b / (ours + ".input.npy"))) << ours;
  }
  // The residual stream: resid_mid = resid_pre + attn_out, resid_post of
  // layer 0 = resid_pre of layer 1.
  fs::path d = dir_ / "resid";
  Result r = run(kGpt2,
                 "--tap blocks.1.hook_resid_pre,blocks.1.hook_resid_mid,blocks.1.hook_attn_out,"
                 "blocks.0.hook_resid_post --output-dir " +
                     d.string());
  ASSERT_EQ(r.code, 0) << r.out;
  cb::Tensor pre = cb::npy_read((d / "layer1.input.npy").string());
  cb::Tensor mid = cb::npy_read((d / "layer1.resid_mid.npy").string());
  cb::Tensor attn = cb::npy_read((d / "layer1.attn.input.npy").string());
  cb::Tensor post0 = cb::npy_read((d / "layer0.transformer_block.input.npy").string());
  ASSERT_EQ(mid.numel(), pre.numel());
  for (int64_t i = 0; i < pre.numel(); ++i) {
    EXPECT_EQ(mid.data<float>()[i], pre.data<float>()[i] + attn.data<float>()[i]);
    EXPECT_EQ(post0.data<float>()[i], pre.data<float>()[i]);
  }
}

TEST_F(Sites, ShowCodesTakesListsAllAndMembers) {
  cb::Json all = run_json(run("--show-codes all --json").out);
  ASSERT_EQ(all.at("codes").size(), 4u) << all.dump();
  cb::Json two = run_json(run("--show-codes layer1.mlp,layer0.mlp --show-codes blocks.0.attn.hook_z --json").out);
  EXPECT_EQ(two.at("codes").size(), 3u) << two.dump();
  EXPECT_EQ(two.at("codes").at("layer1.mlp"), all.at("codes").at("layer1.mlp"));
  EXPECT_EQ(two.at("codes").at("layer0.attn_preproj"), all.at("codes").at("layer0.attn_preproj"));
  // A member shows its own codes: [T][1][k], the site's [T][G][k] at member 2.
  cb::Json member = run_json(run("--show-codes 'layer1.attn_preproj[2]' --json").out);
  const cb::Json& whole = all.at("codes").at("layer1.attn_preproj");
  const cb::Json& m = member.at("codes").at("layer1.attn_preproj[2]");
  ASSERT_EQ(m.size(), 6u) << member.dump();
  for (size_t t = 0; t < 6; ++t) {
    ASSERT_EQ(m.at(t).size(), 1u);
    EXPECT_EQ(m.at(t).at(0), whole.at(t).at(2));
  }
  Result text = run("--show-codes layer1_attn_preproj_gcb2");
  ASSERT_EQ(text.code, 0) << text.out;
  EXPECT_NE(text.out.find("codes at layer1.attn_preproj[2] (1 codebook, k = 4)"), std::string::npos) << text.out;
}

TEST_F(Sites, ErrorsNameTheOptionGiven) {
  for (auto [args, needles] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"--show-codes 'layer1.attn_preproj[9]'", {"--show-codes", "member 9", "has 4 codebooks"}},
           {"--show-codes layer0.nothing", {"--show-codes", "bad site 'layer0.nothing'"}},
           {"--show-codes layer0.input", {"--show-codes layer0.input", "use --tap"}},
           {"--show-codes layer0.attn", {"--show-codes layer0.attn", "has no codebook"}},
           {"--ablate layer0.nothing:1", {"--ablate 'layer0.nothing:1'", "bad site"}},
           {"--force layer0.input:1", {"--force 'layer0.input:1'", "can only be tapped"}},
           {"--tap 'layer0.mlp[1]'", {"--tap layer0.mlp[1]", "without [member]"}},
           {"--tap blocks.0.hook_embed", {"--tap", "hook_embed", "no counterpart"}},
           {"--tap layer0.nothing", {"--tap", "bad site"}},
       }) {
    Result r = run(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    for (const std::string& n : needles) EXPECT_NE(r.out.find(n), std::string::npos) << args << "\n" << r.out;
    EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
  }
}

TEST_F(Sites, InterventionsWithoutEffectAreWarned) {
  cb::Json shown = run_json(run("--show-codes layer0.mlp --json").out);
  std::set<int64_t> used;
  for (auto& pos : shown.at("codes").at("layer0.mlp").as_array())
    for (auto& c : pos.at(0).as_array()) used.insert(c.as_int());
  int64_t unused = 0;
  while (used.count(unused)) ++unused;
  ASSERT_LT(unused, 16);
  int64_t first = shown.at("codes").at("layer0.mlp").at(0).at(0).at(0).as_int();

  Result never = run("--ablate layer0.mlp:" + std::to_string(unused) + " --json");
  ASSERT_EQ(never.code, 0) << never.out;
  EXPECT_NE(never.out.find("warning: --ablate layer0.mlp:" + std::to_string(unused) + ": code " +
                           std::to_string(unused) + " is not selected at any position"),
            std::string::npos)
      << never.out;
  // A position past the sequence is an error (tests/test_cli_options.cpp), not a warning.
  Result past = run("--ablate layer0.mlp:" + std::to_string(first) + "@0,9 --compare --json");
  EXPECT_EQ(past.code, 2) << past.out;
  EXPECT_NE(past.out.find("position 9 is past the sequence of 6 tokens"), std::string::npos) << past.out;
  Result effective = run("--ablate layer0.mlp:" + std::to_string(first) + "@0 --compare --json");
  EXPECT_EQ(effective.out.find("warning"), std::string::npos) << effective.out;
  Result both = run("--ablate layer0.mlp:" + std::to_string(unused) + "," + std::to_string(first) + "@0 --json");
  EXPECT_NE(both.out.find("code " + std::to_string(unused) + " is not selected at position 0 "), std::string::npos)
      << both.out;
  EXPECT_EQ(both.out.find("code " + std::to_string(first) + " is not"), std::string::npos) << both.out;
  // Forcing the codes already there changes nothing, and says so.
  cb::Json at0 = shown.at("codes").at("layer0.mlp").at(0).at(0);
  Result same = run("--force layer0.mlp:" + std::to_string(at0.at(0).as_int()) + "," +
                    std::to_string(at0.at(1).as_int()) + "@0#0 --compare --json");
  EXPECT_NE(same.out.find("already has these codes"), std::string::npos) << same.out;
  EXPECT_EQ(run_json(same.out).at("jsd").as_double(), 0.0) << same.out;
}

TEST_F(Sites, ForcingByStateAndByFileEqualsForcingByFlags) {
  // The codes the prompt 17,92,257 selects at its last position.
  Result prompt = run_tool("run " + cb_ + " --tokens 17,92,257 --show-codes all --json");
  ASSERT_EQ(prompt.code, 0) << prompt.out;
  cb::Json codes = run_json(prompt.out).at("codes");
  auto last = [&](const std::string& site, size_t g) {
    std::string s;
    for (auto& c : codes.at(site).at(2).at(g).as_array()) s += (s.empty() ? "" : ",") + std::to_string(c.as_int());
    return s;
  };
  std::string flags = "--force layer0.mlp:" + last("layer0.mlp", 0) + "@3,5";
  for (size_t g = 0; g < 4; ++g)
    flags += " --force 'layer1.attn_preproj[" + std::to_string(g) + "]:" + last("layer1.attn_preproj", g) + "@-1'";
  Result by_flags = run(flags + " --compare --json");
  ASSERT_EQ(by_flags.code, 0) << by_flags.out;
  EXPECT_GT(run_json(by_flags.out).at("jsd").as_double(), 0.0) << by_flags.out;

  Result by_state =
      run("--force layer0.mlp:state-of:17,92,257@3,5 --force layer1.attn_preproj:state-of:17,92,257@-1"
          " --compare --json");
  ASSERT_EQ(by_state.code, 0) << by_state.out;
  EXPECT_EQ(run_json(by_state.out).dump(), run_json(by_flags.out).dump());

  fs::path file = dir_ / "force.json";
  std::ofstream(file) << R"({"force": [{"site": "layer0.mlp", "positions": [3, 5], "codes": [)" +
                             last("layer0.mlp", 0) +
                             R"(]},
    {"site": "blocks.1.attn.hook_z", "positions": [-1], "state_of": [17, 92, 257]}]})";
  Result by_file = run("--force-file " + file.string() + " --compare --json");
  ASSERT_EQ(by_file.code, 0) << by_file.out;
  EXPECT_EQ(run_json(by_file.out).dump(), run_json(by_flags.out).dump());

  // export bakes the same forces in: the exported model predicts as the run.
  fs::path exported = dir_ / "steered.onnx";
  Result e = run_tool("export " + cb_ + " -o " + exported.string() + " --force-file " + file.string() +
                      " --force layer0.mlp:state-of:17,92,257@3,5");
  ASSERT_EQ(e.code, 0) << e.out;
  Result steered = run(exported.string(), "--json");
  ASSERT_EQ(steered.code, 0) << steered.out;
  Result twice = run("--force-file " + file.string() + " --force layer0.mlp:state-of:17,92,257@3,5 --json");
  EXPECT_EQ(run_json(steered.out).at("next").dump(), run_json(twice.out).at("next").dump());

  std::ofstream(dir_ / "bad.json") << R"({"force": [{"site": "layer0.mlp", "codes": [1], "slots": 0}]})";
  Result bad = run("--force-file " + (dir_ / "bad.json").string());
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("entry 0: unknown key 'slots'"), std::string::npos) << bad.out;
}

// fsm-codes prints the codes of state b and a `codebook run` command that
// reproduces its example's forced row.
TEST(SitesFsm, FsmCodesPrintsAReproducibleSteeringCommand) {
  fs::path dir = temp_dir("sites_fsm") / "run";
  Result t = run_tool("train " + std::string(CB_SOURCE_DIR) + "/configs/test_fsm.yaml --output " + dir.string());
  ASSERT_EQ(t.code, 0) << t.out;
  Result f = run_tool("fsm-codes " + dir.string() + " --site 'layer1.attn_preproj[0]' --pairs 2 --threads 1");
  ASSERT_EQ(f.code, 0) << f.out;
  EXPECT_NE(f.out.find("layer1.attn_preproj: the states"), std::string::npos) << f.out;
  EXPECT_NE(f.out.find("the codes of state b"), std::string::npos) << f.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(f.out, m, std::regex(R"(\n  codebook run (.*)\n)"))) << f.out;
  std::string command = m[1];
  EXPECT_NE(command.find(":state-of:"), std::string::npos) << command;
  // The example's forced row: its most likely next token and probability.
  std::smatch row;
  ASSERT_TRUE(std::regex_search(f.out, row, std::regex(R"(a, b's codes forced\s+(\S+) \(([0-9.]+)\))"))) << f.out;
  Result r = run_tool("run " + command + " --json");
  ASSERT_EQ(r.code, 0) << command << "\n" << r.out;
  const cb::Json steered = run_json(r.out);
  const cb::Json& top = steered.at("next").at(0);
  EXPECT_EQ(std::to_string(top.at("token").as_int()), std::string(row[1])) << r.out << "\n" << f.out;
  EXPECT_NEAR(top.at("p").as_double(), std::stod(row[2]), 0.006) << r.out << "\n" << f.out;
  Result bad = run_tool("fsm-codes " + dir.string() + " --site 'layer1.attn_preproj[3]' --pairs 0");
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("--site layer1.attn_preproj[3]: member 3 out of range"), std::string::npos) << bad.out;
  Result wrong = run_tool("fsm-codes " + dir.string() + " --site layer0.nothing --pairs 0");
  EXPECT_EQ(wrong.code, 2) << wrong.out;
  EXPECT_NE(wrong.out.find("--site: bad site 'layer0.nothing'"), std::string::npos) << wrong.out;
  fs::remove_all(dir.parent_path());
}

}  // namespace
