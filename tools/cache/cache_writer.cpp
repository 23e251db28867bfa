#include "tools/cache/cache_writer.h"

#include <filesystem>
#include <set>

#include "support/error.h"
#include "support/test_delay.h"
#include "tools/cache/code_index.h"

namespace fs = std::filesystem;

namespace cb::cache {

namespace {

constexpr const char* kProgressFile = "progress.json";

bool is_cache_dir(const fs::path& p) { return json_file_has_format((p / kManifestFile).string(), kFormatName); }

// The paths ("build.batch_rows") where two JSON values differ, with both values.
void json_differences(const Json& a, const Json& b, const std::string& path, std::string& out) {
  if (a.is_object() && b.is_object()) {
    std::set<std::string> keys;
    for (auto& [k, v] : a.as_object()) keys.insert(k);
    for (auto& [k, v] : b.as_object()) keys.insert(k);
    for (const std::string& k : keys) {
      const Json *x = a.find(k), *y = b.find(k);
      std::string p = path.empty() ? k : path + "." + k;
      if (x && y)
        json_differences(*x, *y, p, out);
      else
        out += "\n  " + p + ": " + (x ? x->dump() : "absent") + " then, " + (y ? y->dump() : "absent") + " now";
    }
  } else if (!(a == b)) {
    out += "\n  " + path + ": " + a.dump() + " then, " + b.dump() + " now";
  }
}

}  // namespace

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  CB_CHECK(!ec, "cannot remove '" << path << "': " << ec.message());
}

void move_into_place(const std::string& work, const std::string& out) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    std::string old = out + ".old";
    remove_tree(old);
    fs::rename(out, old, ec);
    CB_CHECK(!ec, "cannot move the old " << out << " aside: " << ec.message());
    fs::rename(work, out, ec);
    CB_CHECK(!ec, "cannot rename " << work << " to " << out << ": " << ec.message());
    remove_tree(old);
  } else {
    fs::rename(work, out, ec);
    CB_CHECK(!ec, "cannot rename " << work << " to " << out << ": " << ec.message());
  }
}

CacheWriter::CacheWriter(std::string dir, std::vector<CacheSite> sites, const WriterOptions& options)
    : dir_(std::move(dir)), sites_(std::move(sites)), options_(options) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  work_ = dir_ + ".partial";
  std::error_code ec;
  if (fs::exists(dir_, ec)) {
    CB_CHECK(fs::is_directory(dir_, ec), "-o " << dir_ << ": exists and is not a directory");
    if (is_cache_dir(dir_)) {
      fs::remove(fs::path(dir_) / kProgressFile, ec);  // left by a build killed just after its rename
      CB_CHECK(options_.overwrite, "-o " << dir_ << ": a code cache is already there (add --overwrite to replace it)");
    } else
      CB_CHECK(fs::is_empty(dir_, ec), "-o " << dir_ << ": a non-empty directory that is not a code cache; "
                                             << "choose another path (nothing was written)");
  }
  std::map<std::string, int64_t> resume_rows;
  // DIR.partial is ours once it holds progress.json, written first thing (a
  // marker without "files" until the arrays exist): a build killed at any
  // moment leaves a folder the next build recognises.
  bool partial = fs::exists(fs::path(work_) / kProgressFile, ec);
  bool resuming = false;
  if (options_.resume) {
    CB_CHECK(partial, "--resume: no unfinished build at " << work_ << " (nothing to resume)");
    Json progress = json_read_file((fs::path(work_) / kProgressFile).string());
    std::string diff;
    json_differences(progress.at("fingerprint"), options_.fingerprint, "", diff);
    CB_CHECK(diff.empty(), "--resume: " << work_ << " was started from another model, data or options:" << diff);
    if (const Json* files = progress.find("files")) {
      for (auto& [name, rows] : files->as_object()) resume_rows[name] = rows.as_int();
      text_bytes_ = progress.at("text_bytes").as_int();
      row_end_ = progress.at("row_end").as_int();
      resuming = true;
    }  // else killed before its arrays existed: start over
  }
  if (!resuming) {
    if (fs::exists(work_, ec)) {
      CB_CHECK(partial, work_ << " exists and is not an unfinished cache build; move it away first");
      remove_tree(work_);  // an unfinished build of ours, not resumed: start over
    }
    fs::create_directories(work_, ec);
    CB_CHECK(!ec, "cannot create '" << work_ << "': " << ec.message());
    Json marker = Json::Object{};
    marker["fingerprint"] = options_.fingerprint;
    json_write_file((fs::path(work_) / kProgressFile).string(), marker);
  }
  auto open = [&](const std::string& name, DType dt, std::vector<int64_t> row_shape) {
    int64_t keep = resume_rows.count(name) ? resume_rows[name] : 0;
    CB_CHECK(!resuming || resume_rows.count(name), "--resume: " << work_ << " has no progress for " << name);
    files_.emplace(name, NpyAppender((fs::path(work_) / name).string(), dt, row_shape, keep));
  };
  open("tokens.npy", DType::u32, {});
  open("token_offsets.npy", DType::i64, {});
  open("doc_tokens.npy", DType::i64, {});
  open("doc_text.npy", DType::i64, {});
  open("text.npy", DType::u8, {});
  open("rows.npy", DType::i64, {});
  open("row_metrics.npy", DType::f64, {3});
  for (const CacheSite& s : sites_) {
    fs::create_directories(fs::path(work_) / s.dir(), ec);
    open(s.dir() + "/ids.npy", s.ids_dtype, {s.groups, s.k});
    if (s.scores) open(s.dir() + "/scores.npy", DType::f16, {s.groups, s.k});
  }
  if (!resuming) {
    file("doc_tokens.npy").append_one<int64_t>(0);
    file("doc_text.npy").append_one<int64_t>(0);
    file("rows.npy").append_one<int64_t>(0);
  }
  checkpoint();  // marks DIR.partial as ours from the start
}

