#include "tools/cache/cache_export.h"

#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "frontend/npy.h"
#include "support/error.h"
#include "support/file_io.h"
#include "support/json.h"
#include "support/utf8.h"
#include "tools/cache/cache_export_py.h"
#include "tools/cache/cache_writer.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/text_io.h"

extern char** environ;

namespace fs = std::filesystem;

namespace cb::cache {

namespace {

// ---- output directory: written as OUT.partial, renamed to OUT at the end ----

// The file a work directory of ours holds, so a leftover one is recognised.
constexpr const char* kWorkMarker = ".codebook-export";

// Checks OUT and opens a fresh OUT.partial. OUT may be missing or empty, or
// (with overwrite) an earlier export, recognised by `marker_file`.
std::string begin_output(std::string& out, bool overwrite, const char* marker_file) {
  CB_CHECK(!out.empty(), "-o: give the output directory");
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  std::error_code ec;
  if (fs::exists(out, ec)) {
    CB_CHECK(fs::is_directory(out, ec), "-o " << out << ": exists and is not a directory");
    if (!fs::is_empty(out, ec)) {
      CB_CHECK(fs::exists(fs::path(out) / marker_file, ec),
               "-o " << out << ": a non-empty directory that is no export of this format (no " << marker_file
                     << "); choose another path (nothing was written)");
      CB_CHECK(overwrite, "-o " << out << ": an export is already there (add --overwrite to replace it)");
    }
  }
  std::string work = out + ".partial";
  if (fs::exists(work, ec)) {
    CB_CHECK(fs::exists(fs::path(work) / kWorkMarker, ec),
             work << " exists and is not an unfinished export; move it away first");
    remove_tree(work);
  }
  fs::create_directories(work, ec);
  CB_CHECK(!ec, "cannot create '" << work << "': " << ec.message());
  std::ofstream(fs::path(work) / kWorkMarker) << "an unfinished `codebook cache export`\n";
  return work;
}

// Removes OUT.partial when an export fails before finish_output.
class WorkDirGuard {
 public:
  explicit WorkDirGuard(std::string work) : work_(std::move(work)) {}
  ~WorkDirGuard() {
    std::error_code ec;
    if (!work_.empty()) fs::remove_all(work_, ec);
  }
  void release() { work_.clear(); }

 private:
  std::string work_;
};

void finish_output(const std::string& work, const std::string& out) {
  std::error_code ec;
  fs::remove(fs::path(work) / kWorkMarker, ec);
  move_into_place(work, out);
}

// ---- .npy files written in order ----

class NpyWriter {
 public:
  NpyWriter(std::string path, const std::string& descr, const std::vector<int64_t>& shape) : path_(std::move(path)) {
    f_.open(path_, std::ios::binary | std::ios::trunc);
    CB_CHECK(f_, "cannot write '" << path_ << "'");
    write(npy_header(descr, shape));
  }
  void write(const void* data, size_t bytes) { f_.write(static_cast<const char*>(data), std::streamsize(bytes)); }
  void write(const std::string& s) { write(s.data(), s.size()); }
  template <typename T>
  void write(const std::vector<T>& v) {
    write(v.data(), v.size() * sizeof(T));
  }
  void close() {
    f_.flush();
    CB_CHECK(f_, "error writing '" << path_ << "' (disk full?)");
    f_.close();
  }

