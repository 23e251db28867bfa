// Code search over synthetic code caches (tools/cache/code_search.h,
// code_examples.h, neuron_baseline.h): matched tokens against matches found
// by plain string scanning, recall and precision against counts made from the
// ids as written (not the cache's index), topic codes, example snippets
// against hand-written strings, and the neuron baseline against a brute-force
// computation on synthetic activations.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>

#include "support/error.h"
#include "tests/cache_test_util.h"
#include "tools/cache/cache_writer.h"
#include "tools/cache/code_cache.h"
#include "tools/cache/code_examples.h"
#include "tools/cache/code_search.h"
#include "tools/cache/neuron_baseline.h"

namespace fs = std::filesystem;
using namespace cb;
using namespace cb::cache;

namespace {

// A document: its text and where each of its tokens after the BOS starts.
struct Doc {
  std::string text;
  std::vector<int64_t> starts;
};

// Codes of token `pos` (global), whose text is `tok`: fn(pos, tok, site, g, slot).
using CodeFn = std::function<int64_t(int64_t, std::string_view, size_t, int64_t, int64_t)>;

struct Written {
  std::string dir;
  std::vector<Doc> docs;
  std::vector<CacheSite> sites;
  std::vector<std::vector<int64_t>> ids;  // per site [N, G, k]
  std::vector<std::string> token_text;    // per global position
  std::vector<int64_t> doc_first;         // first global position of each document
  std::vector<int64_t> doc_of;            // per global position
  int64_t N = 0;
};

// Every document starts with an empty-span BOS (token 0), then its tokens (ids 1..).
Written write_cache(const std::string& dir, const std::vector<Doc>& docs, const std::vector<CacheSite>& sites,
                    const CodeFn& fn, const std::string& tokenizer = "test") {
  Written w;
  w.dir = dir;
  w.docs = docs;
  w.sites = sites;
  w.ids.resize(sites.size());
  CacheWriter cw(dir, sites, WriterOptions{});
  for (size_t d = 0; d < docs.size(); ++d) {
    const Doc& doc = docs[d];
    std::vector<uint32_t> tokens = {0};
    std::vector<int64_t> starts = {0};
    std::vector<std::string> texts = {""};
    for (size_t i = 0; i < doc.starts.size(); ++i) {
      int64_t b = doc.starts[i], e = i + 1 < doc.starts.size() ? doc.starts[i + 1] : int64_t(doc.text.size());
      starts.push_back(b);
      texts.push_back(doc.text.substr(size_t(b), size_t(e - b)));
      tokens.push_back(uint32_t(1 + (uint8_t(doc.text[size_t(b)]) % 50)));
    }
    cw.add_document(doc.text, tokens, starts);
    cw.add_row(int64_t(tokens.size()));
    w.doc_first.push_back(w.N);
    for (size_t s = 0; s < sites.size(); ++s) {
      std::vector<int64_t> ids;
      for (size_t t = 0; t < tokens.size(); ++t)
        for (int64_t g = 0; g < sites[s].groups; ++g)
          for (int64_t slot = 0; slot < sites[s].k; ++slot) ids.push_back(fn(w.N + int64_t(t), texts[t], s, g, slot));
      std::vector<float> scores(ids.size(), 0.f);
      cw.add_codes(s, ids.data(), scores.data(), int64_t(tokens.size()));
      w.ids[s].insert(w.ids[s].end(), ids.begin(), ids.end());
    }
    cw.add_row_metrics(0, 0, 0);
    for (auto& t : texts) w.token_text.push_back(t), w.doc_of.push_back(int64_t(d));
    w.N += int64_t(tokens.size());
  }
  CacheManifest m;
  m.block_mode = "document";
  m.block_size = 64;
  m.tokenizer = tokenizer;
  m.model = Json::Object{};
  m.source = Json::Object{};
  m.build = Json::Object{};
  cw.finish(m);
  return w;
}

// Random text over an alphabet with 2- and 3-byte characters, cut into tokens
// of 1 to 3 bytes wherever (so characters are split across tokens).
std::vector<Doc> random_docs(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> alphabet = {"a", "b", "c", "d", " ", "\xC3\xA9" /* é */, "\xE2\x82\xAC" /* € */};
  std::vector<Doc> docs;
  for (int64_t d = 0; d < n; ++d) {
    Doc doc;
    int64_t chars = 1 + int64_t(rng() % 40);
    for (int64_t i = 0; i < chars; ++i) doc.text += alphabet[rng() % alphabet.size()];
    for (int64_t b = 0; b < int64_t(doc.text.size()); b += 1 + int64_t(rng() % 3)) doc.starts.push_back(b);
    docs.push_back(doc);
  }
  return docs;
}

// The global position of the token holding byte `offset` of document d, by scanning.
int64_t token_of_byte(const Written& w, size_t d, int64_t offset) {
  const Doc& doc = w.docs[d];
  int64_t t = 0;
  for (size_t i = 0; i < doc.starts.size(); ++i)
    if (doc.starts[i] <= offset) t = int64_t(i) + 1;
  return w.doc_first[d] + t;
}

// Matched tokens of a literal pattern by plain string scanning: every
// non-overlapping occurrence of `literal`, attributed to byte `group_at` of it.
std::vector<int64_t> literal_matches(const Written& w, const std::string& literal, int64_t group_at, int parity = -1) {
  std::vector<int64_t> out;
  for (size_t d = 0; d < w.docs.size(); ++d) {
    const std::string& t = w.docs[d].text;
    for (size_t at = t.find(literal); at != std::string::npos;) {
      int64_t off = int64_t(at) + group_at;
      if (parity >= 0 && (off & 1) != parity) {  // consumes nothing: an overlapping match may count
        at = t.find(literal, at + 1);
        continue;
      }
      out.push_back(token_of_byte(w, d, off));
      at = t.find(literal, at + literal.size());
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Codes correlated with the text: member g's slot 0 = the token's first byte
// mod K shifted by g; later slots distinct steps away from it, pseudo-random,
// blocked (-1) now and then.
int64_t correlated_code(int64_t pos, std::string_view tok, size_t site, int64_t g, int64_t slot, int64_t K, int64_t k) {
  int64_t c0 = tok.empty() ? 0 : (uint8_t(tok[0]) + g) % K;
  if (slot == 0) return c0;
  uint32_t h = uint32_t(pos * 2654435761u) ^ uint32_t(site * 40503u + g * 977u);
  h = h * 2246822519u ^ (h >> 13);
  if ((h >> 3) % 17 == uint32_t(slot)) return -1;
  int64_t step = 1 + int64_t(h % uint32_t((K - 1) / (k - 1)));
  return (c0 + slot * step) % K;
}

// recall/precision of every code of every member straight from the written ids.
std::vector<CodeMatch> brute_force(const Written& w, const std::vector<int64_t>& matched, const SearchOptions& o) {
  std::vector<CodeMatch> all;
  const int64_t M = int64_t(matched.size());
  for (size_t s = 0; s < w.sites.size(); ++s) {
    const CacheSite& site = w.sites[s];
    int64_t slots = o.topk_slots > 0 ? std::min(o.topk_slots, site.k) : site.k;
    for (int64_t g = 0; g < site.groups; ++g) {
      std::map<int64_t, int64_t> acts, hits;
      auto codes_at = [&](int64_t p) {
        std::vector<int64_t> cs;
        for (int64_t slot = 0; slot < slots; ++slot) {
          int64_t c = w.ids[s][size_t((p * site.groups + g) * site.k + slot)];
          if (c >= 0) cs.push_back(c);
        }
        return cs;
      };
      for (int64_t p = 0; p < w.N; ++p)
        for (int64_t c : codes_at(p)) ++acts[c];
      for (int64_t p : matched)
        for (int64_t c : codes_at(p)) ++hits[c];
      std::vector<CodeMatch> member;
      for (auto [c, h] : hits) {
        if (double(h) / double(M) <= 0.01) continue;
        CodeMatch cm;
        cm.site = site.name, cm.group = g, cm.groups = site.groups, cm.code = c, cm.hits = h;
        cm.activations = acts[c];
        cm.precision = double(h) / double(acts[c]);
        cm.recall = double(h) / double(M);
        member.push_back(cm);
      }
      std::stable_sort(member.begin(), member.end(), [](auto& a, auto& b) {
        return a.precision != b.precision ? a.precision > b.precision : a.recall > b.recall;
      });
      if (int64_t(member.size()) > o.top) member.resize(size_t(o.top));
      for (auto& cm : member)
        if (cm.precision >= o.min_precision) all.push_back(cm);
    }
  }
  return all;
}

// Same codes with the same numbers, as sets.
void expect_same_codes(std::vector<CodeMatch> got, std::vector<CodeMatch> want) {
  auto key = [](const CodeMatch& c) { return std::make_tuple(c.site, c.group, c.code); };
  auto by_key = [&](const CodeMatch& a, const CodeMatch& b) { return key(a) < key(b); };
  std::sort(got.begin(), got.end(), by_key);
  std::sort(want.begin(), want.end(), by_key);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(key(got[i]), key(want[i]));
    EXPECT_EQ(got[i].hits, want[i].hits) << got[i].member_name() << " code " << got[i].code;
    EXPECT_EQ(got[i].activations, want[i].activations) << got[i].member_name() << " code " << got[i].code;
    EXPECT_DOUBLE_EQ(got[i].precision, want[i].precision);
    EXPECT_DOUBLE_EQ(got[i].recall, want[i].recall);
  }
}

class RandomCache : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::vector<CacheSite> sites = {cb::test::cache_site("layer0.mlp", 1, 300, 3),
                                    cb::test::cache_site("layer1.attn_preproj", 3, 257, 2)};
    w_ = new Written(write_cache(cb::test::fresh_cache_path("code_search", "random"), random_docs(60, 5), sites,
                                 [&](int64_t pos, std::string_view tok, size_t s, int64_t g, int64_t slot) {
                                   return correlated_code(pos, tok, s, g, slot, sites[s].codes, sites[s].k);
                                 }));
    c_ = new CodeCache(CodeCache::open(w_->dir));
  }
  static void TearDownTestSuite() {
    fs::remove_all(w_->dir);
    delete c_;
    delete w_;
  }
  static Written* w_;
  static CodeCache* c_;
};
Written* RandomCache::w_ = nullptr;
CodeCache* RandomCache::c_ = nullptr;

}  // namespace

