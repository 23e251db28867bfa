// `codebook cache export`: a code cache (tools/cache/cache_format.h) in two
// other layouts.
//
//   original  the original library's code-search cache (its code_search_cache
//             script's output, read by its Streamlit Code Browser and notebooks):
//             tokens.npy, tokens_str.npy, tokens_text.npy, token_byte_pos.npy,
//             cb_acts.pkl, act_count_ft_tkns.pkl, metrics.npy, info.txt, for ONE
//             placement (all its layers), since the original supports one per model.
//   npz       one compressed NumPy archive per site (SITE.npz: the site's arrays)
//             plus tokens.npz (the token and text arrays): np.load(path)[name].
//
// The plain arrays are written here; what only Python writes (pickles, the
// metrics object array, zip archives) is done by tools/cache/cache_export.py,
// embedded in the binary and run with `python3 -c` (the interpreter can be
// chosen with $CB_PYTHON). Both write into OUT.partial and rename it to OUT at
// the end, so OUT is never half written.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tools/cache/code_cache.h"

namespace cb::cache {

// Token id for padding that export_original picks itself: the id of the
// token that starts the cache's documents with an empty span (<|endoftext|>).
inline constexpr int64_t kPadAuto = -2;

struct OriginalExportOptions {
  // The placement ("mlp") or one of its sites ("layer0.mlp"); "" = the cache's
  // only placement (an error listing the choices when it has several).
  std::string placement;
  int64_t pad_id = kPadAuto;  // tokens.npy id of positions past a row's end
  bool overwrite = false;     // replace an earlier export at OUT
};

struct OriginalExportSummary {
  std::string placement;
  std::vector<std::string> sites;  // exported, by layer
  int64_t rows = 0;                // S
  int64_t row_length = 0;          // T: the longest row
  int64_t padded_rows = 0;         // rows shorter than T (padded)
  int64_t pad_id = -1;             // tokens.npy id of the padding (-1: no row needed it)
  std::vector<std::string> warnings;
};

// Writes the original's layout for one placement into out_dir. Rows are the
// cache's model rows; a row shorter than the longest is padded: token
// pad_id, text "", codes -1 (counts exclude padding). Token strings own whole
// characters: a character split across tokens belongs to the token holding its
// first byte, so tokens_text[s] == "".join(tokens_str[s]) and token_byte_pos
// (cumulative character ends) maps a regex match offset in tokens_text to the
// token holding the matched character (the original's byte_id_to_token_pos_id).
OriginalExportSummary export_original(const CodeCache& cache, const std::string& out_dir,
                                      const OriginalExportOptions& options = {});

struct NpzExportOptions {
  std::string site;  // only this site ("" = every site)
  bool overwrite = false;
};

// Writes tokens.npz (tokens, token_offsets, doc_tokens, doc_text, text, rows,
// row_metrics), SITE.npz per site (ids, scores when kept, counts,
// index_offsets, index_positions) and a copy of cache.json into out_dir.
// Returns the archives written.
std::vector<std::string> export_npz(const CodeCache& cache, const std::string& out_dir,
                                    const NpzExportOptions& options = {});

}  // namespace cb::cache

namespace cb::tools {

// `codebook cache export CACHE --format original|npz -o DIR [--site S]`;
// argv[0] is "export" (tools/cmd_cache.cpp dispatches to it).
int cache_export_main(int argc, char** argv);

}  // namespace cb::tools
