// `codebook search`, `code` and `topics` on a synthetic code cache written
// here with CacheWriter (digit documents; codes that follow the digits), and
// `search --neurons` with the tiny GPT-2 as the cache's model: output, JSON
// that parses with the numbers counted here, and error exits.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "frontend/npy.h"
#include "support/json.h"
#include "support/sha256.h"
#include "tests/cache_test_util.h"
#include "tests/cli_util.h"
#include "tools/cache/cache_writer.h"
#include "tools/cache/code_cache.h"

namespace fs = std::filesystem;
using namespace cb;
using namespace cb::cache;
using cb::test::Result;
using cb::test::run_tool;

namespace {

const std::string kGpt2 = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";

// 30 documents of 6 to 20 digits, one token per digit (id = digit) after an
// empty-span BOS (id 10). layer0.mlp (k 2): slot 0 = the digit, slot 1 = 10 +
// the previous digit; layer1.attn_preproj[g] (k 1): (digit + g) % 10, except
// that member 1 puts the BOS and every '3' on code 19.
std::vector<std::string> write_digits_cache(const std::string& dir, const std::string& tokenizer, const Json& model) {
  std::mt19937 rng(11);
  std::vector<std::string> docs;
  CacheWriter w(
      dir,
      {cb::test::cache_site("layer0.mlp", 1, 20, 2, true), cb::test::cache_site("layer1.attn_preproj", 2, 20, 1, true)},
      {});
  for (int d = 0; d < 30; ++d) {
    std::string text;
    int len = 6 + int(rng() % 15);
    for (int i = 0; i < len; ++i) text += char('0' + rng() % 10);
    std::vector<uint32_t> tokens = {10};
    std::vector<int64_t> starts = {0};
    for (int i = 0; i < len; ++i) tokens.push_back(uint32_t(text[size_t(i)] - '0')), starts.push_back(i);
    w.add_document(text, tokens, starts);
    w.add_row(int64_t(tokens.size()));
    std::vector<int64_t> a, b;
    std::vector<float> sa, sb;
    for (size_t t = 0; t < tokens.size(); ++t) {
      int64_t digit = t == 0 ? 0 : tokens[t], prev = t <= 1 ? 0 : tokens[t - 1];
      a.push_back(digit), a.push_back(10 + prev);
      sa.push_back(float(digit) / 4), sa.push_back(-1);
      for (int64_t g = 0; g < 2; ++g) {
        b.push_back(g == 1 && (t == 0 || digit == 3) ? 19 : (digit + g) % 10);
        sb.push_back(0.5f);
      }
    }
    w.add_codes(0, a.data(), sa.data(), int64_t(tokens.size()));
    w.add_codes(1, b.data(), sb.data(), int64_t(tokens.size()));
    w.add_row_metrics(0, 0, double(tokens.size() - 1));
    docs.push_back(text);
  }
  CacheManifest m;
  m.block_mode = "document";
  m.block_size = 32;
  m.tokenizer = tokenizer;
  m.model = model;
  m.source = Json::Object{};
  m.build = Json::Object{};
  w.finish(m);
  return docs;
}

class CliSearch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = cb::test::temp_dir("search");
    Json model = Json::Object{};
    model["file"] = kGpt2;
    model["sha256"] = sha256_file(kGpt2);
    docs_ = write_digits_cache((dir_ / "cache").string(), "test", model);
    write_digits_cache((dir_ / "fsm").string(), "tokfsm:10", model);
    model["sha256"] = std::string(64, '0');
    write_digits_cache((dir_ / "wrong_model").string(), "test", model);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static std::string cache() { return (dir_ / "cache").string(); }
  // Non-overlapping occurrences of `s` in all documents.
  static int64_t occurrences(const std::string& s) {
    int64_t n = 0;
    for (auto& d : docs_)
      for (size_t at = d.find(s); at != std::string::npos; at = d.find(s, at + s.size())) ++n;
    return n;
  }
  static fs::path dir_;
  static std::vector<std::string> docs_;
};
fs::path CliSearch::dir_;
std::vector<std::string> CliSearch::docs_;

Json parse_json_line(const Result& r) {
  EXPECT_EQ(r.code, 0) << r.out;
  return json_parse(r.out);
}