TEST_F(RandomCache, MatchedTokensAreThoseOfTheGroupsFirstByte) {
  SearchOptions o;
  o.threads = 2;
  // Group 1 at byte 1 of "b c"; no group: the whole match; multi-byte characters
  // split across tokens go to the token holding their first byte.
  EXPECT_EQ(match_positions(*c_, "b( c)", o), literal_matches(*w_, "b c", 1));
  EXPECT_EQ(match_positions(*c_, "b c", o), literal_matches(*w_, "b c", 0));
  EXPECT_EQ(match_positions(*c_, "(?:b) c", o), literal_matches(*w_, "b c", 0));
  EXPECT_EQ(match_positions(*c_, "\xC3\xA9(\xE2\x82\xAC)", o), literal_matches(*w_, "\xC3\xA9\xE2\x82\xAC", 2));
  EXPECT_EQ(match_positions(*c_, "(\xE2\x82\xAC)", o), literal_matches(*w_, "\xE2\x82\xAC", 0));
  std::vector<int64_t> euro = literal_matches(*w_, "\xE2\x82\xAC", 0);
  ASSERT_GT(euro.size(), 10u);
  // Non-overlapping: "aa" in "aaa" matches once.
  EXPECT_EQ(match_positions(*c_, "(a)a", o), literal_matches(*w_, "aa", 0));
  // Parity of the group's byte offset in its document.
  o.parity = 0;
  EXPECT_EQ(match_positions(*c_, "(a)", o), literal_matches(*w_, "a", 0, 0));
  o.parity = 1;
  EXPECT_EQ(match_positions(*c_, "(a)", o), literal_matches(*w_, "a", 0, 1));
  EXPECT_FALSE(literal_matches(*w_, "a", 0, 1).empty());
  // A match at the wrong parity does not hide an overlapping one at the right parity.
  for (int parity : {0, 1}) {
    o.parity = parity;
    EXPECT_EQ(match_positions(*c_, "a(a)", o), literal_matches(*w_, "aa", 1, parity));
    EXPECT_NE(literal_matches(*w_, "aa", 1, parity), literal_matches(*w_, "aa", 1, -1));
  }
  // One thread and two find the same.
  o.parity = -1;
  o.threads = 1;
  EXPECT_EQ(match_positions(*c_, "[ab]+(c)", o), [&] {
    SearchOptions o2;
    o2.threads = 2;
    return match_positions(*c_, "[ab]+(c)", o2);
  }());
}

