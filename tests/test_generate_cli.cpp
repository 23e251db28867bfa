// `codebook generate` end to end: the ids it prints equal what `codebook run`
// picks when given each prefix (greedy), a seed reproduces a sampled
// continuation, text goes through the GPT-2 tokenizer (a prompt of ids below
// the tiny models' vocabulary of 500), the context ends
// generation with a message, and bad options exit 2 with a message naming
// the option. Several prompts print a line each, equal to generating each
// alone; --stop-at and the model's eos id end a continuation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/cli_util.h"

using cb::test::run_tool;

namespace {

const std::string kModel = std::string(CB_SOURCE_DIR) + "/tests/models/gpt-neo/model.onnx";
const std::string kTokenizer = std::string(CB_SOURCE_DIR) + "/../shared/data/gpt2-bpe";

// The first line of the output that is a comma list of ids.
std::vector<int64_t> ids_line(const std::string& out) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line.find_first_not_of("0123456789,") != std::string::npos) continue;
    std::vector<int64_t> ids;
    std::istringstream items(line);
    std::string item;
    while (std::getline(items, item, ',')) ids.push_back(std::stoll(item));
    return ids;
  }
  return {};
}

// Every line of the output that is a comma list of ids.
std::vector<std::vector<int64_t>> ids_lines(const std::string& out) {
  std::vector<std::vector<int64_t>> lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line.find_first_not_of("0123456789,") == std::string::npos) lines.push_back(ids_line(line));
  return lines;
}

// The most likely next token `codebook run` prints for `tokens`.
int64_t run_top1(const std::string& tokens) {
  auto r = run_tool("run " + kModel + " --tokens " + tokens + " --top 1 --json");
  size_t at = r.out.find("\"next\": [{\"token\": ");
  EXPECT_NE(at, std::string::npos) << r.out;
  return at == std::string::npos ? -1 : std::stoll(r.out.substr(at + 19));
}

TEST(GenerateCli, GreedyIdsEqualRunOnEachPrefix) {
  auto r = run_tool("generate " + kModel + " --tokens 5,17,300 --max-new 10 --ids");
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<int64_t> got = ids_line(r.out);
  ASSERT_EQ(got.size(), 10u) << r.out;
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
  std::string prefix = "5,17,300";
  for (int64_t id : got) {
    EXPECT_EQ(id, run_top1(prefix)) << "after " << prefix;
    prefix += "," + std::to_string(id);
  }
}

TEST(GenerateCli, SeedReproducesSampling) {
  const std::string cmd = "generate " + kModel + " --tokens 5,17,300 --max-new 12 --ids --temperature 1.5 --top-k 40";
  auto a = run_tool(cmd + " --seed 3"), b = run_tool(cmd + " --seed 3"), c = run_tool(cmd + " --seed 4");
  ASSERT_EQ(a.code, 0) << a.out;
  EXPECT_EQ(ids_line(a.out), ids_line(b.out));
  EXPECT_NE(ids_line(a.out), ids_line(c.out));
}

TEST(GenerateCli, TextInTextOut) {
  auto r = run_tool("generate " + kModel + " --prompt 'a b c' --tokenizer " + kTokenizer + " --max-new 4");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("prompt: 3 tokens"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("generated 4 tokens"), std::string::npos) << r.out;
}

TEST(GenerateCli, StopsAtTheContext) {
  auto r = run_tool("generate " + kModel + " --tokens 5,17,300 --max-new 50 --context 8 --ids");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(ids_line(r.out).size(), 5u) << r.out;
  EXPECT_NE(r.out.find("reached the model's context of 8 tokens"), std::string::npos) << r.out;
}

TEST(GenerateCli, InterventionsAndPrintAfter) {
  const std::string tmp = cb::test::temp_dir("generate").string();
  auto c = run_tool("compile " + kModel + " -o " + tmp + "/cb.onnx --at mlp --codes 16 -k 2");
  ASSERT_EQ(c.code, 0) << c.out;
  auto plain = run_tool("generate " + tmp + "/cb.onnx --tokens 5,17,300 --max-new 6 --ids");
  auto forced = run_tool("generate " + tmp + "/cb.onnx --tokens 5,17,300 --max-new 6 --ids --force layer1.mlp:3,4");
  ASSERT_EQ(forced.code, 0) << forced.out;
  EXPECT_NE(ids_line(plain.out), ids_line(forced.out));
  auto ir = run_tool("generate " + kModel + " --tokens 5 --max-new 1 --ids --print-after kv-cache");
  ASSERT_EQ(ir.code, 0) << ir.out;
  EXPECT_NE(ir.out.find("IR after kv-cache"), std::string::npos);
  EXPECT_NE(ir.out.find("%past.1.value: f32[batch,4,past_capacity,16]"), std::string::npos) << ir.out;
}

