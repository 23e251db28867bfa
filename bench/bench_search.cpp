// Times `codebook search` (tools/cache/code_search.h) on a synthetic code
// cache written with CacheWriter: TokFSM-like documents of 63 digits after a
// BOS, and codes that follow the digits (member g of site s: a hash of the
// previous and current digit, 10% random), so patterns find codes as on a real
// cache. The cache is written once to --dir and reused while it matches.
//
//   bench_search [--tokens 10000000] [--sites 25] [--groups 4] [--codes 1000] [--k 1]
//                [--dir /tmp/cb_bench_search] [--runs 5] [--threads 0]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "support/json.h"
#include "support/threads.h"
#include "tools/cache/cache_writer.h"
#include "tools/cache/code_cache.h"
#include "tools/cache/code_search.h"

namespace fs = std::filesystem;
using namespace cb;
using namespace cb::cache;

namespace {

struct Config {
  int64_t tokens = 10'000'000, sites = 25, groups = 4, codes = 1000, k = 1;
  std::string dir = "/tmp/cb_bench_search";
  int runs = 5, threads = 0;
  Json fingerprint() const {
    Json j = Json::Object{};
    j["tokens"] = tokens, j["sites"] = sites, j["groups"] = groups, j["codes"] = codes, j["k"] = k;
    return j;
  }
};

void write_cache(const Config& c) {
  std::vector<CacheSite> sites;
  for (int64_t s = 0; s < c.sites; ++s) {
    CacheSite site;
    site.name = "layer" + std::to_string(s) + ".attn_preproj";
    site.layer = s;
    site.placement = "attn_preproj";
    site.groups = c.groups;
    site.codes = c.codes;
    site.k = c.k;
    site.ids_dtype = ids_dtype_for(c.codes);
    site.positions_dtype = positions_dtype_for(c.tokens);
    sites.push_back(site);
  }
  CacheWriter w(c.dir, sites, [] {
    WriterOptions o;
    o.overwrite = true;
    o.index_memory = size_t(1) << 30;
    return o;
  }());
  std::mt19937_64 rng(1);
  const int64_t T = 64;
  std::vector<int64_t> ids;
  std::vector<float> scores;
  for (int64_t done = 0; done < c.tokens; done += T) {
    int64_t n = std::min(T, c.tokens - done);
    std::string text;
    std::vector<uint32_t> tokens = {10};
    std::vector<int64_t> starts = {0};
    for (int64_t i = 1; i < n; ++i) {
      starts.push_back(int64_t(text.size()));
      int digit = int(rng() % 10);
      text += char('0' + digit);
      tokens.push_back(uint32_t(digit));
    }
    w.add_document(text, std::span<const uint32_t>(tokens.data(), size_t(n)),
                   std::span<const int64_t>(starts.data(), size_t(n)));
    w.add_row(n);
    for (int64_t s = 0; s < c.sites; ++s) {
      ids.assign(size_t(n * c.groups * c.k), 0);
      scores.assign(ids.size(), 0.f);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t g = 0; g < c.groups; ++g) {
          int64_t prev = t >= 2 ? tokens[size_t(t - 1)] : 10, cur = tokens[size_t(t)];
          int64_t base = (prev * 11 + cur) * 7919 + s * 104729 + g * 1299709;
          for (int64_t slot = 0; slot < c.k; ++slot) {
            int64_t code = rng() % 10 == 0 ? int64_t(rng() % uint64_t(c.codes)) : (base + slot * 31) % c.codes;
            for (int64_t q = 0; q < slot; ++q)  // distinct within the token
              if (ids[size_t((t * c.groups + g) * c.k + q)] == code) code = (code + 1) % c.codes, q = -1;
            ids[size_t((t * c.groups + g) * c.k + slot)] = code;
          }
        }
      w.add_codes(size_t(s), ids.data(), scores.data(), n);
    }
    w.add_row_metrics(0, 0, 0);
  }
  CacheManifest m;
  m.block_mode = "document";
  m.block_size = T;
  m.tokenizer = "tokfsm:10";
  m.model = Json::Object{};
  m.source = c.fingerprint();
  m.build = Json::Object{};
  w.finish(m);
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--tokens")
      c.tokens = std::stoll(v);
    else if (a == "--sites")
      c.sites = std::stoll(v);
    else if (a == "--groups")
      c.groups = std::stoll(v);
    else if (a == "--codes")
      c.codes = std::stoll(v);
    else if (a == "--k")
      c.k = std::stoll(v);
    else if (a == "--dir")
      c.dir = v;
    else if (a == "--runs")
      c.runs = std::stoi(v);
    else if (a == "--threads")
      c.threads = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  bool reuse = false;
  try {
    reuse = CodeCache::open(c.dir).manifest().source == c.fingerprint();
  } catch (const std::exception&) {
  }
  if (!reuse) {
    auto t0 = std::chrono::steady_clock::now();
    write_cache(c);
    std::printf("wrote %s in %.1f s\n", c.dir.c_str(), ms_since(t0) / 1000);
  }
  auto t0 = std::chrono::steady_clock::now();
  CodeCache cache = CodeCache::open(c.dir);
  std::printf(
      "cache: %lld tokens, %lld documents, %lld sites x %lld members (%lld codebooks), K %lld, k %lld; "
      "open %.1f ms\n",
      (long long)cache.num_tokens(), (long long)cache.num_documents(), (long long)c.sites, (long long)c.groups,
      (long long)(c.sites * c.groups), (long long)c.codes, (long long)c.k, ms_since(t0));
  struct Case {
    const char* pattern;
    int parity;
  };
  const Case cases[] = {{"(7)", -1},   {"7", -1},    {"12(3)", -1}, {"[0-4](5)[6-9]", -1},
                        {"99999", -1}, {"(\\d)", 0}, {"^(\\d)", -1}};
  std::vector<int> thread_counts = {1, resolve_thread_count(c.threads)};
  if (thread_counts[1] == 1) thread_counts.pop_back();
  for (const Case& k : cases)
    for (int threads : thread_counts) {
      SearchOptions o;
      o.threads = threads;
      o.parity = k.parity;
      std::vector<double> scan, codes;
      SearchResult r;
      for (int run = 0; run <= c.runs; ++run) {  // run 0 warms the pages
        auto a = std::chrono::steady_clock::now();
        r.positions = match_positions(cache, k.pattern, o);
        double s = ms_since(a);
        auto b = std::chrono::steady_clock::now();
        r.codes = codes_on_positions(cache, r.positions, o);
        if (run > 0) scan.push_back(s), codes.push_back(ms_since(b));
      }
      std::sort(scan.begin(), scan.end());
      std::sort(codes.begin(), codes.end());
      double ms = scan[scan.size() / 2] + codes[codes.size() / 2];
      std::printf(
          "%-16s parity %2d  threads %d: %9zu matches, %4zu codes; median regex %7.1f ms + codes %7.1f ms = %7.1f ms\n",
          k.pattern, k.parity, threads, r.positions.size(), r.codes.size(), scan[scan.size() / 2],
          codes[codes.size() / 2], ms);
    }
  return 0;
}
