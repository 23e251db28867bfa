// `codebook cache build / merge / info` end to end: the codes a cache holds
// are the ones the model selects when each row runs alone (through the
// interventions pass's taps, not the builder's), shards merge into the
// unsharded cache byte for byte, an interrupted build resumes to the same
// bytes, text documents keep their exact bytes and token offsets, and bad
// input is one error line that names the file and line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "backends/backend.h"
#include "frontend/npy.h"
#include "passes/interventions.h"
#include "runtime/executable.h"
#include "tests/cache_test_util.h"
#include "tests/cli_util.h"
#include "tools/cache/code_cache.h"
#include "tools/model_io.h"

namespace fs = std::filesystem;
using namespace cb;
using namespace cb::test;

namespace {

const std::string kGpt2Bpe = std::string(CB_SOURCE_DIR) + "/../shared/data/gpt2-bpe";

class CacheCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("cache");
    model_ = (dir_ / "cb.onnx").string();
    Result r = cb::test::make_tiny_cache_inputs(dir_, model_);
    ASSERT_EQ(r.code, 0) << r.out;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static std::string build(const std::string& out, const std::string& extra) {
    return "cache build " + model_ + " -o " + (dir_ / out).string() + " --data " + (dir_ / "tokens.npy").string() +
           " --tokenizer " + kGpt2Bpe + " --block-size 16 --batch-size 3 --progress off " + extra;
  }
  static fs::path dir_;
  static std::string model_;
};
fs::path CacheCli::dir_;
std::string CacheCli::model_;

TEST_F(CacheCli, CodesAreWhatEachRowSelectsAlone) {
  Result r = run_tool(build("plain", "--scores"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("1200 tokens in 30 documents"), std::string::npos) << r.out;
  cache::CodeCache c = cache::CodeCache::open((dir_ / "plain").string());
  ASSERT_EQ(c.num_tokens(), 30 * 40);
  Tensor input = npy_read((dir_ / "tokens.npy").string());
  for (int64_t i = 0; i < c.num_tokens(); ++i) ASSERT_EQ(int64_t(c.tokens()[size_t(i)]), input.data<int64_t>()[i]);

  // Each packed row run alone, with the sites tapped by the interventions pass.
  auto g = tools::load_model(model_).graph;
  InterventionSet iv;
  iv.taps = {"layer0.mlp,layer1.attn_preproj"};
  apply_interventions(*g, iv);
  auto backend = make_backend("cpu");
  auto exe = Executable::compile(g, *backend);
  auto names = exe->output_names();
  auto rows = c.rows();
  ASSERT_EQ(rows.size(), size_t(1200 / 16 + 1));
  for (size_t r0 = 0; r0 + 1 < rows.size(); r0 += 7) {
    int64_t b = rows[r0], e = rows[r0 + 1];
    std::vector<int64_t> row(c.tokens().begin() + b, c.tokens().begin() + e);
    std::map<std::string, Tensor> in = {{"input_ids", Tensor::from_vector(row, {1, e - b})}};
    tools::complete_lm_inputs(*g, in);
    auto out = exe->run(in);
    for (std::string site : {"layer0.mlp", "layer1.attn_preproj"}) {
      const Tensor& ids = out.at(size_t(std::find(names.begin(), names.end(), site + ".ids") - names.begin()));
      const Tensor& scores = out.at(size_t(std::find(names.begin(), names.end(), site + ".scores") - names.begin()));
      const cache::SiteArrays& a = c.site(site);
      int64_t G = a.info().groups, k = a.info().k;
      for (int64_t t = 0; t < e - b; ++t)
        for (int64_t g2 = 0; g2 < G; ++g2)
          for (int64_t j = 0; j < k; ++j) {
            int64_t i = (t * G + g2) * k + j;
            ASSERT_EQ(a.code(b + t, g2, j), ids.data<int64_t>()[i]) << site << " row " << r0 << " token " << t;
            EXPECT_NEAR(a.score(b + t, g2, j), scores.data<float>()[i],
                        2e-3 * std::abs(scores.data<float>()[i]) + 1e-3);
          }
    }
  }
  // The summary names the metrics; info reads the cache back.
  const Json& m = c.manifest().metrics;
  EXPECT_GT(m.at("loss").as_double(), 0.0);
  EXPECT_EQ(m.at("predicted_tokens").as_int(), 1200 - 75);  // every row's last token predicts nothing in its row
  Result info = run_tool("cache info " + (dir_ / "plain").string());
  EXPECT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("layer1.attn_preproj[0..3]"), std::string::npos) << info.out;
}

