// Text in and out of the command line: `run --prompt` with the tokenizer a
// model or its training run records (or --tokenizer, TokFSM digits included),
// `tokenize` output that pastes into --tokens, token strings and probabilities
// beside ids, --outputs selecting what --output-dir writes, and --compare
// showing codes side by side with the JSD in bits per position.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/cli_util.h"

namespace fs = std::filesystem;
using cb::test::Result;
using cb::test::run_tool;
using cb::test::temp_dir;

namespace {

const std::string kModel = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";
const std::string kGpt2Bpe = std::string(CB_SOURCE_DIR) + "/../shared/data/gpt2-bpe";

// The JSON field's text after "name": up to the matching bracket or the next comma.
std::string json_field(const std::string& json, const std::string& name) {
  size_t at = json.find("\"" + name + "\": ");
  if (at == std::string::npos) return "";
  at += name.size() + 4;
  if (json[at] == '[' || json[at] == '{') {
    int depth = 0;
    for (size_t i = at; i < json.size(); ++i) {
      depth += json[i] == '[' || json[i] == '{';
      depth -= json[i] == ']' || json[i] == '}';
      if (depth == 0) return json.substr(at, i + 1 - at);
    }
  }
  return json.substr(at, json.find_first_of(",}", at) - at);
}

Result tokenize(const fs::path& dir, const std::string& args, const std::string& input) {
  { std::ofstream(dir / "in.txt", std::ios::binary) << input; }
  return run_tool("tokenize --tokenizer " + kGpt2Bpe + " " + args + " < " + (dir / "in.txt").string());
}

void expect_error(const Result& r, const std::vector<std::string>& parts) {
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
  for (auto& p : parts) EXPECT_NE(r.out.find(p), std::string::npos) << p << " in: " << r.out;
}

class TextCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("text");
    cb_ = (dir_ / "cb.onnx").string();
    Result c =
        run_tool("compile " + kModel + " -o " + cb_ + " --at mlp --codes 16 -k 2 --seed 3 --tokenizer " + kGpt2Bpe);
    ASSERT_EQ(c.code, 0) << c.out;
    ASSERT_NE(c.out.find("tokenizer: "), std::string::npos) << c.out;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static inline fs::path dir_;
  static inline std::string cb_;
};

TEST_F(TextCli, TokenizeOutputPastesIntoTokens) {
  // `echo "a b" |`: the trailing newline is dropped unless asked for.
  Result t = tokenize(dir_, "", "a b\n");
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_EQ(t.out, "64,275\n");
  EXPECT_EQ(tokenize(dir_, "--keep-newline", "a b\n").out, "64,275,198\n");
  EXPECT_EQ(tokenize(dir_, "--decode", "64,275, 198").out, "a b\n");
  // The ids feed --tokens as they are, and --prompt gives the same run.
  std::string ids = t.out.substr(0, t.out.size() - 1);
  Result by_ids = run_tool("run " + cb_ + " --tokens " + ids + " --json");
  Result by_text = run_tool("run " + cb_ + " --prompt 'a b' --json");
  ASSERT_EQ(by_ids.code, 0) << by_ids.out;
  ASSERT_EQ(by_text.code, 0) << by_text.out;
  EXPECT_EQ(json_field(by_text.out, "tokens"), "[64, 275]");
  EXPECT_EQ(by_ids.out, by_text.out);
  EXPECT_EQ(json_field(by_text.out, "token_texts"), "[\"a\", \" b\"]");
}

