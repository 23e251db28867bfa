// The code cache: what `codebook cache build` writes and every analysis
// command reads (docs/cache.md is the user-facing description). A directory of
// .npy arrays plus cache.json, so numpy.load(..., mmap_mode="r") reads it all
// without our code:
//
//   cache.json                 the manifest (CacheManifest), written last
//   tokens.npy                 uint32 [N]    every token, documents in order
//   token_offsets.npy          int64 [N+1]   token i is text bytes [off[i], off[i+1])
//   doc_tokens.npy             int64 [D+1]   document d is tokens [doc_tokens[d], doc_tokens[d+1])
//   doc_text.npy               int64 [D+1]   ... and text bytes [doc_text[d], doc_text[d+1])
//   text.npy                   uint8 [bytes] the documents' UTF-8 text, concatenated
//   rows.npy                   int64 [R+1]   model row r (one forward context) is tokens [rows[r], rows[r+1])
//   row_metrics.npy            float64 [R, 3] per row: summed next-token loss, correct predictions, predictions
//   sites/SITE/ids.npy         uint16|uint32 [N, G, k] the k codes of every token, slot 0 = most similar
//   sites/SITE/scores.npy      float16 [N, G, k]       their scores (build --scores only)
//   sites/SITE/counts.npy      int64 [G, K]            activations per code (tokens where it is in any slot)
//   sites/SITE/index_offsets.npy   int64 [G*K+1]       inverted index: code c of member g fires at
//   sites/SITE/index_positions.npy uint32|int64 [...]  positions[offsets[g*K+c] : offsets[g*K+c+1]] (ascending)
//
// Token offsets tile the text: off[doc_tokens[d]] = doc_text[d], and a token
// that stands for no text (the <|endoftext|> that starts every document) has
// an empty span. So the token holding byte b of document d is the last token
// of d whose start is <= doc_text[d] + b.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/dtype.h"
#include "support/json.h"

namespace cb::cache {

inline constexpr const char* kFormatName = "codebook-cache";
inline constexpr int64_t kFormatVersion = 1;
inline constexpr const char* kManifestFile = "cache.json";

// The id stored for a blocked slot (-1 in the model's ids): the dtype's largest value.
inline constexpr uint32_t kNoCode16 = 0xffff;
inline constexpr uint32_t kNoCode32 = 0xffffffff;

// One codebook site of the cached model.
struct CacheSite {
  std::string name;  // "layer0.mlp"
  int64_t layer = 0;
  std::string placement;  // "mlp"
  int64_t groups = 1;     // G
  int64_t codes = 0;      // K per member
  int64_t k = 1;
  DType ids_dtype = DType::u16;
  DType positions_dtype = DType::u32;
  bool scores = false;

  std::string dir() const { return "sites/" + name; }
  // The member's display name: "layer0.mlp" or "layer3.attn_preproj[5]".
  std::string member_name(int64_t g) const;
  Json to_json() const;
  static CacheSite from_json(const Json& j, const std::string& what);
};

// The dtypes a site with K codes per member stores its ids in (K < 65535:
// uint16), and a cache of N tokens its positions in.
DType ids_dtype_for(int64_t codes);
DType positions_dtype_for(int64_t tokens);

// cache.json. Fields the readers need are typed; the rest (model, source,
// build options, metrics) stay JSON objects.
struct CacheManifest {
  int64_t tokens = 0, documents = 0, rows = 0, text_bytes = 0;
  std::string block_mode;  // "pack" or "document"
  int64_t block_size = 0;
  std::string tokenizer;  // spec (tools/text_io.h); "tokfsm:BASE" for TokFSM text
  std::vector<CacheSite> sites;
  Json model;                                 // {"file", "sha256", "layers"}
  Json source;                                // {"kind", "path", ...}
  Json build;                                 // the options the cache was built with
  Json metrics;                               // {"loss", "accuracy", "dead_code_fraction": {site: f}}
  int64_t shard_index = -1, shard_count = 0;  // a shard of a build (`cache merge` joins them)

  bool is_shard() const { return shard_count > 0; }
  Json to_json() const;
  static CacheManifest from_json(const Json& j, const std::string& what);
};

}  // namespace cb::cache