TEST(GenerateCli, SeveralPromptsEqualEachAlone) {
  const std::string cmd = "generate " + kModel + " --max-new 6 --ids --temperature 1 --top-k 40";
  const std::vector<std::string> prompts = {"5,17,300", "9,9", "1,2,3"};
  auto all = run_tool(cmd + " --seed 2 --tokens " + prompts[0] + " --tokens " + prompts[1] + " --tokens " + prompts[2]);
  ASSERT_EQ(all.code, 0) << all.out;
  EXPECT_NE(all.out.find("prompts: 3 in 2 batches"), std::string::npos) << all.out;
  std::vector<std::vector<int64_t>> lines = ids_lines(all.out);
  ASSERT_EQ(lines.size(), 3u) << all.out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto one = run_tool(cmd + " --seed " + std::to_string(2 + i) + " --tokens " + prompts[i]);
    ASSERT_EQ(one.code, 0) << one.out;
    EXPECT_EQ(lines[i], ids_line(one.out)) << prompts[i];
    EXPECT_EQ(lines[i].size(), 6u);
  }
  // A file of text prompts, one per line.
  const std::string tmp = cb::test::temp_dir("generate-prompts").string();
  std::ofstream(tmp + "/prompts.txt") << "a b c\n\nc d\r\n";
  auto file = run_tool(cmd + " --tokenizer " + kTokenizer + " --prompts-file " + tmp + "/prompts.txt");
  ASSERT_EQ(file.code, 0) << file.out;
  lines = ids_lines(file.out);
  ASSERT_EQ(lines.size(), 2u) << file.out;
  auto cat = run_tool(cmd + " --seed 1 --tokenizer " + kTokenizer + " --prompt 'c d'");
  EXPECT_EQ(lines[1], ids_line(cat.out));
  // Text out: one quoted line per prompt.
  auto text = run_tool("generate " + kModel + " --max-new 3 --tokenizer " + kTokenizer + " --prompt a --prompt b");
  ASSERT_EQ(text.code, 0) << text.out;
  int quoted = 0;
  std::istringstream text_lines(text.out);
  for (std::string line; std::getline(text_lines, line);) quoted += !line.empty() && line[0] == '"';
  EXPECT_EQ(quoted, 2) << text.out;
}

TEST(GenerateCli, StopAtIdsAndTheModelsEos) {
  const std::string cmd = "generate " + kModel + " --tokens 5,17,300 --max-new 12 --ids --temperature 1 --seed 5";
  auto free = run_tool(cmd);
  ASSERT_EQ(free.code, 0) << free.out;
  std::vector<int64_t> ids = ids_line(free.out);
  ASSERT_EQ(ids.size(), 12u) << free.out;
  const size_t first = size_t(std::find(ids.begin(), ids.end(), ids[4]) - ids.begin());
  auto stopped = run_tool(cmd + " --stop-at " + std::to_string(ids[4]));
  ASSERT_EQ(stopped.code, 0) << stopped.out;
  EXPECT_EQ(ids_line(stopped.out), std::vector<int64_t>(ids.begin(), ids.begin() + int64_t(first) + 1));
  EXPECT_NE(
      stopped.out.find("stopped after " + std::to_string(first + 1) + " new tokens: stop-at " + std::to_string(ids[4])),
      std::string::npos)
      << stopped.out;

  // A Hugging Face folder whose config's eos_token_id is a token the model generates.
  const std::string hf = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/hf";
  const std::string hf_cmd = " --tokens 5,17,300 --max-new 12 --ids --temperature 1 --seed 5";
  auto hf_free = run_tool("generate " + hf + hf_cmd + " --ignore-eos");
  ASSERT_EQ(hf_free.code, 0) << hf_free.out;
  ids = ids_line(hf_free.out);
  ASSERT_EQ(ids.size(), 12u) << hf_free.out;
  const std::string tmp = cb::test::temp_dir("generate-eos").string();
  std::ifstream in(hf + "/config.json");
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string eos_zero = "\"eos_token_id\": 0";
  const size_t at = config.find(eos_zero);
  ASSERT_NE(at, std::string::npos);
  config.replace(at, eos_zero.size(), "\"eos_token_id\": " + std::to_string(ids[6]));
  std::ofstream(tmp + "/config.json") << config;
  std::filesystem::copy_file(hf + "/model.safetensors", tmp + "/model.safetensors");
  auto eos = run_tool("generate " + tmp + hf_cmd);
  ASSERT_EQ(eos.code, 0) << eos.out;
  const size_t eos_at = size_t(std::find(ids.begin(), ids.end(), ids[6]) - ids.begin());
  EXPECT_EQ(ids_line(eos.out), std::vector<int64_t>(ids.begin(), ids.begin() + int64_t(eos_at) + 1)) << eos.out;
  EXPECT_EQ(ids_line(run_tool("generate " + tmp + hf_cmd + " --ignore-eos").out), ids);
}

TEST(GenerateCli, BadOptionsExit2) {
  const std::string g = "generate " + kModel + " ";
  struct Case {
    std::string args, message;
  };
  for (const Case& c : std::vector<Case>{
           {"--max-new 3", "give the prompt"},
           {"--tokens 1 --prompt x", "not both"},
           {"--tokens 1 --temperature -1", "--temperature must be >= 0"},
           {"--tokens 1 --temperature 1 --top-p 0", "--top-p must be in (0, 1]"},
           {"--tokens 1 --temperature 1 --top-k -2", "--top-k must be >= 0"},
           {"--tokens 1 --top-k 5", "give --temperature > 0"},
           {"--tokens 1 --max-new -1", "--max-new must be >= 0"},
           {"--tokens 1,x", "x"},
           {"--tokens 1,999", "out of range"},
           {"--tokens 1 --context 0", "--context must be > 0"},
           {"--tokens 1 --ablate layer0.mlp:3", "layer0.mlp"},
           {"--tokens 1 --max-new 3 --bogus", "bogus"},
           {"--tokens 1 --stop-at text:", "no text after 'text:'"},
           {"--tokens 1 --stop-at abc --ids", "text needs a tokenizer"},
           {"--tokens 1 --stop-at 1,,2", "--stop-at token id"},
           {"--prompts-file /nonexistent/prompts.txt --tokenizer " + kTokenizer, "/nonexistent/prompts.txt"},
           {"--tokens 1 --prompts-file x", "not both"},
       }) {
    auto r = run_tool(g + c.args);
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << "\n" << r.out;
  }
  auto r = run_tool("generate /nonexistent.onnx --tokens 1");
  EXPECT_EQ(r.code, 2) << r.out;
}

}  // namespace
