#include "tools/cache/cache_merge.h"

#include <map>

#include "support/error.h"
#include "tools/cache/cache_writer.h"
#include "tools/cache/code_cache.h"

namespace cb::cache {

namespace {

// A manifest without its shard fields: what every shard of a build shares.
Json shared_part(CacheManifest m) {
  m.shard_index = -1;
  m.shard_count = 0;
  return m.to_json();
}

}  // namespace

CacheManifest merge_shards(const std::vector<std::string>& dirs, const std::string& out_dir, bool overwrite,
                           size_t index_memory) {
  CB_CHECK(!dirs.empty(), "cache merge: no shards given");
  std::vector<CodeCache> shards;
  for (const std::string& d : dirs) shards.push_back(CodeCache::open(d, /*require_index=*/false));
  const CacheManifest& first = shards[0].manifest();
  int64_t N = first.shard_count;
  CB_CHECK(first.is_shard(), dirs[0] << " is not a shard (built without --shard)");
  CB_CHECK(int64_t(dirs.size()) == N,
           "cache merge: " << dirs[0] << " is one of " << N << " shards; " << dirs.size() << " given");
  std::map<int64_t, const CodeCache*> by_index;
  Json shared = shared_part(first);
  for (size_t i = 0; i < shards.size(); ++i) {
    const CacheManifest& m = shards[i].manifest();
    CB_CHECK(m.is_shard() && m.shard_count == N, dirs[i] << " is not one of the " << N << " shards of " << dirs[0]);
    CB_CHECK(!by_index.count(m.shard_index), dirs[i] << " and another directory are both shard " << m.shard_index);
    CB_CHECK(shared_part(m) == shared, dirs[i] << " was built from another model, data or options than " << dirs[0]);
    by_index[m.shard_index] = &shards[i];
  }
  const CodeCache& base = *by_index.at(0);
  // Every shard holds all documents; check they agree (cheaply: the same sizes
  // were checked through the manifest; compare the tokens).
  for (auto& [i, c] : by_index)
    CB_CHECK(std::equal(c->tokens().begin(), c->tokens().end(), base.tokens().begin(), base.tokens().end()),
             c->dir() << ": its tokens differ from shard 0's");

  std::vector<CacheSite> sites = first.sites;
  WriterOptions wo;
  wo.overwrite = overwrite;
  wo.index_memory = index_memory;
  wo.fingerprint = shared;
  CacheWriter w(out_dir, sites, wo);
  for (int64_t d = 0; d < base.num_documents(); ++d) {
    int64_t b = base.doc_tokens()[size_t(d)], e = base.doc_tokens()[size_t(d) + 1];
    std::vector<int64_t> starts;
    for (int64_t t = b; t < e; ++t) starts.push_back(base.token_offsets()[size_t(t)] - base.doc_text()[size_t(d)]);
    w.add_document(base.document_text(d), base.tokens().subspan(size_t(b), size_t(e - b)), starts);
  }
  auto rows = base.rows();
  int64_t R = int64_t(rows.size()) - 1;
  for (int64_t r = 0; r < R; ++r) w.add_row(rows[size_t(r) + 1] - rows[size_t(r)]);

  // Batch b (rows [b*B, (b+1)*B)) is shard (b mod N)'s next batch.
  int64_t B = first.build.at("batch_rows").as_int();
  std::map<int64_t, int64_t> next_token, next_row;  // per shard: its first unread token and row
  std::vector<int64_t> ids;
  std::vector<float> scores;
  for (int64_t b = 0; b * B < R; ++b) {
    int64_t s = b % N;
    const CodeCache& c = *by_index.at(s);
    int64_t r0 = b * B, r1 = std::min(R, r0 + B);
    int64_t n = rows[size_t(r1)] - rows[size_t(r0)];
    int64_t t0 = next_token[s];
    CB_CHECK(t0 + n <= c.sites().at(0).ids_rows(), c.dir() << ": holds fewer rows than its share of the build "
                                                           << "(an unfinished shard?)");
    for (size_t si = 0; si < sites.size(); ++si) {
      const SiteArrays& a = c.sites()[si];
      int64_t G = sites[si].groups, k = sites[si].k;
      ids.resize(size_t(n * G * k));
      scores.resize(ids.size());
      for (int64_t t = 0; t < n; ++t)
        for (int64_t g = 0; g < G; ++g)
          for (int64_t j = 0; j < k; ++j) {
            size_t i = size_t((t * G + g) * k + j);
            ids[i] = a.code(t0 + t, g, j);
            scores[i] = a.has_scores() ? a.score(t0 + t, g, j) : 0.f;
          }
      w.add_codes(si, ids.data(), scores.data(), n);
    }
    for (int64_t r = r0; r < r1; ++r) {
      int64_t row = next_row[s]++;
      auto m = c.row_metrics().subspan(size_t(row) * 3, 3);
      w.add_row_metrics(m[0], m[1], m[2]);
    }
    next_token[s] = t0 + n;
  }
  CacheManifest m = first;
  m.shard_index = -1;
  m.shard_count = 0;
  return w.finish(m);
}

}  // namespace cb::cache
