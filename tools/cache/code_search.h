// Regex search over a code cache (docs/cache.md "Search"): which codes fire on
// the tokens a pattern picks out. The pattern runs over every document's text
// (RE2: linear time, UTF-8); each non-overlapping match names one token, the
// one holding the first byte of capture group 1 (or of the whole match when
// the pattern has no capturing group). Then, per codebook (site member), every
// code's recall (the share of matched tokens it fires on) and precision (the
// share of its activations that fall on matched tokens).
//
// Where this differs from the original's get_codes_from_pattern (codebook-spec
// §6.3, D23): offsets are true byte offsets into the text, so a multi-byte
// character split across tokens is attributed to the token holding its first
// byte; parity means the byte offset within the document (even = 0, 2, ...);
// a blocked slot (-1) is not a code; the precision threshold is inclusive.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "support/json.h"
#include "tools/cache/code_cache.h"

namespace cb::cache {

enum class SearchSort { precision, recall, acts };
// "precision" | "recall" | "acts"; anything else is a cb::Error.
SearchSort parse_search_sort(const std::string& s);

struct SearchOptions {
  std::string site;  // search only this site (or member "layer1.attn_preproj[2]"); empty: all
  int64_t top = 8;   // codes kept per member, by precision, before the threshold
  double min_precision = 0.5;
  SearchSort sort = SearchSort::precision;
  int64_t topk_slots = 0;  // count a code only in its first slots (0: all k)
  int parity = -1;         // keep group starts at even (0) / odd (1) byte offsets; -1: all
  int threads = 0;         // 0: all cores
};

// The longest pattern accepted, and the memory RE2 may use for it.
inline constexpr size_t kMaxPatternBytes = 4096;
inline constexpr int64_t kRegexMaxMem = int64_t(64) << 20;

struct CodeMatch {
  std::string site;    // "layer0.mlp"
  int64_t group = 0;   // member
  int64_t groups = 1;  // members of the site (for display)
  int64_t code = 0;
  int64_t hits = 0;         // matched tokens it fires on
  int64_t activations = 0;  // tokens it fires on (in the counted slots)
  double precision = 0, recall = 0;
  std::string member_name() const { return groups > 1 ? site + "[" + std::to_string(group) + "]" : site; }
  // {"site", "group", "code", "precision", "recall", "activations"}: what --json prints.
  Json to_json() const;
};

struct SearchResult {
  std::vector<int64_t> positions;  // matched tokens, ascending, distinct
  std::vector<CodeMatch> codes;    // sorted by the chosen key, best first
};

// The token positions a pattern matches (ascending, distinct). An invalid
// pattern or one over kMaxPatternBytes is a cb::Error (RE2's message).
std::vector<int64_t> match_positions(const CodeCache& cache, const std::string& pattern, const SearchOptions& options);

// The codes of every member (or options.site's) on `positions`, filtered and
// sorted as options say.
std::vector<CodeMatch> codes_on_positions(const CodeCache& cache, const std::vector<int64_t>& positions,
                                          const SearchOptions& options);

SearchResult search(const CodeCache& cache, const std::string& pattern, const SearchOptions& options = {});

// Sorts codes by `key`, best first (ties: precision, recall, site, member, code).
void sort_matches(std::vector<CodeMatch>& codes, SearchSort key);

// The topic codes of document d (codebook-spec §7.2): for every member, the
// codes firing (any slot) on at least recall_threshold of the document's
// tokens (and > 0.01 of them) with precision = those / the code's
// activations >= 0.01; sorted by recall, best first.
std::vector<CodeMatch> topic_codes(const CodeCache& cache, int64_t d, double recall_threshold);

// Activations of code c of member g counted in its first `slots` slots only
// (count(g, c) when slots >= k), from the inverted index and the ids.
int64_t activations_in_slots(const SiteArrays& site, int64_t g, int64_t c, int64_t slots);

}  // namespace cb::cache