const Json* find_code(const Json& codes, const std::string& site, int64_t group, int64_t code) {
  for (const Json& c : codes.as_array())
    if (c.at("site").as_string() == site && c.at("group").as_int() == group && c.at("code").as_int() == code) return &c;
  return nullptr;
}

}  // namespace

TEST_F(CliSearch, TextTableAndMatches) {
  Result r = run_tool("search " + cache() + " '(7)'");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(std::to_string(occurrences("7")) + " matches"), std::string::npos) << r.out;
  // layer0.mlp code 7 fires exactly on the 7s: precision and recall 1.
  EXPECT_NE(r.out.find("layer0.mlp                        7      1.000    1.000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layer1.attn_preproj[1]            8      1.000    1.000"), std::string::npos) << r.out;
  Result none = run_tool("search " + cache() + " 'x'");
  ASSERT_EQ(none.code, 0) << none.out;
  EXPECT_NE(none.out.find("0 matches"), std::string::npos) << none.out;
}

TEST_F(CliSearch, JsonHasTheCountedNumbers) {
  // The token after a 5 (group 1): layer0.mlp code 15 (slot 1 = 10 + previous digit).
  Json j = parse_json_line(run_tool("search " + cache() + " '5(\\d)' --json --min-precision 0"));
  int64_t m = 0;  // distinct tokens after a 5, non-overlapping "5\d" matches
  for (auto& d : docs_)
    for (size_t i = 0; i + 1 < d.size();)
      if (d[i] == '5')
        ++m, i += 2;
      else
        ++i;
  EXPECT_EQ(j.at("matches").as_int(), m);
  const Json* c = find_code(j.at("codes"), "layer0.mlp", 0, 15);
  ASSERT_TRUE(c) << j.dump();
  EXPECT_DOUBLE_EQ(c->at("recall").as_double(), 1.0);
  // Every token after a 5 carries code 15; matched ones are those not consumed as a "5" of a match.
  EXPECT_EQ(c->at("activations").as_int(), [&] {
    int64_t n = 0;
    for (auto& d : docs_)
      for (size_t i = 1; i < d.size(); ++i) n += d[i - 1] == '5';
    return n;
  }());
  // --topk-slots 1: slot 1 no longer counts, so code 15 is gone.
  Json t = parse_json_line(run_tool("search " + cache() + " '5(\\d)' --json --min-precision 0 --topk-slots 1"));
  EXPECT_FALSE(find_code(t.at("codes"), "layer0.mlp", 0, 15));
  // --site and --parity
  Json s = parse_json_line(run_tool("search " + cache() + " '(3)' --json --site 'layer1.attn_preproj[1]'"));
  for (const Json& e : s.at("codes").as_array()) EXPECT_EQ(e.at("group").as_int(), 1);
  const Json* c19 = find_code(s.at("codes"), "layer1.attn_preproj", 1, 19);
  ASSERT_TRUE(c19) << s.dump();
  // Code 19 fires on every 3 and on the 30 BOS tokens.
  EXPECT_NEAR(c19->at("precision").as_double(), double(occurrences("3")) / double(occurrences("3") + 30), 1e-12);
  Json even = parse_json_line(run_tool("search " + cache() + " '(3)' --json --parity even"));
  int64_t at_even = 0;
  for (auto& d : docs_)
    for (size_t i = 0; i < d.size(); i += 2) at_even += d[i] == '3';
  EXPECT_EQ(even.at("matches").as_int(), at_even);
}

TEST_F(CliSearch, ErrorsExitTwo) {
  Result r = run_tool("search " + cache() + " '(7'");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("error: invalid regex '(7': missing ): (7"), std::string::npos) << r.out;
  EXPECT_EQ(run_tool("search " + cache() + " '" + std::string(5000, '7') + "'").code, 2);
  EXPECT_EQ(run_tool("search " + cache()).code, 2);
  EXPECT_EQ(run_tool("search " + cache() + " 7 --sort size").code, 2);
  EXPECT_EQ(run_tool("search " + cache() + " 7 --parity 3").code, 2);
  EXPECT_EQ(run_tool("search " + cache() + " 7 --site layer5.mlp").code, 2);
  Result missing = run_tool("search " + (dir_ / "nothing").string() + " 7");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.out.find("error: "), std::string::npos);
  EXPECT_EQ(run_tool("code " + cache() + " layer0.mlp 20").code, 2);          // code out of range
  EXPECT_EQ(run_tool("code " + cache() + " layer1.attn_preproj 1").code, 2);  // which member?
  EXPECT_EQ(run_tool("code " + cache() + " layer0.mlp x").code, 2);
  EXPECT_EQ(run_tool("topics " + cache() + " --doc 30").code, 2);
  EXPECT_EQ(run_tool("topics " + cache()).code, 2);
}