 private:
  std::string path_;
  std::ofstream f_;
};

// ---- the Python helper (tools/cache/cache_export.py) ----

std::string python_interpreter() {
  const char* p = std::getenv("CB_PYTHON");
  return p && *p ? p : "python3";
}

// Runs the helper with `args`; `why` says what it is needed for. Its own
// messages go to our stderr.
void run_helper(const std::vector<std::string>& args, const std::string& why) {
  std::string python = python_interpreter();
  std::vector<std::string> all = {python, "-c", kCacheExportPy};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string missing = why + " needs Python 3 (`" + python + "`; another interpreter can be named in $CB_PYTHON)";
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ);
  CB_CHECK(rc == 0, missing << ", which cannot be run: " << std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    CB_CHECK(errno == EINTR, "waiting for " << python << ": " << std::strerror(errno));
  CB_CHECK(WIFEXITED(status), python << " (the export helper) was killed by signal " << WTERMSIG(status));
  int code = WEXITSTATUS(status);
  CB_CHECK(code != 127, missing << ", which was not found");
  CB_CHECK(code != 3, why << " needs numpy, which `" << python
                          << "` cannot import (install it: apt-get install python3-numpy, or pip install numpy)");
  CB_CHECK(code == 0, python << " (the export helper) failed with exit code " << code << " (its message is above)");
}

// ---- the original's layout ----

// The characters each token owns, token by token in cache order: the
// characters whose first byte lies in the token's span, decoded per document
// (a character split across tokens belongs to the token holding its first
// byte; each maximal invalid UTF-8 subsequence, and NUL, is one U+FFFD).
class TokenChars {
 public:
  explicit TokenChars(const CodeCache& c) : c_(c) {}
  // The characters of token `pos`, the next token in order.
  const std::u32string& next(int64_t pos) {
    auto doc_tokens = c_.doc_tokens();
    while (pos >= doc_tokens[size_t(doc_ + 1)]) {
      ++doc_;
      doc_text_ = c_.document_text(doc_);
      doc_start_ = c_.doc_text()[size_t(doc_)];
      cursor_ = 0;
    }
    size_t end = size_t(c_.token_offsets()[size_t(pos) + 1] - doc_start_);
    chars_.clear();
    while (cursor_ < end) {
      size_t maximal = 1;
      size_t len = utf8_sequence_length(doc_text_, cursor_, &maximal);
      if (len) {
        char32_t ch = utf8_decode_valid(reinterpret_cast<const uint8_t*>(doc_text_.data()) + cursor_, &len);
        chars_.push_back(ch ? ch : U'\uFFFD');  // numpy drops trailing NULs of its strings
        cursor_ += len;
      } else {
        chars_.push_back(U'\uFFFD');
        cursor_ += std::max<size_t>(maximal, 1);
      }
    }
    return chars_;
  }

