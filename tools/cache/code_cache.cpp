#include "tools/cache/code_cache.h"

#include <algorithm>
#include <filesystem>

#include "passes/codebook_sites.h"
#include "support/error.h"
#include "support/json.h"

namespace fs = std::filesystem;

namespace cb::cache {

namespace {

// Checks that `v` (size n+1) starts at `first`, never decreases and ends at `last`.
void check_offsets(std::span<const int64_t> v, int64_t first, int64_t last, const std::string& path) {
  CB_CHECK(!v.empty() && v.front() == first && v.back() == last,
           path << ": must run from " << first << " to " << last << " (the cache is inconsistent)");
  for (size_t i = 1; i < v.size(); ++i) CB_CHECK(v[i] >= v[i - 1], path << ": offsets decrease at entry " << i);
}

}  // namespace

float SiteArrays::score(int64_t pos, int64_t g, int64_t slot) const {
  return half_to_float(scores_[size_t((pos * info_.groups + g) * info_.k + slot)]);
}

PositionList SiteArrays::positions(int64_t g, int64_t c) const {
  size_t i = size_t(g * info_.codes + c);
  int64_t b = offsets_[i], e = offsets_[i + 1];
  size_t w = wide_positions_ ? 8 : 4;
  return PositionList(static_cast<const char*>(positions_) + size_t(b) * w, size_t(e - b), wide_positions_);
}

CodeCache CodeCache::open(const std::string& dir, bool require_index) {
  CodeCache c;
  c.dir_ = dir;
  std::error_code ec;
  CB_CHECK(fs::is_directory(dir, ec), "'" << dir << "' is not a directory (a code cache is a directory made by "
                                          << "`codebook cache build`)");
  std::string manifest_path = (fs::path(dir) / kManifestFile).string();
  if (!fs::exists(manifest_path, ec)) {
    bool partial = fs::exists(fs::path(dir) / "progress.json", ec);
    CB_FAIL(manifest_path << " is missing: "
                          << (partial
                                  ? "this is an unfinished build (finish it with `codebook cache build ... --resume`)"
                                  : "not a code cache"));
  }
  c.manifest_ = CacheManifest::from_json(json_read_file(manifest_path), manifest_path);
  const CacheManifest& m = c.manifest_;
  CB_CHECK(!require_index || !m.is_shard(), dir << " is shard " << m.shard_index << " of " << m.shard_count
                                                << " of a build; join the shards with `codebook cache merge`");
  auto path = [&](const std::string& name) { return (fs::path(dir) / name).string(); };
  int64_t N = m.tokens, D = m.documents, R = m.rows;
  c.tokens_file_ = MappedNpy::open(path("tokens.npy"));
  c.tokens_file_.expect({DType::u32}, {N});
  c.tokens_ = c.tokens_file_.values<uint32_t>();
  c.text_file_ = MappedNpy::open(path("text.npy"));
  c.text_file_.expect({DType::u8}, {m.text_bytes});
  c.text_ = std::string_view(static_cast<const char*>(c.text_file_.data()), size_t(m.text_bytes));
  // An offsets array of n+1 entries running from 0 to `last`.
  auto offsets = [&](MappedNpy& file, const std::string& name, int64_t n, int64_t last) {
    file = MappedNpy::open(path(name));
    file.expect({DType::i64}, {n + 1});
    std::span<const int64_t> v = file.values<int64_t>();
    check_offsets(v, 0, last, file.path());
    return v;
  };
  c.token_offsets_ = offsets(c.offsets_file_, "token_offsets.npy", N, m.text_bytes);
  c.doc_tokens_ = offsets(c.doc_tokens_file_, "doc_tokens.npy", D, N);
  c.doc_text_ = offsets(c.doc_text_file_, "doc_text.npy", D, m.text_bytes);
  c.rows_ = offsets(c.rows_file_, "rows.npy", R, N);
  c.row_metrics_file_ = MappedNpy::open(path("row_metrics.npy"));
  c.row_metrics_file_.expect({DType::f64}, {m.is_shard() ? -1 : R, 3});
  c.row_metrics_ = c.row_metrics_file_.values<double>();

  for (const CacheSite& info : m.sites) {
    SiteArrays s;
    s.info_ = info;
    int64_t G = info.groups, K = info.codes, k = info.k;
    auto site_path = [&](const std::string& name) { return path(info.dir() + "/" + name); };
    // A shard holds only the ids of its own rows.
    s.ids_file_ = MappedNpy::open(site_path("ids.npy"));
    s.ids_file_.expect({info.ids_dtype}, {m.is_shard() ? -1 : N, G, k});
    s.ids_ = s.ids_file_.data();
    s.wide_ids_ = info.ids_dtype == DType::u32;
    if (info.scores) {
      s.scores_file_ = MappedNpy::open(site_path("scores.npy"));
      s.scores_file_.expect({DType::f16}, {s.ids_file_.dim(0), G, k});
      s.scores_ = static_cast<const uint16_t*>(s.scores_file_.data());
    }
    if (!m.is_shard()) {
      s.counts_file_ = MappedNpy::open(site_path("counts.npy"));
      s.counts_file_.expect({DType::i64}, {G, K});
      s.counts_ = s.counts_file_.values<int64_t>();
      s.offsets_file_ = MappedNpy::open(site_path("index_offsets.npy"));
      s.offsets_file_.expect({DType::i64}, {G * K + 1});
      s.offsets_ = s.offsets_file_.values<int64_t>();
      s.positions_file_ = MappedNpy::open(site_path("index_positions.npy"));
      s.positions_file_.expect({info.positions_dtype}, {-1});
      check_offsets(s.offsets_, 0, s.positions_file_.dim(0), s.offsets_file_.path());
      s.positions_ = s.positions_file_.data();
      s.wide_positions_ = info.positions_dtype == DType::i64;
      for (size_t i = 0; i < s.counts_.size(); ++i)
        CB_CHECK(s.counts_[i] == s.offsets_[i + 1] - s.offsets_[i],
                 s.counts_file_.path() << ": count of code " << i << " disagrees with the index");
    }
    c.sites_.push_back(std::move(s));
  }
  return c;
}

std::string_view CodeCache::document_text(int64_t d) const {
  CB_CHECK(d >= 0 && d < num_documents(), "document " << d << " out of range: the cache has " << num_documents());
  return text_.substr(size_t(doc_text_[size_t(d)]), size_t(doc_text_[size_t(d) + 1] - doc_text_[size_t(d)]));
}

std::string_view CodeCache::token_text(int64_t pos) const {
  return text_.substr(size_t(token_offsets_[size_t(pos)]),
                      size_t(token_offsets_[size_t(pos) + 1] - token_offsets_[size_t(pos)]));
}

int64_t CodeCache::document_of(int64_t pos) const {
  auto it = std::upper_bound(doc_tokens_.begin(), doc_tokens_.end(), pos);
  return int64_t(it - doc_tokens_.begin()) - 1;
}

int64_t CodeCache::token_at(int64_t d, int64_t offset) const {
  int64_t b = doc_tokens_[size_t(d)], e = doc_tokens_[size_t(d) + 1];
  int64_t byte = doc_text_[size_t(d)] + offset;
  auto first = token_offsets_.begin() + b, last = token_offsets_.begin() + e;
  auto it = std::upper_bound(first, last, byte);
  return std::max(b, int64_t(it - token_offsets_.begin()) - 1);
}

const SiteArrays& CodeCache::site(const std::string& name) const {
  std::string canonical = name;
  try {
    canonical = parse_site(name).site();
  } catch (const Error&) {
  }
  std::string all;
  for (const SiteArrays& s : sites_) {
    if (s.info().name == canonical) return s;
    all += (all.empty() ? "" : ", ") + s.info().name;
  }
  CB_FAIL("site '" << name << "' is not in the cache " << dir_ << "; it has: " << (all.empty() ? "no sites" : all));
}

std::pair<const SiteArrays*, int64_t> CodeCache::member(const std::string& text) const {
  SiteRef ref;
  try {
    ref = parse_site(text);
  } catch (const Error& e) {
    CB_FAIL(e.what());
  }
  const SiteArrays& s = site(ref.site());
  int64_t g = ref.group == kAll ? 0 : ref.group;
  CB_CHECK(ref.group != kAll || s.info().groups == 1,
           text << " has " << s.info().groups << " codebooks (one per member); name one as " << ref.site() << "[0]");
  CB_CHECK(g >= 0 && g < s.info().groups,
           text << ": member " << g << " out of range; " << ref.site() << " has " << s.info().groups << " members");
  return {&s, g};
}

}  // namespace cb::cache