TEST_F(CacheCli, ShardsMergeIntoTheUnshardedCacheByteForByte) {
  ASSERT_EQ(run_tool(build("whole", "")).code, 0);
  for (int i = 0; i < 3; ++i) {
    Result r = run_tool(build("shard" + std::to_string(i), "--shard " + std::to_string(i) + "/3"));
    ASSERT_EQ(r.code, 0) << r.out;
  }
  // A shard alone is not a searchable cache.
  EXPECT_THROW(cache::CodeCache::open((dir_ / "shard1").string()), Error);
  Result m = run_tool("cache merge " + (dir_ / "shard2").string() + " " + (dir_ / "shard0").string() + " " +
                      (dir_ / "shard1").string() + " -o " + (dir_ / "merged").string());
  ASSERT_EQ(m.code, 0) << m.out;
  EXPECT_TRUE(same_files(dir_ / "whole", dir_ / "merged"));
  Result missing = run_tool("cache merge " + (dir_ / "shard0").string() + " " + (dir_ / "shard1").string() + " -o " +
                            (dir_ / "merged2").string());
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.out.find("one of 3 shards; 2 given"), std::string::npos) << missing.out;
}

TEST_F(CacheCli, ResumedBuildEqualsUninterruptedBuild) {
  ASSERT_EQ(run_tool(build("uninterrupted", "--scores")).code, 0);
  Result stopped = run_tool(build("resumed", "--scores --stop-after-batches 4"));
  EXPECT_EQ(stopped.code, 2);
  EXPECT_FALSE(fs::exists(dir_ / "resumed" / "cache.json"));  // nothing looks complete
  Result other = run_tool(build("resumed", "--resume"));      // without --scores: another build
  EXPECT_EQ(other.code, 2);
  EXPECT_NE(other.out.find("build.scores: true then, false now"), std::string::npos) << other.out;
  Result resumed = run_tool(build("resumed", "--scores --resume"));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_TRUE(same_files(dir_ / "uninterrupted", dir_ / "resumed"));
  EXPECT_FALSE(fs::exists(dir_ / "resumed.partial"));
}

// A model with GPT-2's vocabulary (random weights) for real text: bpe.onnx,
// and bpe-cb.onnx with a codebook at layer0.mlp recording the tokenizer.
void make_bpe_models(const fs::path& dir) {
  if (fs::exists(dir / "bpe-cb.onnx")) return;
  fs::path cfg = dir / "config.json";
  std::ofstream(cfg) << R"({"model_type": "gpt2", "vocab_size": 50257, "n_embd": 16, "n_layer": 1, "n_head": 2,
                          "n_positions": 64, "n_inner": 32})";
  Result r = run_tool("import-hf --config " + cfg.string() + " --random-init -o " + (dir / "bpe.onnx").string());
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_tool("compile " + (dir / "bpe.onnx").string() + " -o " + (dir / "bpe-cb.onnx").string() +
               " --at mlp --codes 16 -k 1 --tokenizer " + kGpt2Bpe);
  ASSERT_EQ(r.code, 0) << r.out;
}

TEST_F(CacheCli, TextDocumentsKeepTheirBytesAndOffsets) {
  ASSERT_NO_FATAL_FAILURE(make_bpe_models(dir_));
  // Fortune-style documents with multi-byte characters split across tokens.
  std::vector<std::string> docs = {"Caf\xc3\xa9 au lait, na\xc3\xafve r\xc3\xa9sum\xc3\xa9.", "New York\nis big",
                                   "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 emoji"};
  {
    std::ofstream f(dir_ / "fortunes.txt");
    for (auto& d : docs) f << d << "\n%\n";
  }
  Result r = run_tool("cache build " + (dir_ / "bpe-cb.onnx").string() + " -o " + (dir_ / "text").string() +
                      " --data " + (dir_ / "fortunes.txt").string() + " --doc-split sep:% --progress off");
  ASSERT_EQ(r.code, 0) << r.out;
  cache::CodeCache cc = cache::CodeCache::open((dir_ / "text").string());
  ASSERT_EQ(cc.num_documents(), 3);
  EXPECT_EQ(cc.manifest().block_mode, "pack");
  for (int64_t d = 0; d < 3; ++d) {
    EXPECT_EQ(std::string(cc.document_text(d)), docs[size_t(d)]);
    int64_t b = cc.doc_tokens()[size_t(d)], e = cc.doc_tokens()[size_t(d) + 1];
    EXPECT_EQ(cc.tokens()[size_t(b)], 50256u);  // <|endoftext|> starts each document
    std::string joined;
    for (int64_t t = b; t < e; ++t) joined += cc.token_text(t);
    EXPECT_EQ(joined, docs[size_t(d)]);
  }
  // "York" of document 1 starts at byte 4: its token holds that byte.
  EXPECT_EQ(std::string(cc.token_text(cc.token_at(1, 4))), " York");
}

