// The code cache's writer, inverted index and reader (tools/cache/), on
// small caches written here, checked against the arrays as numpy would read
// them and against indexes computed by brute force.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "frontend/npy.h"
#include "support/error.h"
#include "tests/cache_test_util.h"
#include "tools/cache/cache_writer.h"
#include "tools/cache/code_cache.h"
#include "tools/cache/code_index.h"

namespace fs = std::filesystem;
using namespace cb;
using namespace cb::cache;

namespace {

CacheManifest base_manifest() {
  CacheManifest m;
  m.block_mode = "document";
  m.block_size = 16;
  m.tokenizer = "tokfsm:10";
  m.model = Json::Object{};
  m.source = Json::Object{};
  m.build = Json::Object{};
  return m;
}

// Documents of random digit strings, one token per digit after an empty BOS,
// and random codes; returns the ids written [N, G, k] per site.
struct Written {
  std::vector<std::string> docs;
  std::vector<std::vector<int64_t>> ids;  // per site
};

Written write_random_cache(const std::string& dir, const std::vector<CacheSite>& sites, int64_t docs, uint32_t seed,
                           size_t index_memory = size_t(1) << 20) {
  std::mt19937 rng(seed);
  WriterOptions o;
  o.index_memory = index_memory;
  CacheWriter w(dir, sites, o);
  Written out;
  out.ids.resize(sites.size());
  for (int64_t d = 0; d < docs; ++d) {
    int64_t len = 1 + int64_t(rng() % 12);
    std::string text;
    std::vector<uint32_t> tokens = {10};
    std::vector<int64_t> starts = {0};
    for (int64_t i = 0; i < len; ++i) {
      int digit = int(rng() % 10);
      starts.push_back(int64_t(text.size()));
      text += char('0' + digit);
      tokens.push_back(uint32_t(digit));
    }
    w.add_document(text, tokens, starts);
    w.add_row(int64_t(tokens.size()));
    for (size_t s = 0; s < sites.size(); ++s) {
      const CacheSite& site = sites[s];
      std::vector<int64_t> ids;
      std::vector<float> scores;
      for (size_t t = 0; t < tokens.size(); ++t)
        for (int64_t g = 0; g < site.groups; ++g) {
          // k distinct codes per token and member
          std::vector<int64_t> pick;
          while (int64_t(pick.size()) < site.k) {
            int64_t c = int64_t(rng() % uint32_t(site.codes));
            if (std::find(pick.begin(), pick.end(), c) == pick.end()) pick.push_back(c);
          }
          for (int64_t c : pick) ids.push_back(c), scores.push_back(float(c) / 8.f);
        }
      w.add_codes(s, ids.data(), scores.data(), int64_t(tokens.size()));
      out.ids[s].insert(out.ids[s].end(), ids.begin(), ids.end());
    }
    w.add_row_metrics(1.5 * double(tokens.size() - 1), 1, double(tokens.size() - 1));
    out.docs.push_back(text);
  }
  w.finish(base_manifest());
  return out;
}

}  // namespace

