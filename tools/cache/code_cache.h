// Reading a code cache (tools/cache/cache_format.h): every array
// memory-mapped and checked against cache.json when the cache is opened, so
// later lookups need no checks and a truncated or foreign file is one clear
// error naming it.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tools/cache/cache_format.h"
#include "tools/cache/npy_file.h"

namespace cb::cache {

// The token positions where one code fires (ascending), stored as uint32 or int64.
class PositionList {
 public:
  PositionList() = default;
  PositionList(const void* data, size_t size, bool wide) : data_(data), size_(size), wide_(wide) {}
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int64_t operator[](size_t i) const {
    return wide_ ? static_cast<const int64_t*>(data_)[i] : int64_t(static_cast<const uint32_t*>(data_)[i]);
  }

 private:
  const void* data_ = nullptr;
  size_t size_ = 0;
  bool wide_ = false;
};

// The arrays of one site.
class SiteArrays {
 public:
  const CacheSite& info() const { return info_; }
  // The code in slot `slot` of member g at token `pos`; -1 for a blocked slot.
  int64_t code(int64_t pos, int64_t g, int64_t slot) const {
    size_t i = size_t((pos * info_.groups + g) * info_.k + slot);
    if (wide_ids_) {
      uint32_t v = static_cast<const uint32_t*>(ids_)[i];
      return v == kNoCode32 ? -1 : int64_t(v);
    }
    uint16_t v = static_cast<const uint16_t*>(ids_)[i];
    return v == kNoCode16 ? -1 : int64_t(v);
  }
  // Is `code` among the first `slots` slots of member g at `pos`?
  bool fires(int64_t pos, int64_t g, int64_t code, int64_t slots) const {
    for (int64_t s = 0; s < slots; ++s)
      if (this->code(pos, g, s) == code) return true;
    return false;
  }
  // Tokens whose ids the site holds: all of the cache's, or a shard's own.
  int64_t ids_rows() const { return ids_file_.dim(0); }
  bool has_scores() const { return scores_ != nullptr; }
  float score(int64_t pos, int64_t g, int64_t slot) const;
  bool has_index() const { return !counts_.empty(); }
  // Activations of code c of member g (tokens where it is in any slot).
  int64_t count(int64_t g, int64_t c) const { return counts_[size_t(g * info_.codes + c)]; }
  std::span<const int64_t> counts() const { return counts_; }  // [G*K]
  PositionList positions(int64_t g, int64_t c) const;

 private:
  friend class CodeCache;
  CacheSite info_;
  MappedNpy ids_file_, scores_file_, counts_file_, offsets_file_, positions_file_;
  const void* ids_ = nullptr;
  const uint16_t* scores_ = nullptr;
  bool wide_ids_ = false, wide_positions_ = false;
  std::span<const int64_t> counts_, offsets_;
  const void* positions_ = nullptr;
};

class CodeCache {
 public:
  // Opens a cache directory. Without require_index, a shard (no inverted
  // index yet) opens too. Errors name the file that is missing or wrong.
  static CodeCache open(const std::string& dir, bool require_index = true);

  const std::string& dir() const { return dir_; }
  const CacheManifest& manifest() const { return manifest_; }
  int64_t num_tokens() const { return manifest_.tokens; }
  int64_t num_documents() const { return manifest_.documents; }

  std::span<const uint32_t> tokens() const { return tokens_; }
  std::span<const int64_t> token_offsets() const { return token_offsets_; }  // N+1
  std::span<const int64_t> doc_tokens() const { return doc_tokens_; }        // D+1
  std::span<const int64_t> doc_text() const { return doc_text_; }            // D+1
  std::span<const int64_t> rows() const { return rows_; }                    // R+1
  std::span<const double> row_metrics() const { return row_metrics_; }       // [R, 3]
  std::string_view text() const { return text_; }
  std::string_view document_text(int64_t d) const;
  std::string_view token_text(int64_t pos) const;
  // The document holding token `pos`.
  int64_t document_of(int64_t pos) const;
  // The token of document d holding byte `offset` of its text (the last token
  // starting at or before it).
  int64_t token_at(int64_t d, int64_t offset) const;

  const std::vector<SiteArrays>& sites() const { return sites_; }
  // The site named `name` ("layer0.mlp"; aliases as passes/codebook_sites.h);
  // an unknown name is a cb::Error listing the cache's sites.
  const SiteArrays& site(const std::string& name) const;
  // Site and member of "layer3.attn_preproj[5]"; a group site without [g]
  // means member 0 when it has one member, else an error.
  std::pair<const SiteArrays*, int64_t> member(const std::string& text) const;

 private:
  std::string dir_;
  CacheManifest manifest_;
  MappedNpy tokens_file_, offsets_file_, doc_tokens_file_, doc_text_file_, text_file_, rows_file_, row_metrics_file_;
  std::span<const uint32_t> tokens_;
  std::span<const int64_t> token_offsets_, doc_tokens_, doc_text_, rows_;
  std::span<const double> row_metrics_;
  std::string_view text_;
  std::vector<SiteArrays> sites_;
};

}  // namespace cb::cache
