// A code's examples in a code cache (docs/cache.md "A code's examples"): where
// it fires, grouped by document, and each document rendered as a snippet
// with the firing tokens highlighted, as the original's color_tokens
// (codebook-spec §6.4) with its bugs fixed (D24): n trailing tokens after the
// last firing token (not n-1), and the caller's example cap is exact.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tools/cache/code_cache.h"

namespace cb::cache {

// How firing tokens are marked: "[[" "]]" for plain text, ANSI colour for a terminal.
struct Highlight {
  std::string open = "[[", close = "]]";
  static Highlight plain() { return {}; }
  static Highlight terminal() { return {"\x1b[36m", "\x1b[0m"}; }
};

// The positions where code c of member g fires in its first `slots` slots, ascending.
std::vector<int64_t> code_positions(const SiteArrays& site, int64_t g, int64_t c, int64_t slots);

// Positions (ascending) grouped by document: (document, its positions), in
// document order; at most max_documents documents (< 0: all).
std::vector<std::pair<int64_t, std::vector<int64_t>>> by_document(const CodeCache& cache,
                                                                  const std::vector<int64_t>& positions,
                                                                  int64_t max_documents = -1);

// One token's text as shown in a snippet: escapes for newlines, tabs,
// backslashes and invalid UTF-8 (tools/text_io.h escape_bytes without the
// quotes); a token spanning no text (the <|endoftext|> a document starts
// with) as "<|endoftext|>".
std::string shown_token(std::string_view bytes);

// The snippet of document d around the firing tokens `fired` (ascending,
// positions of d), `context` tokens each side: from the document's start,
// everything between two firing tokens closer than 2*context+1, else
// `context` tokens after the previous one, " ... ", and `context` before
// the next; `context` tokens after the last.
std::string render_snippet(const CodeCache& cache, int64_t d, const std::vector<int64_t>& fired, int64_t context,
                           const Highlight& h);

// The TokFSM rendering: the whole document, its states of `state_digits`
// digits separated by "-", firing tokens highlighted.
std::string render_tokfsm(const CodeCache& cache, int64_t d, const std::vector<int64_t>& fired, int64_t state_digits,
                          const Highlight& h);

// The digits per TokFSM state of a cache (manifest source.state_digits, else
// build.state_digits, else 2) or 0 when the cache's text is not TokFSM
// (tokenizer not "tokfsm...").
int64_t tokfsm_state_digits(const CacheManifest& m);

}  // namespace cb::cache