TEST_F(CliSearch, CodeExamples) {
  Result r = run_tool("code " + cache() + " layer0.mlp 7 --max 2 --context 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(
      r.out.find("layer0.mlp code 7: " + std::to_string(occurrences("7")) + " activations in the first 1 of 2 slots"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("fires most on:  \"7\" " + std::to_string(occurrences("7"))), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("scores (10 bins)"), std::string::npos) << r.out;
  // Exactly two example lines, each "DOC: ..." with the 7s marked.
  size_t at = r.out.find("examples (2 of ");
  ASSERT_NE(at, std::string::npos) << r.out;
  std::string rest = r.out.substr(r.out.find('\n', at) + 1);
  EXPECT_EQ(std::count(rest.begin(), rest.end(), '\n'), 2) << rest;
  EXPECT_NE(rest.find("[[7]]"), std::string::npos) << rest;

  Json j = parse_json_line(run_tool("code " + cache() + " layer0.mlp 7 --max -1 --json"));
  EXPECT_EQ(j.at("activations").as_int(), occurrences("7"));
  int64_t docs_with_7 = 0;
  for (auto& d : docs_) docs_with_7 += d.find('7') != std::string::npos;
  EXPECT_EQ(int64_t(j.at("examples").size()), docs_with_7);
  // Scores: 7/4 = 1.75 everywhere: one bin.
  EXPECT_DOUBLE_EQ(j.at("scores").at("min").as_double(), 1.75);
  // --topk-slots 2 counts slot 1 too: code 17 = after a 7.
  Json k2 = parse_json_line(run_tool("code " + cache() + " layer0.mlp 17 --topk-slots 2 --json"));
  EXPECT_GT(k2.at("activations").as_int(), 0);
  Json k1 = parse_json_line(run_tool("code " + cache() + " layer0.mlp 17 --json"));
  EXPECT_EQ(k1.at("activations").as_int(), 0);

  // TokFSM: the whole document as 2-digit states.
  Json f = parse_json_line(run_tool("code " + (dir_ / "fsm").string() + " layer0.mlp 7 --max 1 --json"));
  std::string snippet = f.at("examples").at(0).at("snippet").as_string();
  std::string want;
  const std::string& d0 = docs_[size_t(f.at("examples").at(0).at("doc").as_int())];
  for (size_t i = 0; i < d0.size(); ++i)
    want += std::string(i > 0 && i % 2 == 0 ? "-" : "") + (d0[i] == '7' ? "[[7]]" : std::string(1, d0[i]));
  EXPECT_EQ(snippet, want);
}

TEST_F(CliSearch, Topics) {
  Json j = parse_json_line(run_tool("topics " + cache() + " --doc 3 --recall 0.05 --json"));
  EXPECT_EQ(j.at("text").as_string(), docs_[3]);
  // layer1.attn_preproj[1] code 19: the BOS and the 3s of the document.
  int64_t threes = std::count(docs_[3].begin(), docs_[3].end(), '3');
  const Json* c = find_code(j.at("codes"), "layer1.attn_preproj", 1, 19);
  ASSERT_TRUE(c) << j.dump();
  EXPECT_DOUBLE_EQ(c->at("recall").as_double(), double(threes + 1) / double(docs_[3].size() + 1));
  Result r = run_tool("topics " + cache() + " --doc 3");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("document 3 (" + std::to_string(docs_[3].size() + 1) + " tokens): \"" + docs_[3] + "\""),
            std::string::npos)
      << r.out;
}

