// End-to-end tests of the `codebook` command line: real files in, exit codes
// and messages out. Bad input must give exit code 2 and one clear message.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "frontend/npy.h"
#include "tests/cli_util.h"

namespace fs = std::filesystem;

namespace {

using cb::test::Result;
using cb::test::run_tool;
using cb::test::temp_dir;

const std::string kModel = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";

TEST(Cli, HelpEverywhere) {
  for (std::string c : {"", "inspect ", "compile ", "export ", "run ", "bench ", "conformance "}) {
    Result r = run_tool(c + "--help");
    EXPECT_EQ(r.code, 0) << c << r.out;
    EXPECT_NE(r.out.find("usage"), std::string::npos) << c << r.out;
  }
}

TEST(Cli, UnknownCommandAndOption) {
  EXPECT_EQ(run_tool("frobnicate").code, 2);
  Result r = run_tool("inspect " + kModel + " --no-such-option");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("no-such-option"), std::string::npos) << r.out;
}

TEST(Cli, MissingFile) {
  Result r = run_tool("inspect /nonexistent/model.onnx");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("/nonexistent/model.onnx"), std::string::npos) << r.out;
}

TEST(Cli, GarbageAndTruncatedModels) {
  fs::path d = temp_dir("bad");
  {
    std::ofstream f(d / "garbage.onnx", std::ios::binary);
    for (int i = 0; i < 1000; ++i) f.put(char((i * 7919) % 251));
  }
  std::ifstream in(kModel, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t cut : {size_t(10), bytes.size() / 3, bytes.size() - 7}) {
    std::ofstream f(d / "truncated.onnx", std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(cut));
    f.close();
    Result r = run_tool("inspect " + (d / "truncated.onnx").string());
    EXPECT_EQ(r.code, 2) << "cut at " << cut << ": " << r.out;
    EXPECT_NE(r.out.find("error:"), std::string::npos) << r.out;
  }
  Result r = run_tool("run " + (d / "garbage.onnx").string() + " --tokens 1,2");
  EXPECT_EQ(r.code, 2) << r.out;
  fs::remove_all(d);
}

TEST(Cli, InspectShowsLayersAndOps) {
  Result r = run_tool("inspect " + kModel);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("input_ids"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("architecture: gpt2, 2 layers"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("import:"), std::string::npos) << r.out;
}

TEST(Cli, RunTokensPrintsTopTokensAndWritesOutputs) {
  fs::path d = temp_dir("run");
  for (std::string backend : {"reference", "cpu"}) {
    Result r = run_tool("run " + kModel + " --tokens 5,17,300,2 --backend " + backend + " --output-dir " + d.string());
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("top 5 next tokens"), std::string::npos) << r.out;
    cb::Tensor logits = cb::npy_read((d / "logits.npy").string());
    ASSERT_EQ(logits.rank(), 3u);
    EXPECT_EQ(logits.dim(0), 1);
    EXPECT_EQ(logits.dim(1), 4);
  }
  fs::remove_all(d);
}

TEST(Cli, RunNpyInputsMatchesTokens) {
  fs::path d = temp_dir("npy");
  cb::npy_write((d / "ids.npy").string(), cb::Tensor::from_vector<int64_t>({5, 17, 300}, {1, 3}));
  cb::npy_write((d / "mask.npy").string(), cb::Tensor::from_vector<int64_t>({1, 1, 1}, {1, 3}));
  Result a = run_tool("run " + kModel + " --input input_ids=" + (d / "ids.npy").string() +
                      " --input attention_mask=" + (d / "mask.npy").string() + " -o " + (d / "a").string());
  ASSERT_EQ(a.code, 0) << a.out;
  Result b = run_tool("run " + kModel + " --tokens 5,17,300 -o " + (d / "b").string());
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_TRUE(
      cb::npy_read((d / "a" / "logits.npy").string()).bitwise_equal(cb::npy_read((d / "b" / "logits.npy").string())));
  fs::remove_all(d);
}