TEST_F(RandomCache, MatchesNeverCrossDocuments) {
  // "(d)[a-d ]*" runs on over document ends in the text as stored; each
  // document is searched alone: a 'd', then the run of [a-d ] after it.
  std::vector<int64_t> want;
  for (size_t d = 0; d < w_->docs.size(); ++d) {
    const std::string& t = w_->docs[d].text;
    for (size_t i = 0; i < t.size();) {
      if (t[i] != 'd') {
        ++i;
        continue;
      }
      want.push_back(token_of_byte(*w_, d, int64_t(i)));
      for (++i; i < t.size() && (t[i] == ' ' || (t[i] >= 'a' && t[i] <= 'd'));) ++i;
    }
  }
  ASSERT_GT(want.size(), 20u);
  EXPECT_EQ(match_positions(*c_, "(d)[a-d ]*", {}), want);
  // The same pattern with an (empty) anchor is searched document by document.
  EXPECT_EQ(match_positions(*c_, "(?:^|)(d)[a-d ]*", {}), want);
  // Anchors are per document.
  std::vector<int64_t> firsts;
  for (size_t d = 0; d < w_->docs.size(); ++d)
    if (w_->docs[d].text[0] == 'a') firsts.push_back(token_of_byte(*w_, d, 0));
  EXPECT_EQ(match_positions(*c_, "^(a)", {}), firsts);
}