TEST_F(CliSearch, NeuronBaseline) {
  Json j = parse_json_line(run_tool("search " + cache() + " '(7)' --neurons --json --threads 2"));
  ASSERT_GT(j.at("codes").size(), 0u);
  for (const Json& c : j.at("codes").as_array()) {
    const Json& n = c.at("neuron");
    EXPECT_GE(n.at("layer").as_int(), 0);
    EXPECT_LT(n.at("layer").as_int(), 2);
    EXPECT_GE(n.at("unit").as_int(), 0);
    EXPECT_GT(n.at("precision").as_double(), 0);
    EXPECT_LE(n.at("precision").as_double(), 1);
  }
  double beat = j.at("codes_beating_neurons").as_double();
  EXPECT_GE(beat, 0);
  EXPECT_LE(beat, 1);
  Result r = run_tool("search " + (dir_ / "wrong_model").string() + " '(7)' --neurons");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("is not the one the cache"), std::string::npos) << r.out;
}

// On a cache `codebook cache build` wrote with a compiled tiny GPT-2: search
// runs, and --neurons finds the neuron a brute-force search over the MLP
// activations of `codebook run --tap` (every row, one run per row length) finds.
TEST(CliSearchBuilt, NeuronBaselineMatchesBruteForceOverTappedActivations) {
  fs::path dir = cb::test::temp_dir("search_built");
  std::string model = (dir / "cb.onnx").string();
  Result r = run_tool("compile " + kGpt2 + " -o " + model + " --at mlp --codes 16 -k 1 --layers all");
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<int64_t> ids(12 * 30);
  uint64_t x = 777;
  for (auto& v : ids)
    v = int64_t((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 33) % 26 +
        32;  // GPT-2 byte tokens "A".."Z"
  npy_write((dir / "tokens.npy").string(), Tensor::from_vector(ids, {12, 30}));
  std::string cache = (dir / "cache").string();
  r = run_tool("cache build " + model + " -o " + cache + " --data " + (dir / "tokens.npy").string() + " --tokenizer " +
               std::string(CB_SOURCE_DIR) + "/../shared/data/gpt2-bpe --block-size 16 --progress off");
  ASSERT_EQ(r.code, 0) << r.out;
  CodeCache c = CodeCache::open(cache);

  // Every row's mlp_mid activations, as `codebook run` computes them.
  const int64_t N = c.num_tokens();
  std::vector<std::vector<float>> acts(2);  // per layer [N, units]
  int64_t units = -1;
  std::map<int64_t, std::vector<int64_t>> rows_of_length;
  for (size_t rr = 0; rr + 1 < c.rows().size(); ++rr)
    rows_of_length[c.rows()[rr + 1] - c.rows()[rr]].push_back(int64_t(rr));
  for (auto& [T, rows] : rows_of_length) {
    std::vector<int64_t> in;
    for (int64_t rr : rows)
      for (int64_t t = 0; t < T; ++t) in.push_back(c.tokens()[size_t(c.rows()[size_t(rr)] + t)]);
    fs::path out = dir / ("run" + std::to_string(T));
    npy_write((dir / "in.npy").string(), Tensor::from_vector(in, {int64_t(rows.size()), T}));
    Result run = run_tool("run " + model + " --input input_ids=" + (dir / "in.npy").string() +
                          " --tap layer0.mlp_mid,layer1.mlp_mid --output-dir " + out.string());
    ASSERT_EQ(run.code, 0) << run.out;
    for (int l = 0; l < 2; ++l) {
      Tensor a = npy_read((out / ("layer" + std::to_string(l) + ".mlp_mid.input.npy")).string());
      units = a.dim(2);
      acts[size_t(l)].resize(size_t(N * units));
      for (size_t i = 0; i < rows.size(); ++i)
        std::copy(a.data<float>() + int64_t(i) * T * units, a.data<float>() + int64_t(i + 1) * T * units,
                  acts[size_t(l)].begin() + c.rows()[size_t(rows[i])] * units);
    }
  }

  Json j = json_parse(run_tool("search " + cache + " '([A-M])' --neurons --json --min-precision 0 --top 2").out);
  const int64_t m = j.at("matches").as_int();
  ASSERT_GT(m, 0);
  ASSERT_GT(j.at("codes").size(), 0u);
  std::vector<int64_t> matched;
  for (int64_t p = 0; p < N; ++p) {
    std::string_view t = c.token_text(p);
    if (!t.empty() && t[0] >= 'A' && t[0] <= 'M') matched.push_back(p);
  }
  ASSERT_EQ(int64_t(matched.size()), m);  // every token is one character here
  int64_t wins = 0;
  for (const Json& code : j.at("codes").as_array()) {
    int64_t n = std::llround(code.at("recall").as_double() * double(m));
    double best = -1;
    int64_t best_layer = -1, best_unit = -1;
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t u = 0; u < units; ++u) {
        std::vector<float> v;
        for (int64_t p : matched) v.push_back(acts[size_t(l)][size_t(p * units + u)]);
        std::sort(v.rbegin(), v.rend());
        float tau = v[size_t(n - 1)];
        int64_t reach = 0;
        for (int64_t p = 0; p < N; ++p) reach += acts[size_t(l)][size_t(p * units + u)] >= tau;
        double precision = double(n) / double(reach);
        if (precision > best) best = precision, best_layer = l, best_unit = u;
      }
    const Json& got = code.at("neuron");
    EXPECT_NEAR(got.at("precision").as_double(), best, 1e-9) << code.dump();
    EXPECT_EQ(got.at("layer").as_int(), best_layer) << code.dump();
    EXPECT_EQ(got.at("unit").as_int(), best_unit) << code.dump();
    wins += code.at("precision").as_double() > best;
  }
  EXPECT_DOUBLE_EQ(j.at("codes_beating_neurons").as_double(), double(wins) / double(j.at("codes").size()));
  fs::remove_all(dir);
}