 private:
  const CodeCache& c_;
  int64_t doc_ = -1, doc_start_ = 0;
  std::string_view doc_text_;
  size_t cursor_ = 0;
  std::u32string chars_;
};

// The sites of the placement to export, by layer.
std::vector<const SiteArrays*> placement_sites(const CodeCache& cache, const std::string& wanted, std::string* chosen) {
  std::vector<std::string> placements;
  for (const SiteArrays& s : cache.sites())
    if (std::find(placements.begin(), placements.end(), s.info().placement) == placements.end())
      placements.push_back(s.info().placement);
  std::string list;
  for (const std::string& p : placements) list += (list.empty() ? "" : ", ") + p;
  CB_CHECK(!placements.empty(), cache.dir() << " has no codebook sites to export");
  std::string placement = wanted;
  if (placement.empty()) {
    CB_CHECK(placements.size() == 1, "the original's layout holds one placement, and "
                                         << cache.dir() << " has " << placements.size() << ": " << list
                                         << "; choose one with --placement P (or --site SITE)");
    placement = placements[0];
  } else if (std::find(placements.begin(), placements.end(), placement) == placements.end()) {
    // A site name ("layer0.mlp", or an alias) names its placement.
    try {
      placement = cache.site(wanted).info().placement;
    } catch (const Error&) {
      CB_FAIL("--placement/--site '" << wanted << "' is neither a placement nor a site of " << cache.dir()
                                     << "; its placements: " << list);
    }
  }
  std::vector<const SiteArrays*> sites;
  for (const SiteArrays& s : cache.sites())
    if (s.info().placement == placement) sites.push_back(&s);
  std::sort(sites.begin(), sites.end(),
            [](const SiteArrays* a, const SiteArrays* b) { return a->info().layer < b->info().layer; });
  const CacheSite& first = sites[0]->info();
  for (const SiteArrays* s : sites) {
    const CacheSite& i = s->info();
    CB_CHECK(i.groups == first.groups && i.codes == first.codes && i.k == first.k,
             "the original's layout needs one codebook shape per placement, and "
                 << placement << " has " << first.name << " (groups " << first.groups << ", codes " << first.codes
                 << ", k " << first.k << ") beside " << i.name << " (groups " << i.groups << ", codes " << i.codes
                 << ", k " << i.k << ")");
  }
  *chosen = placement;
  return sites;
}

// A value for info.txt, which the original parses with line.split(": "): one
// non-empty line without ": ".
std::string info_value(std::string v) {
  for (char& ch : v)
    if (ch == '\n' || ch == '\r') ch = ' ';
  for (size_t at; (at = v.find(": ")) != std::string::npos;) v.replace(at, 2, ":");
  return v.empty() ? "unknown" : v;
}

std::string json_string_or(const Json& j, const char* key, const std::string& fallback) {
  const Json* v = j.find(key);
  return v && v->is_string() && !v->as_string().empty() ? v->as_string() : fallback;
}

// The id of <|endoftext|>: the token that starts the documents with an empty
// span, else the document-start token of the cache's tokenizer.
int64_t find_pad_id(const CodeCache& cache) {
  auto doc_tokens = cache.doc_tokens();
  for (int64_t d = 0; d < cache.num_documents(); ++d) {
    int64_t first = doc_tokens[size_t(d)];
    if (first < doc_tokens[size_t(d) + 1] && cache.token_text(first).empty()) return cache.tokens()[size_t(first)];
  }
  std::string why;
  try {
    int64_t id = tools::TokenText::load(cache.manifest().tokenizer).document_start_id();
    if (id >= 0) return id;
    why = "its tokenizer has no <|endoftext|>";
  } catch (const Error& e) {
    why = std::string("its tokenizer cannot be loaded: ") + e.what();
  }
  CB_FAIL(cache.dir() << ": rows shorter than the longest are padded with <|endoftext|>, and its documents start "
                      << "with none and " << why << "; give a padding id with --pad-id ID");
}

}  // namespace

OriginalExportSummary export_original(const CodeCache& cache, const std::string& out_dir,
                                      const OriginalExportOptions& options) {
  OriginalExportSummary sum;
  std::vector<const SiteArrays*> sites = placement_sites(cache, options.placement, &sum.placement);
  const CacheSite& shape = sites[0]->info();
  const int64_t G = shape.groups, K = shape.codes, k = shape.k;
  const bool grouped = G > 1;
  auto rows = cache.rows();
  const int64_t S = int64_t(rows.size()) - 1;
  CB_CHECK(S > 0, cache.dir() << " has no model rows to export");
  int64_t T = 0;
  for (int64_t r = 0; r < S; ++r) T = std::max(T, rows[size_t(r) + 1] - rows[size_t(r)]);
  for (int64_t r = 0; r < S; ++r) sum.padded_rows += rows[size_t(r) + 1] - rows[size_t(r)] < T;
  sum.rows = S;
  sum.row_length = T;
  sum.pad_id = options.pad_id != kPadAuto ? options.pad_id : sum.padded_rows ? find_pad_id(cache) : -1;
  for (const SiteArrays* s : sites) sum.sites.push_back(s->info().name);

  run_helper({"check"}, "--format original (pickles)");  // before anything is written
  std::string out = out_dir;
  std::string work = begin_output(out, options.overwrite, "info.txt");
  WorkDirGuard guard(work);
  auto path = [&](const std::string& name) { return (fs::path(work) / name).string(); };

  // tokens.npy int64 [S, T], and row_lengths.npy (ours: which positions are real).
  {
    NpyWriter f(path("tokens.npy"), "<i8", {S, T});
    NpyWriter lens(path("row_lengths.npy"), "<i8", {S});
    std::vector<int64_t> row(static_cast<size_t>(T));
    auto tokens = cache.tokens();
    for (int64_t r = 0; r < S; ++r) {
      int64_t b = rows[size_t(r)], n = rows[size_t(r) + 1] - b;
      for (int64_t t = 0; t < T; ++t) row[size_t(t)] = t < n ? int64_t(tokens[size_t(b + t)]) : sum.pad_id;
      f.write(row);
      lens.write(&n, sizeof n);
    }
    f.close();
    lens.close();
  }

  // tokens_str.npy, tokens_text.npy and token_byte_pos.npy: one pass to size
  // the unicode arrays (the longest token and row in characters), one to write.
  int64_t token_width = 1, text_width = 1;
  {
    TokenChars chars(cache);
    for (int64_t r = 0; r < S; ++r) {
      int64_t row_chars = 0;
      for (int64_t p = rows[size_t(r)]; p < rows[size_t(r) + 1]; ++p) {
        int64_t n = int64_t(chars.next(p).size());
        token_width = std::max(token_width, n);
        row_chars += n;
      }
      text_width = std::max(text_width, row_chars);
    }
  }
  {
    NpyWriter str(path("tokens_str.npy"), "<U" + std::to_string(token_width), {S, T});
    NpyWriter text(path("tokens_text.npy"), "<U" + std::to_string(text_width), {S});
    NpyWriter ends(path("token_byte_pos.npy"), "<i8", {S, T});
    TokenChars chars(cache);
    std::vector<char32_t> cells(size_t(T * token_width));
    std::u32string row_text;
    std::vector<int64_t> row_ends(static_cast<size_t>(T));
    for (int64_t r = 0; r < S; ++r) {
      std::fill(cells.begin(), cells.end(), U'\0');
      row_text.clear();
      int64_t b = rows[size_t(r)], n = rows[size_t(r) + 1] - b;
      for (int64_t t = 0; t < T; ++t) {
        if (t < n) {
          const std::u32string& c = chars.next(b + t);
          std::copy(c.begin(), c.end(), cells.begin() + t * token_width);
          row_text += c;
        }
        row_ends[size_t(t)] = int64_t(row_text.size());
      }
      str.write(cells);
      row_text.resize(size_t(text_width), U'\0');
      text.write(row_text.data(), row_text.size() * sizeof(char32_t));
      ends.write(row_ends);
    }
    str.close();
    text.close();
    ends.close();
  }

  // The codes, staged as .npy files for the helper to pickle: int64 [S, T, k]
  // per codebook (blocked slots and padding -1), int64 [K] counts.
  std::string staging = path(".staging");
  fs::create_directories(fs::path(staging) / "cb_acts");
  fs::create_directories(fs::path(staging) / "act_count");
  Json::Array cb_keys, count_keys;
  int64_t dead_total = 0, max_layer = 0;
  Json metrics = Json::Object{};
  std::set<int64_t> layers;
  for (const SiteArrays* s : sites) {
    const int64_t L = s->info().layer;
    layers.insert(L);
    max_layer = std::max(max_layer, L);
    int64_t dead_layer = 0;
    for (int64_t g = 0; g < G; ++g) {
      std::string key = "layer" + std::to_string(L) + "_" + sum.placement + (grouped ? "_gcb" + std::to_string(g) : "");
      std::string file = "cb_acts/" + key + ".npy";
      NpyWriter f((fs::path(staging) / file).string(), "<i8", {S, T, k});
      std::vector<int64_t> row(size_t(T * k));
      for (int64_t r = 0; r < S; ++r) {
        int64_t b = rows[size_t(r)], n = rows[size_t(r) + 1] - b;
        for (int64_t t = 0; t < T; ++t)
          for (int64_t slot = 0; slot < k; ++slot) row[size_t(t * k + slot)] = t < n ? s->code(b + t, g, slot) : -1;
        f.write(row);
      }
      f.close();
      cb_keys.push_back(Json(Json::Array{Json(key), Json(file)}));

      std::string count_key = "layer" + std::to_string(L) + (grouped ? "_head" + std::to_string(g) : "");
      std::string count_file = "act_count/" + count_key + ".npy";
      NpyWriter c((fs::path(staging) / count_file).string(), "<i8", {K});
      std::vector<int64_t> counts(s->counts().begin() + g * K, s->counts().begin() + (g + 1) * K);
      c.write(counts);
      c.close();
      count_keys.push_back(Json(Json::Array{Json(count_key), Json(count_file)}));
      dead_layer += std::count(counts.begin(), counts.end(), int64_t(0));
    }
    dead_total += dead_layer;
    metrics["eval_dead_code_fraction/layer" + std::to_string(L)] = double(dead_layer) / double(G * K);
  }
  const int64_t n_layers = max_layer + 1;
  if (int64_t(layers.size()) < n_layers)
    sum.warnings.push_back("the original's Code Browser offers layers 0.." + std::to_string(n_layers - 1) + " and " +
                           sum.placement + " has codebooks at " + std::to_string(layers.size()) +
                           " of them; it fails on a layer without one");

  // metrics.npy: the cache's metrics with the original's eval_ prefix.
  metrics["eval_dead_code_fraction"] = double(dead_total) / double(int64_t(sites.size()) * G * K);
  if (cache.manifest().metrics.is_object())
    for (const auto& [name, v] : cache.manifest().metrics.as_object())
      if (v.is_number() && std::isfinite(v.as_double())) metrics["eval_" + name] = v;
  Json keys = Json::Object{};
  keys["cb_acts"] = Json(cb_keys);
  keys["act_count"] = Json(count_keys);
  keys["metrics"] = metrics;
  json_write_file((fs::path(staging) / "keys.json").string(), keys);
  run_helper({"original", staging, work}, "--format original (pickles)");
  remove_tree(staging);

  // info.txt as the original's ModelInfoForWebapp.save writes it.
  const CacheManifest& m = cache.manifest();
  std::string model_file = json_string_or(m.model, "file", "");
  std::string model_name = model_file.empty() ? "" : fs::path(model_file).stem().string();
  const Json* seed = m.build.find("seed");
  std::ostringstream info;
  info << "model_name: " << info_value(model_name) << "\n"
       << "pretrained_path: " << info_value(model_file) << "\n"
       << "dataset_name: " << info_value(json_string_or(m.source, "path", json_string_or(m.source, "kind", ""))) << "\n"
       << "num_codes: " << K << "\n"
       << "cb_at: " << sum.placement << "\n"
       << "gcb: " << (grouped ? "_gcb" : "_vcb") << "\n"
       << "n_layers: " << n_layers << "\n"
       << "n_grps: " << (grouped ? std::to_string(G) : "None") << "\n"
       << "seed: " << (seed && seed->is_integer() ? seed->as_int() : 0) << "\n"
       << "max_samples: " << S << "\n";
  write_file_atomic(path("info.txt"), info.str());
  finish_output(work, out);
  guard.release();
  return sum;
}

std::vector<std::string> export_npz(const CodeCache& cache, const std::string& out_dir,
                                    const NpzExportOptions& options) {
  std::vector<const SiteArrays*> sites;
  for (const SiteArrays& s : cache.sites()) sites.push_back(&s);
  if (!options.site.empty()) sites = {&cache.site(options.site)};
  std::string out = out_dir;
  std::string work = begin_output(out, options.overwrite, "tokens.npz");
  WorkDirGuard guard(work);
  auto in = [&](const std::string& name) { return (fs::path(cache.dir()) / name).string(); };
  std::vector<std::string> written;
  Json spec = Json::Object{};  // {"OUT.npz": [[name, path.npy], ...]}: one helper run for all
  auto archive = [&](const std::string& name, const std::vector<std::string>& members, const std::string& dir) {
    Json::Array list;
    for (const std::string& m : members) list.push_back(Json(Json::Array{Json(m), Json(in(dir + m + ".npy"))}));
    spec[(fs::path(work) / name).string()] = Json(list);
    written.push_back(name);
  };
  archive("tokens.npz", {"tokens", "token_offsets", "doc_tokens", "doc_text", "text", "rows", "row_metrics"}, "");
  for (const SiteArrays* s : sites) {
    std::vector<std::string> members = {"ids"};
    if (s->info().scores) members.push_back("scores");
    for (const char* m : {"counts", "index_offsets", "index_positions"}) members.push_back(m);
    archive(s->info().name + ".npz", members, s->info().dir() + "/");
  }
  run_helper({"npz", spec.dump()}, "--format npz");
  std::error_code ec;
  fs::copy_file(in(kManifestFile), fs::path(work) / kManifestFile, ec);
  CB_CHECK(!ec, "cannot copy " << in(kManifestFile) << ": " << ec.message());
  finish_output(work, out);
  guard.release();
  return written;
}

}  // namespace cb::cache

