// `codebook cache export` (tools/cache/cache_export.h) on small caches written
// here with multi-byte text split between tokens, ragged and packed rows,
// vanilla and group sites: tests/cache_export_check.py loads each export the
// way the original library's load helpers do (original) or with np.load (npz)
// and compares it with the cache read by numpy directly; the numpy example of
// docs/cache.md (tests/cache_numpy_example.py) runs on the same cache. The
// Python checks skip without python3 or numpy.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "frontend/npy.h"
#include "support/error.h"
#include "support/utf8.h"
#include "tests/cache_test_util.h"
#include "tests/cli_util.h"
#include "tools/cache/cache_export.h"
#include "tools/cache/cache_writer.h"
#include "tools/cache/code_cache.h"

namespace fs = std::filesystem;
using namespace cb;
using namespace cb::cache;

namespace {

constexpr uint32_t kBos = 50256;

// Text with characters of 1 to 4 bytes, a NUL, one invalid byte and a cut sequence.
const std::vector<std::string> kDocs = {
    "Hello w\xc3\xb6rld, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e is here",  // wörld, 日本語
    "na\xc3\xafve caf\xc3\xa9 \xe2\x98\x95 and \xf0\x9f\x8e\x89 party",  // naïve café ☕ 🎉
    std::string("plain\0ascii text", 16),                                // a NUL
    "bad \xff byte and a cut \xe6\x97",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"
    " again \xe8\xaa\x9e caf\xc3\xa9",  // 日本語 again 語 café
};

// Every document: an empty <|endoftext|>, then tokens of 1 to 3 bytes cut
// without regard to characters (as byte-level BPE may). Rows: one per
// document (`pack_rows` 0: ragged), else `pack_rows` tokens each across
// documents (the last shorter). Sites: layer0.mlp and layer1.mlp (k 2, some
// second slots blocked), layer0.attn_preproj (3 members, k 1, scores).
std::vector<CacheSite> write_cache(const std::string& dir, int64_t pack_rows) {
  std::vector<CacheSite> sites = {cb::test::cache_site("layer0.mlp", 1, 7, 2, false),
                                  cb::test::cache_site("layer1.mlp", 1, 7, 2, false),
                                  cb::test::cache_site("layer0.attn_preproj", 3, 5, 1, true)};
  std::mt19937 rng(11);
  CacheWriter w(dir, sites, WriterOptions{});
  int64_t total = 0;
  for (const std::string& text : kDocs) {
    std::vector<uint32_t> tokens = {kBos};
    std::vector<int64_t> starts = {0};
    for (size_t b = 0; b < text.size();) {
      size_t len = std::min<size_t>(1 + rng() % 3, text.size() - b);
      tokens.push_back(uint32_t(1000 + uint8_t(text[b]) + 256 * len));
      starts.push_back(int64_t(b));
      b += len;
    }
    w.add_document(text, tokens, starts);
    int64_t n = int64_t(tokens.size());
    total += n;
    if (!pack_rows) w.add_row(n);
    for (size_t s = 0; s < sites.size(); ++s) {
      const CacheSite& site = sites[s];
      std::vector<int64_t> ids;
      std::vector<float> scores;
      for (int64_t t = 0; t < n; ++t)
        for (int64_t g = 0; g < site.groups; ++g) {
          int64_t first = int64_t(rng() % uint32_t(site.codes));
          ids.push_back(first);
          scores.push_back(0.5f);
          if (site.k == 2)
            ids.push_back(rng() % 4 == 0 ? -1 : (first + 1 + int64_t(rng() % 6)) % 7), scores.push_back(0.25f);
        }
      w.add_codes(s, ids.data(), scores.data(), n);
    }
  }
  int64_t rows = 0;
  if (pack_rows)
    for (int64_t b = 0; b < total; b += pack_rows, ++rows) w.add_row(std::min(pack_rows, total - b));
  else
    rows = int64_t(kDocs.size());
  for (int64_t r = 0; r < rows; ++r) w.add_row_metrics(2.0 + double(r), 3, 4);
  CacheManifest m;
  m.block_mode = pack_rows ? "pack" : "document";
  m.block_size = pack_rows ? pack_rows : 64;
  m.tokenizer = "../shared/data/gpt2-bpe";
  m.model = Json::Object{};
  m.model["file"] = "/models/tiny cb: model.onnx";  // ": " must not reach info.txt as is
  m.source = Json::Object{};
  m.source["kind"] = "text";
  m.source["path"] = "corpus.txt";
  m.build = Json::Object{};
  m.build["seed"] = 5;
  w.finish(m);
  return sites;
}

bool have_numpy() { return cb::test::run_command("python3 -c 'import numpy'").code == 0; }

// cache_export_main with these arguments; cb::Error propagates.
int export_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "export");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return tools::cache_export_main(int(argv.size()), argv.data());
}