// A TokFSM cache from `codebook cache build` of a 2-step run: --parity even
// picks each state's first digit, and a code's examples show whole documents
// as 2-digit states with the tokens its ids say it fires on marked.
TEST(CliSearchBuilt, TokFsmCache) {
  fs::path dir = cb::test::temp_dir("search_fsm");
  fs::path cfg = dir / "tiny.yaml";
  std::ofstream(cfg) << cb::test::kTinyTokFsmConfig;
  Result t = run_tool("train " + cfg.string() + " --output " + (dir / "run").string() + " --progress off");
  ASSERT_EQ(t.code, 0) << t.out;
  std::string cache = (dir / "fsm").string();
  Result r = run_tool("cache build " + (dir / "run").string() + " -o " + cache +
                      " --data tokfsm --max-tokens 320 --progress off");
  ASSERT_EQ(r.code, 0) << r.out;
  CodeCache c = CodeCache::open(cache);
  ASSERT_EQ(c.manifest().source.at("state_digits").as_int(), 2);

  int64_t even = 0;
  for (int64_t d = 0; d < c.num_documents(); ++d) even += int64_t(c.document_text(d).size() + 1) / 2;
  Json s = json_parse(run_tool("search " + cache + " '(\\d)' --parity even --json").out);
  EXPECT_EQ(s.at("matches").as_int(), even);

  // The code of the first digit of document 0, and where it fires in that document.
  const SiteArrays& site = c.site("layer0.mlp");
  int64_t b = c.doc_tokens()[0], e = c.doc_tokens()[1];
  int64_t code = site.code(b + 1, 0, 0);
  std::string want;
  std::string_view text = c.document_text(0);
  if (site.code(b, 0, 0) == code) want += "[[<|endoftext|>]] ";
  for (int64_t p = b + 1; p < e; ++p) {
    size_t i = size_t(p - b - 1);
    if (i > 0 && i % 2 == 0) want += "-";
    bool fires = site.code(p, 0, 0) == code;
    want += (fires ? "[[" : "") + std::string(1, text[i]) + (fires ? "]]" : "");
  }
  Json j = json_parse(run_tool("code " + cache + " layer0.mlp " + std::to_string(code) + " --max 1 --json").out);
  ASSERT_EQ(j.at("examples").size(), 1u) << j.dump();
  EXPECT_EQ(j.at("examples").at(0).at("doc").as_int(), 0);
  EXPECT_EQ(j.at("examples").at(0).at("snippet").as_string(), want);
  EXPECT_EQ(j.at("activations").as_int(), site.count(0, code));  // k = 1: every activation is in slot 0
  fs::remove_all(dir);
}