CacheWriter::~CacheWriter() = default;

NpyAppender& CacheWriter::file(const std::string& name) { return files_.at(name); }

int64_t CacheWriter::documents() const { return files_.at("doc_tokens.npy").rows() - 1; }
int64_t CacheWriter::tokens() const { return files_.at("tokens.npy").rows(); }
int64_t CacheWriter::rows() const { return files_.at("rows.npy").rows() - 1; }
int64_t CacheWriter::row_metrics() const { return files_.at("row_metrics.npy").rows(); }

void CacheWriter::add_document(std::string_view text, std::span<const uint32_t> tokens,
                               std::span<const int64_t> starts) {
  CB_CHECK(tokens.size() == starts.size(), "add_document: one start per token");
  std::vector<int64_t> global(starts.size());
  for (size_t i = 0; i < starts.size(); ++i) {
    CB_CHECK(starts[i] >= 0 && starts[i] <= int64_t(text.size()) && (i == 0 || starts[i] >= starts[i - 1]),
             "add_document: token " << i << " starts at byte " << starts[i] << ", out of order");
    global[i] = text_bytes_ + starts[i];
  }
  CB_CHECK(starts.empty() || starts[0] == 0, "add_document: the first token must start at byte 0");
  file("tokens.npy").append(tokens);
  file("token_offsets.npy").append(std::span<const int64_t>(global));
  file("text.npy").append(text.data(), int64_t(text.size()));
  text_bytes_ += int64_t(text.size());
  file("doc_tokens.npy").append_one<int64_t>(file("tokens.npy").rows());
  file("doc_text.npy").append_one<int64_t>(text_bytes_);
}

void CacheWriter::add_row(int64_t tokens) {
  row_end_ += tokens;
  file("rows.npy").append_one<int64_t>(row_end_);
}

void CacheWriter::add_codes(size_t site, const int64_t* ids, const float* scores, int64_t tokens) {
  const CacheSite& s = sites_.at(site);
  size_t n = size_t(tokens * s.groups * s.k);
  if (s.ids_dtype == DType::u16) {
    std::vector<uint16_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = ids[i] < 0 ? uint16_t(kNoCode16) : uint16_t(ids[i]);
    file(s.dir() + "/ids.npy").append(v.data(), tokens);
  } else {
    std::vector<uint32_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = ids[i] < 0 ? kNoCode32 : uint32_t(ids[i]);
    file(s.dir() + "/ids.npy").append(v.data(), tokens);
  }
  if (s.scores) {
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = float_to_half(scores[i]);
    file(s.dir() + "/scores.npy").append(h.data(), tokens);
  }
}

void CacheWriter::add_row_metrics(double loss_sum, double correct, double predicted) {
  double v[3] = {loss_sum, correct, predicted};
  file("row_metrics.npy").append(v, 1);
}

void CacheWriter::checkpoint() {
  Json progress = Json::Object{};
  progress["fingerprint"] = options_.fingerprint;
  progress["text_bytes"] = text_bytes_;
  progress["row_end"] = row_end_;
  for (auto& [name, f] : files_) {
    f.flush();
    progress["files"][name] = f.rows();
  }
  json_write_file((fs::path(work_) / kProgressFile).string(), progress);
  test_write_delay();
}

CacheManifest CacheWriter::finish(CacheManifest m) {
  file("token_offsets.npy").append_one<int64_t>(text_bytes_);
  m.tokens = tokens();
  m.documents = documents();
  m.rows = rows();
  m.text_bytes = text_bytes_;
  m.sites = sites_;
  for (auto& [name, f] : files_) f.finish();
  files_.clear();

  // Metrics over the cached data, summed in row order (so a merged cache
  // gets the same numbers as an unsharded build).
  if (!m.is_shard()) {
    MappedNpy rm = MappedNpy::open((fs::path(work_) / "row_metrics.npy").string());
    double loss = 0, correct = 0, predicted = 0;
    auto v = rm.values<double>();
    for (size_t r = 0; r + 2 < v.size(); r += 3) loss += v[r], correct += v[r + 1], predicted += v[r + 2];
    Json metrics = Json::Object{};
    if (predicted > 0) {
      metrics["loss"] = loss / predicted;
      metrics["accuracy"] = correct / predicted;
    }
    metrics["predicted_tokens"] = int64_t(predicted);
    Json dead = Json::Object{};
    for (const CacheSite& s : sites_) {
      std::string site_dir = (fs::path(work_) / s.dir()).string();
      build_code_index(site_dir, s, m.tokens, options_.index_memory);
      MappedNpy counts = MappedNpy::open(site_dir + "/counts.npy");
      int64_t zero = 0;
      for (int64_t c : counts.values<int64_t>()) zero += c == 0;
      dead[s.name] = double(zero) / double(counts.count());
    }
    metrics["dead_code_fraction"] = dead;
    m.metrics = metrics;
  }
  // progress.json stays until the cache is in place: a kill before the
  // rename leaves DIR.partial resumable (with or without its cache.json),
  // one after it a complete cache with a leftover progress.json, which
  // readers ignore and the next build into DIR removes.
  json_write_file((fs::path(work_) / kManifestFile).string(), m.to_json());
  test_write_delay();
  move_into_place(work_, dir_);
  test_write_delay();
  std::error_code ec;
  fs::remove(fs::path(dir_) / kProgressFile, ec);
  return m;
}

}  // namespace cb::cache