TEST_F(CacheCli, TokFsmRunIsCachedWithoutAFile) {
  // A 2-step TokFSM run of a tiny config (the test is about the data, not the model's quality).
  fs::path cfg = dir_ / "tiny.yaml";
  std::ofstream(cfg) << cb::test::kTinyTokFsmConfig;
  Result t = run_tool("train " + cfg.string() + " --output " + (dir_ / "run").string() + " --progress off");
  ASSERT_EQ(t.code, 0) << t.out;
  Result r = run_tool("cache build " + (dir_ / "run").string() + " -o " + (dir_ / "fsm").string() +
                      " --data tokfsm --max-tokens 320 --progress off");
  ASSERT_EQ(r.code, 0) << r.out;
  cache::CodeCache c = cache::CodeCache::open((dir_ / "fsm").string());
  EXPECT_EQ(c.num_documents(), 20);
  EXPECT_EQ(c.manifest().block_mode, "document");
  EXPECT_EQ(c.manifest().tokenizer, "tokfsm:10");
  EXPECT_EQ(c.manifest().source.at("state_digits").as_int(), 2);
  for (int64_t d = 0; d < 20; ++d) {
    std::string_view text = c.document_text(d);
    EXPECT_EQ(text.size(), 15u);  // BOS renders as nothing; then 15 digits
    int64_t b = c.doc_tokens()[size_t(d)];
    EXPECT_EQ(c.tokens()[size_t(b)], 10u);
    for (size_t i = 0; i < text.size(); ++i) EXPECT_EQ(int64_t(c.tokens()[size_t(b) + 1 + i]), text[i] - '0');
  }
}

TEST_F(CacheCli, BadInputIsOneErrorNamingFileAndLine) {
  fs::path jsonl = dir_ / "docs.jsonl";
  std::ofstream(jsonl) << "{\"text\": \"hello\"}\n\n{\"body\": \"no text field\"}\n";
  ASSERT_NO_FATAL_FAILURE(make_bpe_models(dir_));
  Result r = run_tool("cache build " + (dir_ / "bpe-cb.onnx").string() + " -o " + (dir_ / "bad").string() + " --data " +
                      jsonl.string() + " --progress off");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("docs.jsonl:3: no \"text\" field"), std::string::npos) << r.out;
  std::ofstream(dir_ / "empty.txt") << "\n\n";
  r = run_tool("cache build " + (dir_ / "bpe-cb.onnx").string() + " -o " + (dir_ / "bad2").string() + " --data " +
               (dir_ / "empty.txt").string() + " --progress off");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("no documents"), std::string::npos) << r.out;
  // Rows longer than the model's context (the tiny GPT-2 has 128 positions).
  r = run_tool("cache build " + model_ + " -o " + (dir_ / "long").string() + " --data " +
               (dir_ / "tokens.npy").string() + " --tokenizer " + kGpt2Bpe + " --block-size 129 --progress off");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--block-size 129: longer than the model's context of 128 positions"), std::string::npos)
      << r.out;
  // A model without codebooks.
  r = run_tool("cache build " + (dir_ / "bpe.onnx").string() + " -o " + (dir_ / "bad3").string() + " --data " +
               jsonl.string() + " --progress off");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("has no codebooks"), std::string::npos) << r.out;
  // A directory of the user's is never overwritten.
  fs::create_directories(dir_ / "mine");
  std::ofstream(dir_ / "mine" / "notes.txt") << "keep";
  r = run_tool(build("mine", "--overwrite"));
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(file_bytes(dir_ / "mine" / "notes.txt"), "keep");
  // A truncated array of a finished cache.
  ASSERT_EQ(run_tool(build("cut", "")).code, 0);
  fs::resize_file(dir_ / "cut" / "sites" / "layer0.mlp" / "index_positions.npy", 200);
  r = run_tool("cache info " + (dir_ / "cut").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("index_positions.npy: truncated"), std::string::npos) << r.out;
}

}  // namespace