TEST(CodeCache, RoundTripAndIndexMatchBruteForce) {
  std::string dir = cb::test::fresh_cache_path("code_cache", "roundtrip");
  std::vector<CacheSite> sites = {cb::test::cache_site("layer0.mlp", 1, 7, 2, true),
                                  cb::test::cache_site("layer1.attn_preproj", 3, 5, 1, false)};
  // A 64-byte index budget forces many passes (and single codes larger than the buffer).
  Written w = write_random_cache(dir, sites, 40, 7, 64);
  CodeCache c = CodeCache::open(dir);
  ASSERT_EQ(c.num_documents(), 40);
  int64_t N = c.num_tokens();
  ASSERT_EQ(int64_t(w.ids[0].size()), N * 2);
  for (int64_t d = 0; d < 40; ++d) {
    EXPECT_EQ(std::string(c.document_text(d)), w.docs[size_t(d)]);
    int64_t first = c.doc_tokens()[size_t(d)];
    EXPECT_EQ(c.tokens()[size_t(first)], 10u);  // the BOS
    EXPECT_EQ(c.token_text(first), "");         // spans no text
    for (size_t b = 0; b < w.docs[size_t(d)].size(); ++b) {
      int64_t t = c.token_at(d, int64_t(b));
      EXPECT_EQ(t, first + 1 + int64_t(b));
      EXPECT_EQ(c.token_text(t), w.docs[size_t(d)].substr(b, 1));
      EXPECT_EQ(c.document_of(t), d);
    }
  }
  for (size_t s = 0; s < sites.size(); ++s) {
    const SiteArrays& a = c.site(sites[s].name);
    const CacheSite& info = sites[s];
    for (int64_t g = 0; g < info.groups; ++g)
      for (int64_t code = 0; code < info.codes; ++code) {
        std::vector<int64_t> expect;
        for (int64_t p = 0; p < N; ++p)
          for (int64_t slot = 0; slot < info.k; ++slot)
            if (w.ids[s][size_t((p * info.groups + g) * info.k + slot)] == code) expect.push_back(p);
        PositionList got = a.positions(g, code);
        ASSERT_EQ(got.size(), expect.size()) << info.name << " g " << g << " code " << code;
        for (size_t i = 0; i < expect.size(); ++i) EXPECT_EQ(got[i], expect[i]);
        EXPECT_EQ(a.count(g, code), int64_t(expect.size()));
      }
    for (int64_t p = 0; p < N; ++p)
      for (int64_t slot = 0; slot < info.k; ++slot)
        EXPECT_EQ(a.code(p, 0, slot), w.ids[s][size_t(p * info.groups * info.k + slot)]);
  }
  // Scores are float16 of what was given (exact for these multiples of 1/8).
  EXPECT_FLOAT_EQ(c.site("layer0.mlp").score(3, 0, 1), float(w.ids[0][3 * 2 + 1]) / 8.f);
  // Metrics: loss 1.5 per predicted token.
  EXPECT_DOUBLE_EQ(c.manifest().metrics.at("loss").as_double(), 1.5);
  // The arrays are plain .npy files.
  Tensor tokens = npy_read(dir + "/tokens.npy");
  EXPECT_EQ(tokens.dtype(), DType::u32);
  EXPECT_EQ(tokens.dims(), std::vector<int64_t>{N});
  fs::remove_all(dir);
}

TEST(CodeCache, ErrorsNameTheFile) {
  std::string dir = cb::test::fresh_cache_path("code_cache", "errors");
  write_random_cache(dir, {cb::test::cache_site("layer0.mlp", 1, 7, 2, false)}, 5, 3);
  // A truncated array.
  fs::resize_file(dir + "/sites/layer0.mlp/ids.npy", 130);
  try {
    CodeCache::open(dir);
    FAIL() << "opened a truncated cache";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ids.npy: truncated"), std::string::npos) << e.what();
  }
  fs::remove(dir + "/rows.npy");
  EXPECT_THROW(CodeCache::open(dir), Error);
  fs::remove(dir + "/cache.json");
  try {
    CodeCache::open(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cache.json is missing"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(CodeCache, WriterRefusesToClobber) {
  std::string dir = cb::test::fresh_cache_path("code_cache", "clobber");
  fs::create_directories(dir);
  { std::ofstream(dir + "/notes.txt") << "mine"; }
  EXPECT_THROW(CacheWriter(dir, {}, WriterOptions{}), Error);
  EXPECT_TRUE(fs::exists(dir + "/notes.txt"));
  fs::remove_all(dir);
  write_random_cache(dir, {cb::test::cache_site("layer0.mlp", 1, 7, 1, false)}, 3, 1);
  EXPECT_THROW(CacheWriter(dir, {}, WriterOptions{}), Error);  // a cache: needs overwrite
  WriterOptions o;
  o.overwrite = true;
  CacheWriter w(dir, {cb::test::cache_site("layer0.mlp", 1, 7, 1, false)}, o);
  w.finish(base_manifest());
  EXPECT_EQ(CodeCache::open(dir).num_tokens(), 0);
  fs::remove_all(dir);
}