TEST(Cli, BadInputsNameWhatIsWrong) {
  fs::path d = temp_dir("badin");
  Result r = run_tool("run " + kModel + " --tokens 5,999999,3");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("999999"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("position 1"), std::string::npos) << r.out;

  r = run_tool("run " + kModel + " --tokens 5,x,3");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("'x'"), std::string::npos) << r.out;

  cb::npy_write((d / "f.npy").string(), cb::Tensor::from_vector<float>({1.0f, 2.0f}, {1, 2}));
  r = run_tool("run " + kModel + " --input input_ids=" + (d / "f.npy").string() +
               " --input attention_mask=" + (d / "f.npy").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("input_ids"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("f32"), std::string::npos) << r.out;

  cb::npy_write((d / "r3.npy").string(), cb::Tensor::from_vector<int64_t>({1, 2}, {1, 1, 2}));
  r = run_tool("run " + kModel + " --input input_ids=" + (d / "r3.npy").string());
  EXPECT_EQ(r.code, 2) << r.out;

  r = run_tool("run " + kModel + " --input nosuch=" + (d / "f.npy").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("nosuch"), std::string::npos) << r.out;

  r = run_tool("run " + kModel + " --tokens 1 --backend tpu");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("tpu"), std::string::npos) << r.out;
  fs::remove_all(d);
}

TEST(Cli, OutputDirectoryIsNotClobberedOnFailure) {
  // A failed run must not leave partial files or remove what the user had.
  fs::path d = temp_dir("keep");
  { std::ofstream(d / "logits.npy") << "user data"; }
  Result r = run_tool("run " + kModel + " --tokens 5,999999 -o " + d.string());
  EXPECT_EQ(r.code, 2);
  std::ifstream f(d / "logits.npy");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(s, "user data");
  fs::remove_all(d);
}

// bench fuses the attention as run does (passes/inference_pipeline.h); --no-fusion times the graph as loaded.
TEST(Cli, BenchFusesAttentionUnlessAsked) {
  Result fused = run_tool("bench " + kModel + " --shape 2x8 --runs 1 --warmup 0 --profile");
  ASSERT_EQ(fused.code, 0) << fused.out;
  EXPECT_NE(fused.out.find(" Attention "), std::string::npos) << fused.out;
  EXPECT_EQ(fused.out.find(" Softmax "), std::string::npos) << fused.out;
  Result plain = run_tool("bench " + kModel + " --shape 2x8 --runs 1 --warmup 0 --profile --no-fusion");
  ASSERT_EQ(plain.code, 0) << plain.out;
  EXPECT_EQ(plain.out.find(" Attention "), std::string::npos) << plain.out;
  EXPECT_NE(plain.out.find(" Softmax "), std::string::npos) << plain.out;
}

// --profile-nodes: one line per node, with its name and input shapes.
TEST(Cli, BenchProfilesNodes) {
  Result r = run_tool("bench " + kModel + " --shape 2x8 --runs 1 --warmup 0 --profile-nodes");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("time per node"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("calls  [2,8]"), std::string::npos) << r.out;  // a node reading input_ids
  int attention_lines = 0;
  for (size_t at = 0; (at = r.out.find("\n  Attention ", at)) != std::string::npos; ++at) ++attention_lines;
  EXPECT_EQ(attention_lines, 2) << r.out;  // the tiny GPT-2's two layers, each its own line
}

TEST(Cli, BenchPrintsTimes) {
  Result r = run_tool("bench " + kModel + " --shape 2x8 --runs 3 --warmup 1 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"median_ms\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"tokens_per_s\""), std::string::npos) << r.out;
}

TEST(Cli, BenchMeasuresTheMatmulBound) {
  // The tiny GPT-2 (2 layers, width 64, MLP 256, 4 heads, vocabulary 500) at 2x8: per layer 4 weight products and 2
  // batched attention products, then the LM head; 4.235 MFLOP in all.
  Result r = run_tool("bench " + kModel + " --shape 2x8 --runs 2 --warmup 0 --matmul-bound --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"matmul_products\": 13,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"matmul_gflop\": 0.004,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"percent_of_bound\""), std::string::npos) << r.out;
  Result text = run_tool("bench " + kModel + " --shape 1x4 --runs 1 --warmup 0 --matmul-bound --no-fusion");
  ASSERT_EQ(text.code, 0) << text.out;
  EXPECT_NE(text.out.find("% of the bound"), std::string::npos) << text.out;
}

}  // namespace

namespace {

TEST(Cli, ModelsCanBeHuggingFaceFolders) {
  // The same tiny GPT-2 as ONNX and as config.json + model.safetensors.
  std::string hf = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/hf";
  Result a = run_tool("run " + kModel + " --tokens 5,17,300,2 --json");
  Result b = run_tool("run " + hf + " --tokens 5,17,300,2 --json");
  ASSERT_EQ(a.code, 0) << a.out;
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_EQ(a.out.substr(0, a.out.find("\"p\"")), b.out.substr(0, b.out.find("\"p\""))) << a.out << b.out;
  Result i = run_tool("inspect " + hf);
  EXPECT_EQ(i.code, 0) << i.out;
  EXPECT_NE(i.out.find("2 layers"), std::string::npos) << i.out;
}

}  // namespace