namespace cb::tools {

namespace po = boost::program_options;

int cache_export_main(int argc, char** argv) {
  po::options_description opts("usage: codebook cache export CACHE --format original|npz -o DIR [options]\n\noptions");
  opts.add_options()("format", po::value<std::string>(), "original (the original library's layout) or npz")(
      "output,o", po::value<std::string>(), "directory to write (missing or empty; --overwrite replaces an export)")(
      "site", po::value<std::string>(), "npz: only this site; original: the placement of this site (all its layers)")(
      "placement", po::value<std::string>(), "original: the placement to export (mlp, attn_preproj, ...)")(
      "pad-id", po::value<int64_t>()->notifier(must_be_non_negative("--pad-id")),
      "original: token id padding rows shorter than the longest "
      "(default: <|endoftext|>, from the documents or the cache's tokenizer)")("overwrite",
                                                                               "replace an earlier export at DIR");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "cache", "code cache directory (`codebook cache build`)", vm, R"(
--format original writes what the original library's code_search_cache writes,
for one placement (all its layers): tokens.npy, tokens_str.npy, tokens_text.npy,
token_byte_pos.npy, cb_acts.pkl, act_count_ft_tkns.pkl, metrics.npy, info.txt,
plus row_lengths.npy. Its rows are the cache's model rows; shorter rows are
padded to the longest (token --pad-id, text "", codes -1). Token strings own
whole characters (a character split between tokens goes to the token holding
its first byte), so token_byte_pos maps a regex match in tokens_text to the
right token. The original's Code Browser reads DIR when DIR's name ends in
_DATE_TIME (e.g. -o cb_eval_acts/mymodel_vcb_mlp_2024-01-01_00-00-00, then
streamlit run Code_Browser.py -- --cache_dir cb_eval_acts/).
--format npz writes tokens.npz and one SITE.npz per site (np.load(path)[name]),
plus a copy of cache.json.
Both need python3 (original: with numpy); $CB_PYTHON names another interpreter.
)"))
    return 0;
  CB_CHECK(vm.count("format"), "give the layout with --format original|npz");
  CB_CHECK(vm.count("output"), "give the output directory with -o DIR");
  std::string format = vm["format"].as<std::string>();
  std::string out = vm["output"].as<std::string>();
  cache::CodeCache cache = cache::CodeCache::open(vm["cache"].as<std::string>());
  if (format == "original") {
    cache::OriginalExportOptions o;
    CB_CHECK(!(vm.count("site") && vm.count("placement")), "give --placement or --site, not both");
    if (vm.count("placement")) o.placement = vm["placement"].as<std::string>();
    if (vm.count("site")) o.placement = vm["site"].as<std::string>();
    if (vm.count("pad-id")) o.pad_id = vm["pad-id"].as<int64_t>();
    o.overwrite = vm.count("overwrite") > 0;
    cache::OriginalExportSummary s = cache::export_original(cache, out, o);
    for (const std::string& w : s.warnings) std::cerr << "warning: " << w << "\n";
    std::cout << "wrote " << out << ": placement " << s.placement << " (" << s.sites.size() << " site"
              << (s.sites.size() == 1 ? "" : "s") << "), " << s.rows << " rows x " << s.row_length << " tokens";
    if (s.padded_rows) std::cout << " (" << s.padded_rows << " shorter rows padded with token " << s.pad_id << ")";
    std::cout << "\n";
  } else if (format == "npz") {
    CB_CHECK(!vm.count("placement") && !vm.count("pad-id"), "--placement and --pad-id are for --format original");
    cache::NpzExportOptions o;
    if (vm.count("site")) o.site = vm["site"].as<std::string>();
    o.overwrite = vm.count("overwrite") > 0;
    std::vector<std::string> files = cache::export_npz(cache, out, o);
    std::cout << "wrote " << out << ": " << files.size() << " archives (";
    for (size_t i = 0; i < files.size(); ++i) std::cout << (i ? ", " : "") << files[i];
    std::cout << ")\n";
  } else {
    CB_FAIL("--format " << format << ": choose original or npz");
  }
  return 0;
}

}  // namespace cb::tools
