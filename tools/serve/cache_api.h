// The read side of the code browser's JSON API (docs/serve.md): the cache's
// sites and metrics, regex search, a code's examples, topic codes of a
// document, similar codes and what a code writes, and the demo codes list.
// Each call takes the request's query parameters (or JSON body) and returns
// the JSON answer; bad input is an HttpError or a cb::Error (a 400).
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "support/json.h"
#include "tools/cache/code_cache.h"
#include "tools/serve/http_error.h"
#include "tools/text_io.h"

namespace cb::tools {
class CodeEffects;
}
namespace cb {
class Graph;
}

namespace cb::serve {

// Bounds on what one request may ask for.
inline constexpr int64_t kMaxExamplesPerPage = 200;
inline constexpr int64_t kMaxSearchResults = 1000;
inline constexpr int64_t kMaxContext = 50;

class CacheApi {
 public:
  // `model` is the model the server runs (may be empty); what a code writes
  // is read off the cache's own model file, or off `model` when that is the
  // same model (same fingerprint).
  CacheApi(const cache::CodeCache& cache, std::string model, bool read_only, bool live_model);
  ~CacheApi();

  Json info() const;
  Json search(const Params& p) const;
  Json code(const Params& p);
  Json topics(const Params& p) const;
  Json similar(const Params& p);
  Json demo_codes() const;
  // Adds (or with "remove": true, removes) one entry of demo_codes.json.
  Json save_demo_code(const Json& body);

  // Site member and code of a request, checked: unknown site or code out of range is a 400.
  std::pair<const cache::SiteArrays*, int64_t> member(const std::string& name) const;

 private:
  // The model graph what a code writes is read from, loaded once; nullptr
  // (and why_not_) when there is none.
  tools::CodeEffects* effects();
  Json writes_of(const cache::SiteArrays& site, int64_t g, int64_t code, int64_t n_similar);
  std::string token_name(int64_t id) const;

  const cache::CodeCache& cache_;
  std::string model_;
  bool read_only_, live_model_;
  std::optional<tools::TokenText> tokens_;
  int64_t state_digits_ = 0;
  std::mutex effects_mutex_;
  bool effects_tried_ = false;
  std::string why_not_;
  std::shared_ptr<Graph> effects_graph_;
  std::unique_ptr<tools::CodeEffects> effects_;
  mutable std::mutex demo_mutex_;
};

}  // namespace cb::serve