TEST_F(TextCli, PromptNeedsATokenizer) {
  // The tiny model records none: --prompt says what to pass; --tokenizer works.
  expect_error(run_tool("run " + kModel + " --prompt 'a b'"), {"--prompt", "records no tokenizer", "--tokenizer"});
  Result r = run_tool("run " + kModel + " --prompt 'a b' --tokenizer " + kGpt2Bpe + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json_field(r.out, "tokens"), "[64, 275]");
  expect_error(run_tool("run " + kModel + " --prompt x --tokenizer /nonexistent"), {"/nonexistent"});
  expect_error(run_tool("run " + cb_ + " --prompt x --tokens 1"), {"--tokens or --prompt"});
  // A token the model's vocabulary (500) lacks is named with its position.
  expect_error(run_tool("run " + cb_ + " --prompt 'a hello'"), {"token id 23748", "position 1"});
}

TEST_F(TextCli, RunFoldersRecordTheirTokenizer) {
  // A `codebook train` output folder: model.onnx beside trainer_state.json.
  auto make_run = [&](const std::string& name, const std::string& config) {
    fs::path run = dir_ / name;
    fs::create_directories(run);
    fs::copy_file(cb_, run / "model.onnx", fs::copy_options::overwrite_existing);
    std::ofstream(run / "trainer_state.json") << "{\"step\": 1, \"config\": " << config << "}";
    return run.string();
  };
  std::string fsm =
      make_run("fsm_run", R"({"dataset_args": {"kind": "tokfsm"}, "fsm_args": {"representation_base": 10}})");
  Result r = run_tool("run " + fsm + " --prompt 4312 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json_field(r.out, "tokens"), "[10, 4, 3, 1, 2]");
  EXPECT_EQ(json_field(r.out, "token_texts"), R"(["<|endoftext|>", "4", "3", "1", "2"])");
  // The text form shows TokFSM digits as digits.
  r = run_tool("run " + fsm + "/model.onnx --prompt 43 --show-codes layer0.mlp");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(token +4 "4")"))) << r.out;
  expect_error(run_tool("run " + fsm + " --prompt 43a"), {"character 2", "'a'", "base-10 digit"});
  // --tokenizer tokfsm:BASE works on any model.
  r = run_tool("run " + kModel + " --prompt 1b --tokenizer tokfsm:16 --json");
  EXPECT_EQ(json_field(r.out, "tokens"), "[16, 1, 11]") << r.out;

  std::string text = make_run("text_run", R"({"dataset_args": {"kind": "text", "tokenizer": ")" + kGpt2Bpe + "\"}}");
  r = run_tool("run " + text + " --prompt 'a b' --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json_field(r.out, "tokens"), "[64, 275]");
  // Compiling a run's model keeps the run's tokenizer in the metadata.
  fs::path plain = dir_ / "plain_run";
  fs::create_directories(plain);
  fs::copy_file(kModel, plain / "model.onnx", fs::copy_options::overwrite_existing);
  std::ofstream(plain / "trainer_state.json") << R"({"step": 1, "config": {"dataset_args": {"kind": "tokfsm"}}})";
  std::string compiled = (dir_ / "from_run.onnx").string();
  Result c = run_tool("compile " + (plain / "model.onnx").string() + " -o " + compiled + " --at mlp --codes 8 -k 1");
  ASSERT_EQ(c.code, 0) << c.out;
  EXPECT_NE(c.out.find("tokenizer: tokfsm:10"), std::string::npos) << c.out;
  r = run_tool("run " + compiled + " --prompt 7 --json");
  EXPECT_EQ(json_field(r.out, "tokens"), "[10, 7]") << r.out;
}

TEST_F(TextCli, NextTokensShowStringsAndSignificantDigits) {
  Result r = run_tool("run " + cb_ + " --prompt 'a\nb'" + " --show-codes layer0.mlp");
  ASSERT_EQ(r.code, 0) << r.out;
  // The newline token is escaped, so it is visible and keeps the line whole.
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(token +198 "\\n")"))) << r.out;
  EXPECT_NE(r.out.find("next tokens: (p to 4 significant digits)"), std::string::npos) << r.out;
  // Each next token: id, p with 4 significant digits, its string in quotes.
  std::regex line(R"(\n +\d+  p (0\.0*[1-9]\d{3}|[0-9.]+e-\d+) +"[^\n]*")");
  EXPECT_EQ(std::distance(std::sregex_iterator(r.out.begin(), r.out.end(), line), std::sregex_iterator()), 5) << r.out;
  Result j = run_tool("run " + cb_ + " --prompt 'a' --json --top 2");
  EXPECT_TRUE(std::regex_search(j.out, std::regex(R"("next": \[\{"token": \d+, "text": "[^"]*", "p": )"))) << j.out;
}

TEST_F(TextCli, OutputsSelectWhatIsWritten) {
  auto files = [](const fs::path& d) {
    std::set<std::string> out;
    for (auto& e : fs::directory_iterator(d)) out.insert(e.path().filename().string());
    return out;
  };
  fs::path all = dir_ / "all", taps = dir_ / "taps", chosen = dir_ / "chosen";
  ASSERT_EQ(run_tool("run " + cb_ + " --tokens 1,2 -o " + all.string()).code, 0);
  EXPECT_EQ(files(all), (std::set<std::string>{"logits.npy"}));
  Result r = run_tool("run " + cb_ + " --tokens 1,2 --tap layer1.mlp -o " + taps.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(files(taps), (std::set<std::string>{"layer1.mlp.ids.npy", "layer1.mlp.input.npy", "layer1.mlp.output.npy",
                                                "layer1.mlp.scores.npy"}));
  // --show-codes adds no files, also on a site --tap taps too.
  r = run_tool("run " + cb_ + " --tokens 1,2 --tap layer1.mlp --show-codes layer1.mlp --show-codes layer0.mlp -o " +
               taps.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(files(taps).size(), 4u);
  r = run_tool("run " + cb_ + " --tokens 1,2 --tap layer1.mlp --outputs logits,layer1.mlp.ids -o " + chosen.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(files(chosen), (std::set<std::string>{"logits.npy", "layer1.mlp.ids.npy"}));
  expect_error(run_tool("run " + cb_ + " --tokens 1,2 --tap layer1.mlp --outputs logit -o " + chosen.string()),
               {"--outputs", "'logit'", "logits, layer1.mlp.input"});
}

TEST_F(TextCli, CompareShowsCodesSideBySideAndJsdInBits) {
  Result r = run_tool("run " + cb_ + " --prompt 'a b c' --show-codes layer0.mlp --force layer0.mlp:1,2@1 --compare");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("without | with interventions"), std::string::npos) << r.out;
  // Position 1 is forced to codes 1 2 and marked; position 0 keeps its codes.
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(pos +1 .* \| 2 1  \*\n)"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(pos +0 .*  (\d+ \d+) \| \1\n)"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(divergence at the last position: [0-9.e-]+ bits\n)"))) << r.out;

  Result j =
      run_tool("run " + cb_ + " --prompt 'a b c' --show-codes layer0.mlp --force layer0.mlp:1,2@1 --compare --json");
  ASSERT_EQ(j.code, 0) << j.out;
  EXPECT_EQ(json_field(j.out, "jsd_unit"), "\"bits\"");
  std::string per = json_field(j.out, "jsd_per_position");
  std::vector<double> jsd;
  std::stringstream ss(per.substr(1, per.size() - 2));
  for (std::string item; std::getline(ss, item, ',');) jsd.push_back(std::stod(item));
  ASSERT_EQ(jsd.size(), 3u) << j.out;
  EXPECT_EQ(jsd[0], 0.0) << "the force at position 1 cannot change position 0";
  EXPECT_GT(jsd[1], 0.0);
  EXPECT_LE(jsd[1], 1.0) << "a JSD in bits is at most 1";
  EXPECT_EQ(std::stod(json_field(j.out, "jsd")), jsd[2]);
  EXPECT_NE(json_field(j.out, "clean_codes"), "") << j.out;
  EXPECT_NE(json_field(j.out, "clean_codes"), json_field(j.out, "codes"));
}

}  // namespace