TEST_F(RandomCache, EmptyGroupsAndEmptyMatchesCountNothing) {
  EXPECT_TRUE(match_positions(*c_, "x*", {}).empty());
  EXPECT_TRUE(match_positions(*c_, "a(x?)", {}).empty());
  // A group that is empty in some matches only: those are skipped.
  std::vector<int64_t> got = match_positions(*c_, "a(b?)", {});
  EXPECT_EQ(got, literal_matches(*w_, "ab", 1));
}

TEST_F(RandomCache, RecallAndPrecisionMatchBruteForce) {
  for (int64_t topk : {0, 1, 2}) {
    SearchOptions o;
    o.top = 1000;
    o.min_precision = 0;
    o.topk_slots = topk;
    for (const char* pattern : {"(a)", "b( c)", "\xC3\xA9"}) {
      SearchResult r = search(*c_, pattern, o);
      ASSERT_FALSE(r.positions.empty()) << pattern;
      SCOPED_TRACE(std::string(pattern) + " topk " + std::to_string(topk));
      expect_same_codes(r.codes, brute_force(*w_, r.positions, o));
      for (size_t i = 1; i < r.codes.size(); ++i) EXPECT_GE(r.codes[i - 1].precision, r.codes[i].precision);
    }
  }
  // The defaults: 8 per member by precision, then precision >= 0.5.
  SearchOptions o;
  SearchResult r = search(*c_, "(a)", o);
  expect_same_codes(r.codes, brute_force(*w_, r.positions, o));
  ASSERT_FALSE(r.codes.empty());
  // Slot 0 codes of "a" are pure: first byte 'a' shifted by the member.
  bool found = false;
  for (auto& cm : r.codes)
    if (cm.site == "layer1.attn_preproj" && cm.group == 2 && cm.code == ('a' + 2) % 257) found = true;
  EXPECT_TRUE(found);
  // Sorting by recall and by activations.
  o.sort = SearchSort::recall;
  r = search(*c_, "(a)", o);
  for (size_t i = 1; i < r.codes.size(); ++i) EXPECT_GE(r.codes[i - 1].recall, r.codes[i].recall);
  o.sort = SearchSort::acts;
  r = search(*c_, "(a)", o);
  for (size_t i = 1; i < r.codes.size(); ++i) EXPECT_GE(r.codes[i - 1].activations, r.codes[i].activations);
  // One site, one member.
  o.site = "layer1.attn_preproj[1]";
  r = search(*c_, "(a)", o);
  ASSERT_FALSE(r.codes.empty());
  for (auto& cm : r.codes) EXPECT_TRUE(cm.site == "layer1.attn_preproj" && cm.group == 1);
  o.site = "layer0.mlp";
  for (auto& cm : search(*c_, "(a)", o).codes) EXPECT_EQ(cm.site, "layer0.mlp");
}