std::string error_of(const std::vector<std::string>& args) {
  try {
    export_cli(args);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

cb::test::Result check_script(const std::string& args) {
  return cb::test::run_command("python3 " + std::string(CB_SOURCE_DIR) + "/tests/cache_export_check.py " + args);
}

}  // namespace

TEST(CacheExport, OriginalLayoutRaggedRowsVanillaSites) {
  if (!have_numpy()) GTEST_SKIP() << "python3 with numpy is needed";
  std::string dir = cb::test::fresh_cache_path("cache_export", "ragged"),
              out = cb::test::fresh_cache_path("cache_export", "ragged_out");
  write_cache(dir, 0);
  ASSERT_EQ(export_cli({dir, "--format", "original", "--placement", "mlp", "-o", out}), 0);
  for (const char* f : {"tokens.npy", "tokens_str.npy", "tokens_text.npy", "token_byte_pos.npy", "cb_acts.pkl",
                        "act_count_ft_tkns.pkl", "metrics.npy", "info.txt"})
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  EXPECT_FALSE(fs::exists(fs::path(out) / ".staging"));
  EXPECT_FALSE(fs::exists(out + ".partial"));
  // 語 is split between tokens; the hit must land on the token holding its first byte.
  cb::test::Result r = check_script("original " + dir + " " + out + " mlp " + std::to_string(kBos) +
                                    " '\xe6\x97\xa5\xe6\x9c\xac(\xe8\xaa\x9e)'");
  EXPECT_EQ(r.code, 0) << r.out;
  // info.txt: one "key: value" per line, values without ": ".
  std::ifstream info(fs::path(out) / "info.txt");
  std::string line, all;
  while (std::getline(info, line)) {
    EXPECT_EQ(line.find(": "), line.rfind(": ")) << line;
    all += line + "\n";
  }
  EXPECT_NE(all.find("pretrained_path: /models/tiny cb:model.onnx\n"), std::string::npos) << all;
  EXPECT_NE(all.find("gcb: _vcb\nn_layers: 2\nn_grps: None\nseed: 5\nmax_samples: 5\n"), std::string::npos) << all;
  fs::remove_all(dir);
  fs::remove_all(out);
}

TEST(CacheExport, OriginalLayoutPackedRowsGroupSite) {
  if (!have_numpy()) GTEST_SKIP() << "python3 with numpy is needed";
  std::string dir = cb::test::fresh_cache_path("cache_export", "packed"),
              out = cb::test::fresh_cache_path("cache_export", "packed_out");
  write_cache(dir, 7);
  // A site names its placement; rows of 7 tokens cross documents and characters.
  ASSERT_EQ(export_cli({dir, "--format", "original", "--site", "layer0.attn_preproj", "-o", out}), 0);
  cb::test::Result r =
      check_script("original " + dir + " " + out + " attn_preproj " + std::to_string(kBos) + " 'caf(\xc3\xa9)'");
  EXPECT_EQ(r.code, 0) << r.out;
  r = check_script("original " + dir + " " + out + " attn_preproj " + std::to_string(kBos) +
                   " '\xe2\x98\x95|\xf0\x9f\x8e\x89'");
  EXPECT_EQ(r.code, 0) << r.out;
  // --overwrite replaces an earlier export; --pad-id sets the padding.
  ASSERT_EQ(export_cli({dir, "--format", "original", "--placement", "attn_preproj", "-o", out, "--overwrite",
                        "--pad-id", "0"}),
            0);
  r = check_script("original " + dir + " " + out + " attn_preproj 0 'caf(\xc3\xa9)'");
  EXPECT_EQ(r.code, 0) << r.out;
  fs::remove_all(dir);
  fs::remove_all(out);
}

TEST(CacheExport, NpzArchivesEqualTheCacheArrays) {
  if (!have_numpy()) GTEST_SKIP() << "python3 with numpy is needed";
  std::string dir = cb::test::fresh_cache_path("cache_export", "npz"),
              out = cb::test::fresh_cache_path("cache_export", "npz_out");
  write_cache(dir, 7);
  ASSERT_EQ(export_cli({dir, "--format", "npz", "-o", out}), 0);
  for (const char* f : {"tokens.npz", "layer0.mlp.npz", "layer1.mlp.npz", "layer0.attn_preproj.npz", "cache.json"})
    EXPECT_TRUE(fs::exists(fs::path(out) / f)) << f;
  cb::test::Result r = check_script("npz " + dir + " " + out);
  EXPECT_EQ(r.code, 0) << r.out;
  // --site: that site only.
  std::string one = cb::test::fresh_cache_path("cache_export", "npz_one");
  ASSERT_EQ(export_cli({dir, "--format", "npz", "--site", "layer1.mlp", "-o", one}), 0);
  EXPECT_TRUE(fs::exists(fs::path(one) / "layer1.mlp.npz"));
  EXPECT_FALSE(fs::exists(fs::path(one) / "layer0.mlp.npz"));
  fs::remove_all(dir);
  fs::remove_all(out);
  fs::remove_all(one);
}

TEST(CacheExport, ErrorsSayWhatToChange) {
  std::string dir = cb::test::fresh_cache_path("cache_export", "errors"),
              out = cb::test::fresh_cache_path("cache_export", "errors_out");
  write_cache(dir, 0);
  std::string e = error_of({dir, "--format", "original", "-o", out});
  EXPECT_NE(e.find("has 2: mlp, attn_preproj; choose one with --placement"), std::string::npos) << e;
  e = error_of({dir, "--format", "original", "--placement", "qkv", "-o", out});
  EXPECT_NE(e.find("'qkv' is neither a placement nor a site"), std::string::npos) << e;
  e = error_of({dir, "--format", "csv", "-o", out});
  EXPECT_NE(e.find("choose original or npz"), std::string::npos) << e;
  e = error_of({dir, "--format", "npz", "--site", "layer5.mlp", "-o", out});
  EXPECT_NE(e.find("it has: layer0.mlp, layer1.mlp, layer0.attn_preproj"), std::string::npos) << e;
  // A directory holding something else is left alone.
  fs::create_directories(out);
  { std::ofstream(fs::path(out) / "notes.txt") << "mine"; }
  e = error_of({dir, "--format", "npz", "-o", out, "--overwrite"});
  EXPECT_NE(e.find("no export of this format"), std::string::npos) << e;
  EXPECT_TRUE(fs::exists(fs::path(out) / "notes.txt"));
  EXPECT_FALSE(fs::exists(out + ".partial"));
  // A missing interpreter is named.
  setenv("CB_PYTHON", "/nonexistent/python3", 1);
  fs::remove_all(out);
  e = error_of({dir, "--format", "npz", "-o", out});
  unsetenv("CB_PYTHON");
  EXPECT_NE(e.find("needs Python 3 (`/nonexistent/python3`"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".partial"));  // removed on failure
  // An interpreter without numpy: --format original says so before writing anything.
  std::string fake = out + "_python";
  { std::ofstream(fake) << "#!/bin/sh\ncase \"$3\" in check) exit 3;; esac\nexec python3 \"$@\"\n"; }
  fs::permissions(fake, fs::perms::owner_all);
  setenv("CB_PYTHON", fake.c_str(), 1);
  e = error_of({dir, "--format", "original", "--placement", "mlp", "-o", out});
  unsetenv("CB_PYTHON");
  EXPECT_NE(e.find("needs numpy, which `" + fake + "` cannot import"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".partial"));
  fs::remove(fake);
  fs::remove_all(dir);
  fs::remove_all(out);
}

// The example in docs/cache.md is tests/cache_numpy_example.py, less its docstring.
TEST(CacheNumpyExample, DocsShowTheTestedScript) {
  std::ifstream d(std::string(CB_SOURCE_DIR) + "/docs/cache.md"),
      p(std::string(CB_SOURCE_DIR) + "/tests/cache_numpy_example.py");
  std::stringstream doc, script;
  doc << d.rdbuf();
  script << p.rdbuf();
  std::string text = doc.str(), code = script.str();
  size_t section = text.find("## Reading a cache with numpy");
  ASSERT_NE(section, std::string::npos);
  size_t begin = text.find("```python\n", section);
  ASSERT_NE(begin, std::string::npos);
  begin += 10;
  std::string block = text.substr(begin, text.find("```", begin) - begin);
  size_t body = code.find("\"\"\"", 3) + 3;
  while (body < code.size() && code[body] == '\n') ++body;
  EXPECT_EQ(block, code.substr(body));
}

// docs/cache.md's numpy example, on a cache: the documents' text, a token's
// codes and a code's positions, as the C++ reader sees them.
TEST(CacheNumpyExample, RunsOnACache) {
  if (!have_numpy()) GTEST_SKIP() << "python3 with numpy is needed";
  std::string dir = cb::test::fresh_cache_path("cache_export", "example");
  write_cache(dir, 0);
  cb::test::Result r =
      cb::test::run_command("python3 " + std::string(CB_SOURCE_DIR) + "/tests/cache_numpy_example.py " + dir);
  ASSERT_EQ(r.code, 0) << r.out;
  CodeCache c = CodeCache::open(dir);
  EXPECT_NE(r.out.find("document 0: " + std::string(c.document_text(0)) + "\n"), std::string::npos) << r.out;
  const SiteArrays& s = c.site("layer0.mlp");
  const int64_t pos = 5;
  std::string codes = "[" + std::to_string(s.code(pos, 0, 0));
  if (s.code(pos, 0, 1) >= 0) codes += ", " + std::to_string(s.code(pos, 0, 1));
  codes += "]";
  EXPECT_NE(r.out.find("token 5 (id " + std::to_string(c.tokens()[pos]) + ", '" +
                       utf8_replace_invalid(c.token_text(pos)) + "') has codes " + codes + " at layer0.mlp"),
            std::string::npos)
      << r.out;
  int64_t code = s.code(pos, 0, 0);
  PositionList where = s.positions(0, code);
  std::string list;
  for (size_t i = 0; i < where.size() && i < 10; ++i) list += (i ? ", " : "") + std::to_string(where[i]);
  EXPECT_NE(r.out.find("code " + std::to_string(code) + " fires at " + std::to_string(where.size()) + " tokens: [" +
                       list + "]"),
            std::string::npos)
      << r.out;
  fs::remove_all(dir);
}

// A cache built by `codebook cache build` (the tiny GPT-2 with codebooks at
// mlp and attn_preproj, documents of GPT-2 byte tokens, so every multi-byte
// character is split between tokens) exports and reads back as above.
TEST(CacheExport, BuiltCacheEndToEnd) {
  if (!have_numpy()) GTEST_SKIP() << "python3 with numpy is needed";
  std::string dir = cb::test::fresh_cache_path("cache_export", "built");
  fs::create_directories(dir);
  // GPT-2's byte tokens: ids 0..255 stand for the bytes in this order.
  std::vector<int> order;
  for (int b = 33; b <= 126; ++b) order.push_back(b);
  for (int b = 161; b <= 172; ++b) order.push_back(b);
  for (int b = 174; b <= 255; ++b) order.push_back(b);
  for (int b = 0; b < 256; ++b)
    if (std::find(order.begin(), order.end(), b) == order.end()) order.push_back(b);
  std::vector<int64_t> byte_id(256);
  for (size_t i = 0; i < order.size(); ++i) byte_id[size_t(order[i])] = int64_t(i);
  const int64_t len = 30;
  std::vector<int64_t> ids;
  for (size_t d : {0, 1, 4}) {
    std::string text = kDocs[d].substr(0, len);
    text.resize(size_t(len), ' ');
    for (char ch : text) ids.push_back(byte_id[uint8_t(ch)]);
  }
  npy_write(dir + "/ids.npy", Tensor::from_vector(ids, {3, len}));
  std::string bin = CB_CODEBOOK_BIN, model = dir + "/cb.onnx", cache = dir + "/cache";
  cb::test::Result r =
      cb::test::run_command(bin + " compile " + CB_SOURCE_DIR + "/tests/models/gpt2/model.onnx -o " + model +
                            " --at mlp,attn_preproj --groups 1,heads --codes 16,8 -k 2 --layers all --tokenizer " +
                            CB_SOURCE_DIR + "/../shared/data/gpt2-bpe");
  ASSERT_EQ(r.code, 0) << r.out;
  r = cb::test::run_command(bin + " cache build " + model + " -o " + cache + " --data " + dir +
                            "/ids.npy --block-size 16 --progress off");
  ASSERT_EQ(r.code, 0) << r.out;
  // No document starts with <|endoftext|> here: the padding id comes from the tokenizer.
  r = cb::test::run_command(bin + " cache export " + cache + " --format original --site layer1.attn_preproj -o " + dir +
                            "/orig");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("padded with token 50256"), std::string::npos) << r.out;
  r = check_script("original " + cache + " " + dir + "/orig attn_preproj 50256 '\xe6\x9c\xac(\xe8\xaa\x9e)'");
  EXPECT_EQ(r.code, 0) << r.out;
  r = cb::test::run_command(bin + " cache export " + cache + " --format npz -o " + dir + "/npz");
  ASSERT_EQ(r.code, 0) << r.out;
  r = check_script("npz " + cache + " " + dir + "/npz");
  EXPECT_EQ(r.code, 0) << r.out;
  r = cb::test::run_command("python3 " + std::string(CB_SOURCE_DIR) + "/tests/cache_numpy_example.py " + cache);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("document 0: Hello w\xc3\xb6rld"), std::string::npos) << r.out;
  fs::remove_all(dir);
}
