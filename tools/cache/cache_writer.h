// Writing a code cache as it is computed (tools/cache/cache_format.h): every
// array is appended to as documents, model rows and their codes come, so
// memory does not grow with the dataset. The cache is written into DIR.partial
// and renamed to DIR when finished, cache.json last: a directory with a
// cache.json is always complete. checkpoint() records how far each array got
// (DIR.partial/progress.json), so an interrupted build can resume there.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "support/json.h"
#include "tools/cache/cache_format.h"
#include "tools/cache/npy_file.h"

namespace cb::cache {

struct WriterOptions {
  bool resume = false;     // continue DIR.partial from its progress.json
  bool overwrite = false;  // replace an existing cache at DIR
  // Must equal the resumed build's: what it was built from and how.
  Json fingerprint;
  size_t index_memory = size_t(256) << 20;  // bytes for building the inverted index
};

class CacheWriter {
 public:
  // Checks that DIR can be written (not a file; not an existing cache
  // unless overwrite; not a non-empty directory that is no cache) and
  // opens DIR.partial. `sites` fixes the site arrays.
  CacheWriter(std::string dir, std::vector<CacheSite> sites, const WriterOptions& options);
  ~CacheWriter();

  // How much a resumed build had written (all 0 for a fresh one): the
  // caller skips that many documents and rows as it replays its input.
  int64_t documents() const;
  int64_t tokens() const;
  int64_t rows() const;
  int64_t row_metrics() const;  // rows whose codes and metrics are written

  // A document: its text, its tokens, and the byte where each token starts
  // (non-decreasing, within the text; the first at 0).
  void add_document(std::string_view text, std::span<const uint32_t> tokens, std::span<const int64_t> starts);
  // The next model row: `tokens` consecutive tokens.
  void add_row(int64_t tokens);
  // The codes of `tokens` consecutive tokens at site `site`: ids i64 and
  // scores f32, both [tokens, G, k] (scores ignored unless the site keeps them).
  void add_codes(size_t site, const int64_t* ids, const float* scores, int64_t tokens);
  // One row's next-token metrics: summed loss, correct predictions, predictions.
  void add_row_metrics(double loss_sum, double correct, double predicted);

  // Flushes every array and records the progress (for --resume).
  void checkpoint();
  // Ends every array, builds the inverted indexes (not for a shard), fills
  // the manifest's sizes and metrics, writes cache.json and renames DIR.partial
  // to DIR. Returns the manifest written.
  CacheManifest finish(CacheManifest manifest);

  const std::string& work_dir() const { return work_; }

 private:
  NpyAppender& file(const std::string& name);
  std::string dir_, work_;
  std::vector<CacheSite> sites_;
  WriterOptions options_;
  std::map<std::string, NpyAppender> files_;
  int64_t text_bytes_ = 0;
  int64_t row_end_ = 0;  // tokens covered by the rows so far
};

// Removes a path written by the writer (DIR.partial, or an old cache being replaced).
void remove_tree(const std::string& path);
// Renames the finished directory `work` to `out`; an `out` already there (an
// empty directory, or an output being replaced) is moved aside first and
// removed after, so `out` is never missing a complete version for long.
void move_into_place(const std::string& work, const std::string& out);

}  // namespace cb::cache