TEST_F(RandomCache, BadPatternsAreErrors) {
  try {
    search(*c_, "a(b", {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing )"), std::string::npos) << e.what();
  }
  EXPECT_THROW(search(*c_, std::string(5000, 'a'), {}), Error);
  EXPECT_THROW(search(*c_, "((((a{100}){100}){100}){100})", {}), Error);  // RE2: bad repetition
  // Within 4096 bytes, but over RE2's memory bound once compiled.
  try {
    search(*c_, "\\pL{1000}\\pL{1000}\\pL{1000}\\pL{1000}", {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("too large for the 64 MiB"), std::string::npos) << e.what();
  }
  EXPECT_THROW(search(*c_, "(a)",
                      [] {
                        SearchOptions o;
                        o.site = "layer7.mlp";
                        return o;
                      }()),
               Error);
}

TEST_F(RandomCache, TopicCodesMatchBruteForce) {
  size_t found = 0;
  for (int64_t d : {0, 5, 17, 30, 41}) {
    int64_t b = w_->doc_first[size_t(d)], e = b + int64_t(w_->docs[size_t(d)].starts.size()) + 1;
    std::vector<CodeMatch> want;
    for (size_t s = 0; s < w_->sites.size(); ++s) {
      const CacheSite& site = w_->sites[s];
      for (int64_t g = 0; g < site.groups; ++g)
        for (int64_t c = 0; c < site.codes; ++c) {
          int64_t in = 0, all = 0;
          for (int64_t p = 0; p < w_->N; ++p)
            for (int64_t slot = 0; slot < site.k; ++slot)
              if (w_->ids[s][size_t((p * site.groups + g) * site.k + slot)] == c) (p >= b && p < e ? ++in : 0), ++all;
          double recall = double(in) / double(e - b), precision = all ? double(in) / double(all) : 0;
          if (in == 0 || recall < 0.1 || recall <= 0.01 || precision < 0.01) continue;
          CodeMatch cm;
          cm.site = site.name, cm.group = g, cm.code = c, cm.hits = in, cm.activations = all;
          cm.recall = recall, cm.precision = precision;
          want.push_back(cm);
        }
    }
    std::vector<CodeMatch> got = topic_codes(*c_, d, 0.1);
    found += want.size();
    expect_same_codes(got, want);
    for (size_t i = 1; i < got.size(); ++i) EXPECT_GE(got[i - 1].recall, got[i].recall);
  }
  EXPECT_GT(found, 3u);
  EXPECT_THROW(topic_codes(*c_, 60, 0.2), Error);
}

TEST(CodeExamples, SnippetsAsColorTokensWithTheTrailingContextFixed) {
  // One document of tokens "t0".."t9" (plus the BOS), codes: code 1 at t2, t3, t8.
  Doc doc;
  for (int i = 0; i < 10; ++i) doc.starts.push_back(int64_t(doc.text.size())), doc.text += "t" + std::to_string(i);
  doc.text[3] = '\n';  // t1 -> "t\n": shown escaped
  Doc second = doc;
  std::vector<CacheSite> sites = {cb::test::cache_site("layer0.mlp", 1, 4, 2)};
  Written w = write_cache(cb::test::fresh_cache_path("code_search", "snippets"), {doc, second, doc}, sites,
                          [](int64_t pos, std::string_view tok, size_t, int64_t, int64_t slot) -> int64_t {
                            int64_t i = pos % 11;  // token index within its document (BOS = 0)
                            bool fire = i == 3 || i == 4 || i == 9;
                            if (slot == 0) return fire && pos < 22 ? 1 : 0;
                            return fire && pos >= 22 ? 1 : 2;  // the third document: code 1 in slot 1
                          });
  CodeCache c = CodeCache::open(w.dir);
  std::vector<int64_t> top1 = code_positions(c.site("layer0.mlp"), 0, 1, 1);
  EXPECT_EQ(top1, (std::vector<int64_t>{3, 4, 9, 14, 15, 20}));
  std::vector<int64_t> any = code_positions(c.site("layer0.mlp"), 0, 1, 2);
  EXPECT_EQ(any.size(), 9u);
  auto docs = by_document(c, any, 2);
  ASSERT_EQ(docs.size(), 2u);  // exactly --max documents
  EXPECT_EQ(docs[1].first, 1);
  EXPECT_EQ(docs[1].second, (std::vector<int64_t>{14, 15, 20}));
  EXPECT_EQ(by_document(c, any).size(), 3u);
  // context 1: t0 after the start, " ... ", t1 before t2; t2 t3 adjacent; t4..t6 skipped; t8 then one trailing token.
  EXPECT_EQ(render_snippet(c, 0, {3, 4, 9}, 1, Highlight::plain()),
            "<|endoftext|> ... t\\n[[t2]][[t3]]t4 ... t7[[t8]]t9");
  // context 2: the gap t4..t7 (4 tokens) is < 2*2+1: all shown; two trailing tokens would run past the end.
  EXPECT_EQ(render_snippet(c, 0, {3, 4, 9}, 2, Highlight::plain()), "<|endoftext|>t0t\\n[[t2]][[t3]]t4t5t6t7[[t8]]t9");
  EXPECT_EQ(render_snippet(c, 0, {4}, 1, Highlight::plain()), "<|endoftext|> ... t2[[t3]]t4 ...");
  EXPECT_EQ(render_snippet(c, 0, {4}, 0, Highlight::terminal()), " ... \x1b[36mt3\x1b[0m ...");
  fs::remove_all(w.dir);
}

TEST(CodeExamples, TokFsmDocumentsAsStates) {
  Doc doc{"123456", {0, 1, 2, 3, 4, 5}};
  std::vector<CacheSite> sites = {cb::test::cache_site("layer0.mlp", 1, 4, 1)};
  Written w = write_cache(
      cb::test::fresh_cache_path("code_search", "tokfsm"), {doc}, sites,
      [](int64_t pos, std::string_view, size_t, int64_t, int64_t) -> int64_t { return pos % 4; }, "tokfsm:10");
  CodeCache c = CodeCache::open(w.dir);
  EXPECT_EQ(tokfsm_state_digits(c.manifest()), 2);
  EXPECT_EQ(render_tokfsm(c, 0, {2, 4}, 2, Highlight::plain()), "1[[2]]-3[[4]]-56");
  EXPECT_EQ(render_tokfsm(c, 0, {0, 6}, 3, Highlight::plain()), "[[<|endoftext|>]] 123-45[[6]]");
  // Parity picks state boundaries: "(\d)" at even offsets = each state's first digit.
  SearchOptions o;
  o.parity = 0;
  EXPECT_EQ(match_positions(c, "(\\d)", o), (std::vector<int64_t>{1, 3, 5}));
  o.parity = 1;
  EXPECT_EQ(match_positions(c, "(\\d)", o), (std::vector<int64_t>{2, 4, 6}));
  fs::remove_all(w.dir);
}

TEST(NeuronBaseline, BestNeuronMatchesBruteForce) {
  // 3 layers of 5 units over 400 tokens; activations from a fixed RNG, some
  // units made to prefer the matched tokens.
  const int64_t N = 400;
  std::vector<NeuronLayer> layers = {{"layer0.mlp_mid", 0, 5}, {"layer1.mlp_mid", 1, 5}, {"layer2.mlp_mid", 2, 5}};
  const int64_t U = 15;
  std::mt19937 rng(3);
  std::vector<int64_t> positions;
  for (int64_t p = 0; p < N; ++p)
    if (rng() % 5 == 0) positions.push_back(p);
  std::vector<float> acts(size_t(N * U));
  for (int64_t p = 0; p < N; ++p) {
    bool matched = std::binary_search(positions.begin(), positions.end(), p);
    for (int64_t u = 0; u < U; ++u) {
      float x = float(rng() % 1000) / 100.f;
      if (u == 7 && matched) x += 4;     // a good neuron
      if (u == 11 && matched) x += 6;    // a better one
      if (u == 3) x = float(rng() % 4);  // many ties
      acts[size_t(p * U + u)] = x;
    }
  }
  // Visited in uneven pieces.
  ActivationSource source = [&](const ActivationVisitor& visit) {
    for (int64_t b = 0; b < N;) {
      int64_t n = std::min<int64_t>(N - b, 1 + (b * 7) % 37);
      visit(b, n, acts.data() + b * U);
      b += n;
    }
  };
  const int64_t m = int64_t(positions.size());
  std::vector<int64_t> targets = {1, m / 4, m / 2, m / 2, m};
  // Brute force: per target and neuron, τ = n-th largest over the matched tokens.
  auto reference = [&](int64_t n) {
    NeuronMatch best;
    best.precision = -1;
    for (int64_t u = 0; u < U; ++u) {
      std::vector<float> v;
      for (int64_t p : positions) v.push_back(acts[size_t(p * U + u)]);
      std::sort(v.rbegin(), v.rend());
      float tau = v[size_t(n - 1)];
      int64_t reach = 0;
      for (int64_t p = 0; p < N; ++p) reach += acts[size_t(p * U + u)] >= tau;
      double prec = double(n) / double(reach);
      if (prec > best.precision) best.precision = prec, best.layer = u / 5, best.unit = u % 5, best.threshold = tau;
    }
    return best;
  };
  for (size_t memory : {size_t(1) << 20, size_t(m) * 4 * 2}) {  // one block; blocks of 2 neurons
    std::vector<NeuronMatch> got = best_neurons_from(source, layers, positions, targets, 2, memory);
    ASSERT_EQ(got.size(), targets.size());
    for (size_t i = 0; i < targets.size(); ++i) {
      NeuronMatch want = reference(targets[i]);
      EXPECT_EQ(got[i].layer, want.layer) << "target " << targets[i];
      EXPECT_EQ(got[i].unit, want.unit) << "target " << targets[i];
      EXPECT_DOUBLE_EQ(got[i].precision, want.precision);
      EXPECT_EQ(got[i].threshold, want.threshold);
    }
  }
  EXPECT_EQ(best_neurons_from(source, layers, positions, targets, 1)[2].layer, 2);  // unit 11 = layer 2 unit 1
}

TEST(CodeSearch, EmptyCacheAndEmptyDocuments) {
  std::vector<CacheSite> sites = {cb::test::cache_site("layer0.mlp", 1, 4, 1)};
  auto fn = [](int64_t pos, std::string_view, size_t, int64_t, int64_t) -> int64_t { return pos % 4; };
  Written none = write_cache(cb::test::fresh_cache_path("code_search", "empty"), {}, sites, fn);
  CodeCache c = CodeCache::open(none.dir);
  EXPECT_TRUE(search(c, "(a)", {}).positions.empty());
  EXPECT_TRUE(search(c, "^(a)", {}).codes.empty());
  fs::remove_all(none.dir);
  // Documents with no text (only the BOS) between others.
  Written w = write_cache(cb::test::fresh_cache_path("code_search", "empty_docs"),
                          {Doc{"ab", {0, 1}}, Doc{"", {}}, Doc{"", {}}, Doc{"ba", {0, 1}}}, sites, fn);
  CodeCache c2 = CodeCache::open(w.dir);
  // "b" then "a" runs across documents 0..3 in the stored text ("abba"); within a document only in document 3.
  EXPECT_EQ(match_positions(c2, "(b)a", {}), (std::vector<int64_t>{6}));  // tokens: BOS a b, BOS, BOS, BOS b a
  EXPECT_EQ(match_positions(c2, "(a)", {}), (std::vector<int64_t>{1, 7}));
  fs::remove_all(w.dir);
}
