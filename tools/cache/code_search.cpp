#include "tools/cache/code_search.h"

#include <re2/re2.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "support/error.h"
#include "support/threads.h"
#include "support/utf8.h"

namespace cb::cache {

Json CodeMatch::to_json() const {
  Json e = Json::Object{};
  e["site"] = site;
  e["group"] = group;
  e["code"] = code;
  e["precision"] = precision;
  e["recall"] = recall;
  e["activations"] = activations;
  return e;
}

SearchSort parse_search_sort(const std::string& s) {
  if (s == "precision") return SearchSort::precision;
  if (s == "recall") return SearchSort::recall;
  if (s == "acts" || s == "activations") return SearchSort::acts;
  CB_FAIL("--sort '" << s << "': expected precision, recall or acts");
}

namespace {

std::unique_ptr<RE2> compile_pattern(const std::string& pattern) {
  CB_CHECK(pattern.size() <= kMaxPatternBytes,
           "regex of " << pattern.size() << " bytes: longer than the " << kMaxPatternBytes << " bytes allowed");
  RE2::Options o;
  o.set_max_mem(kRegexMaxMem);
  o.set_log_errors(false);
  auto re = std::make_unique<RE2>(pattern, o);
  if (!re->ok()) {
    if (re->error_code() == RE2::ErrorPatternTooLarge)
      CB_FAIL("regex '" << pattern << "': too large for the " << (kRegexMaxMem >> 20)
                        << " MiB RE2 may use for one pattern (" << re->error() << ")");
    CB_FAIL("invalid regex '" << pattern << "': " << re->error());
  }
  return re;
}

// Documents [first[i], first[i+1]) form piece i; pieces hold about equal text.
std::vector<int64_t> document_pieces(const CodeCache& cache, int64_t pieces) {
  auto doc_text = cache.doc_text();
  int64_t D = cache.num_documents(), total = doc_text.back();
  std::vector<int64_t> first = {0};
  for (int64_t d = 0; d < D; ++d) {
    int64_t next = int64_t(first.size());
    if (doc_text[size_t(d) + 1] * pieces >= next * total && d + 1 < D) first.push_back(d + 1);
  }
  first.push_back(D);
  return first;
}

// Whether a pattern matches a piece of text whatever surrounds it: no
// anchors or word boundaries (conservatively: no '^', '$' or "\\b", "\\B",
// "\\A", "\\z" anywhere). Such a pattern can be searched for in many
// documents' text at once.
bool context_free(const std::string& pattern) {
  if (pattern.find_first_of("^$") != std::string::npos) return false;
  for (size_t i = 0; i + 1 < pattern.size(); ++i)
    if (pattern[i] == '\\') {
      if (std::string_view("bBAz").find(pattern[i + 1]) != std::string_view::npos) return false;
      ++i;
    }
  return true;
}

// Every non-overlapping match in documents [d0, d1), appending the token of
// each non-empty group's first byte.
void scan_documents(const CodeCache& cache, const RE2& re, bool whole_piece, int parity, int64_t d0, int64_t d1,
                    std::vector<int64_t>& out) {
  const int want = re.NumberOfCapturingGroups() > 0 ? 2 : 1;
  re2::StringPiece sub[2];
  auto doc_text = cache.doc_text();
  std::string_view all = cache.text();
  // Records a match of document d (text starting at `base`); returns where the next search starts,
  // or npos after an empty match at the end.
  auto take = [&](int64_t d, const char* base, size_t size) -> size_t {
    const re2::StringPiece& m = sub[0];
    const re2::StringPiece& g = sub[want - 1];
    size_t end = size_t(m.data() - base) + m.size();
    if (g.data() && !g.empty()) {
      int64_t offset = int64_t(g.data() - base);
      if (parity < 0 || (offset & 1) == parity) {
        int64_t token = cache.token_at(d, offset);
        if (out.empty() || out.back() != token) out.push_back(token);
      } else {
        // A match at the wrong parity consumes nothing: a match of the right
        // parity may overlap it ("4(4)" in "x444": the state "44" starts
        // inside the match "44" at the odd offset before it).
        size_t start = size_t(m.data() - base);
        return start + std::max<size_t>(1, utf8_sequence_length(std::string_view(base, size), start));
      }
    }
    if (!m.empty()) return end;
    // An empty match: go on from the next character (as Python's finditer).
    if (end >= size) return std::string::npos;
    return end + std::max<size_t>(1, utf8_sequence_length(std::string_view(base, size), end));
  };
  // Document d alone, from byte `pos` of its text.
  auto scan_one = [&](int64_t d, size_t pos) {
    re2::StringPiece text(all.data() + doc_text[size_t(d)], size_t(doc_text[size_t(d) + 1] - doc_text[size_t(d)]));
    while (pos <= text.size() && re.Match(text, pos, text.size(), RE2::UNANCHORED, sub, want))
      pos = take(d, text.data(), text.size());
  };
  if (d0 >= d1) return;
  if (!whole_piece) {
    for (int64_t d = d0; d < d1; ++d) scan_one(d, 0);
    return;
  }
  // One search over the piece's text finds the next match in any of its
  // documents (one RE2 call per match, not per document). A match inside one
  // document is the one a search of that document alone finds; a match
  // crossing into the next document is not, so that document is searched
  // alone from there.
  const int64_t B = doc_text[size_t(d0)];
  re2::StringPiece text(all.data() + B, size_t(doc_text[size_t(d1)] - B));
  size_t pos = 0;
  int64_t d = d0;
  while (pos <= text.size() && re.Match(text, pos, text.size(), RE2::UNANCHORED, sub, want)) {
    size_t start = size_t(sub[0].data() - text.data()), end = start + sub[0].size();
    while (d + 1 < d1 && size_t(doc_text[size_t(d) + 1] - B) <= start) ++d;
    const size_t doc_start = size_t(doc_text[size_t(d)] - B), doc_end = size_t(doc_text[size_t(d) + 1] - B);
    if (end <= doc_end) {
      size_t next = take(d, text.data() + doc_start, doc_end - doc_start);
      if (next == std::string::npos) {  // an empty match at the document's end
        if (d + 1 >= d1) break;
        pos = doc_end;
        ++d;
        continue;
      }
      pos = doc_start + next;
    } else {
      scan_one(d, pos > doc_start ? pos - doc_start : 0);
      if (d + 1 >= d1) break;
      pos = doc_end;
      ++d;
    }
  }
}

// The members a search covers.
std::vector<std::pair<const SiteArrays*, int64_t>> searched_members(const CodeCache& cache, const std::string& site) {
  std::vector<std::pair<const SiteArrays*, int64_t>> out;
  if (site.find('[') != std::string::npos) {
    out.push_back(cache.member(site));
    return out;
  }
  for (const SiteArrays& s : cache.sites())
    if (site.empty() || &s == &cache.site(site))
      for (int64_t g = 0; g < s.info().groups; ++g) out.push_back({&s, g});
  return out;
}

// hits[g*K + c] += matched tokens where code c of member g is in the first `slots` slots.
template <typename Id>
void count_hits(const SiteArrays& s, const int64_t* pos, size_t n, int64_t slots, uint32_t* hits) {
  const Id* ids = static_cast<const Id*>(s.ids_data());
  const int64_t G = s.info().groups, k = s.info().k, K = s.info().codes;
  const Id none = Id(~Id(0));
  // The rows are far apart in a large cache: ask for the ones a few tokens
  // ahead, so that the memory latencies overlap.
  constexpr size_t kAhead = 16;
  for (size_t i = 0; i < n; ++i) {
    if (i + kAhead < n) __builtin_prefetch(ids + pos[i + kAhead] * G * k);
    const Id* row = ids + pos[i] * G * k;
    for (int64_t g = 0; g < G; ++g, row += k)
      for (int64_t slot = 0; slot < slots; ++slot)
        if (row[slot] != none) ++hits[g * K + row[slot]];
  }
}

bool better(const CodeMatch& a, const CodeMatch& b, SearchSort key) {
  auto tie = [&] {
    if (a.precision != b.precision) return a.precision > b.precision;
    if (a.recall != b.recall) return a.recall > b.recall;
    if (a.site != b.site) return a.site < b.site;
    if (a.group != b.group) return a.group < b.group;
    return a.code < b.code;
  };
  switch (key) {
    case SearchSort::recall:
      if (a.recall != b.recall) return a.recall > b.recall;
      break;
    case SearchSort::acts:
      if (a.activations != b.activations) return a.activations > b.activations;
      break;
    case SearchSort::precision: break;
  }
  return tie();
}

}  // namespace

void sort_matches(std::vector<CodeMatch>& codes, SearchSort key) {
  std::sort(codes.begin(), codes.end(), [key](const CodeMatch& a, const CodeMatch& b) { return better(a, b, key); });
}

int64_t activations_in_slots(const SiteArrays& site, int64_t g, int64_t c, int64_t slots) {
  if (slots >= site.info().k) return site.count(g, c);
  PositionList p = site.positions(g, c);
  int64_t n = 0;
  for (size_t i = 0; i < p.size(); ++i) n += site.fires(p[i], g, c, slots);
  return n;
}

std::vector<int64_t> match_positions(const CodeCache& cache, const std::string& pattern, const SearchOptions& options) {
  CB_CHECK(options.parity >= -1 && options.parity <= 1, "parity must be odd, even or none");
  std::unique_ptr<RE2> re = compile_pattern(pattern);
  const int threads = resolve_thread_count(options.threads);
  std::vector<int64_t> first = document_pieces(cache, int64_t(threads) * 8);
  const int64_t pieces = int64_t(first.size()) - 1;
  std::vector<std::vector<int64_t>> found(size_t(std::max<int64_t>(pieces, 0)));
  // One RE2 per thread: a shared one serialises the threads on its DFA cache.
  std::vector<std::unique_ptr<RE2>> per_thread(static_cast<size_t>(threads));
  const bool whole_pieces = context_free(pattern);
  parallel_chunks(
      pieces, size_t(cache.text().size()), size_t(1) << 20, threads,
      [&](int64_t p0, int64_t p1) {
        const int t = parallel_worker_index();
        const RE2* mine = re.get();
        if (t > 0) {
          if (!per_thread[size_t(t)]) per_thread[size_t(t)] = compile_pattern(pattern);
          mine = per_thread[size_t(t)].get();
        }
        for (int64_t p = p0; p < p1; ++p)
          scan_documents(cache, *mine, whole_pieces, options.parity, first[size_t(p)], first[size_t(p) + 1],
                         found[size_t(p)]);
      },
      pieces);
  std::vector<int64_t> out;
  size_t total = 0;
  for (auto& f : found) total += f.size();
  out.reserve(total);
  for (auto& f : found) out.insert(out.end(), f.begin(), f.end());
  // Already ascending (matches do not overlap and documents come in order); kept safe.
  if (!std::is_sorted(out.begin(), out.end())) std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<CodeMatch> codes_on_positions(const CodeCache& cache, const std::vector<int64_t>& positions,
                                          const SearchOptions& options) {
  CB_CHECK(options.topk_slots >= 0, "--topk-slots must be >= 1");
  CB_CHECK(options.top >= 0, "--top must be >= 0");
  auto members = searched_members(cache, options.site);
  const size_t M = positions.size();
  if (M == 0 || members.empty()) return {};
  const int threads = resolve_thread_count(options.threads);
  auto slots_of = [&](const SiteArrays& s) {
    return options.topk_slots > 0 ? std::min(options.topk_slots, s.info().k) : s.info().k;
  };

  // Hits per code, per site: tasks are (site, range of matched tokens), each
  // counting into its own array and adding it to the site's under a lock.
  std::vector<const SiteArrays*> sites;
  for (auto& [s, g] : members)
    if (sites.empty() || sites.back() != s) sites.push_back(s);
  std::vector<std::vector<uint32_t>> hits(sites.size());
  std::vector<std::mutex> locks(sites.size());
  const size_t per_task = std::max<size_t>(1 << 14, M / size_t(threads * 4) + 1);
  const size_t pieces = (M + per_task - 1) / per_task;
  for (size_t i = 0; i < sites.size(); ++i) hits[i].assign(size_t(sites[i]->info().groups * sites[i]->info().codes), 0);
  const int64_t tasks = int64_t(sites.size() * pieces);
  size_t ids_read = 0;  // per matched token
  for (const SiteArrays* s : sites) ids_read += size_t(s->info().groups * slots_of(*s));
  parallel_chunks(
      tasks, M * ids_read * 8, size_t(4) << 20, threads,
      [&](int64_t t0, int64_t t1) {
        std::vector<uint32_t> local;
        for (int64_t t = t0; t < t1; ++t) {
          size_t si = size_t(t) / pieces, piece = size_t(t) % pieces;
          const SiteArrays& s = *sites[si];
          size_t b = piece * per_task, e = std::min(M, b + per_task);
          local.assign(hits[si].size(), 0);
          if (s.wide_ids())
            count_hits<uint32_t>(s, positions.data() + b, e - b, slots_of(s), local.data());
          else
            count_hits<uint16_t>(s, positions.data() + b, e - b, slots_of(s), local.data());
          std::lock_guard<std::mutex> lock(locks[si]);
          for (size_t i = 0; i < local.size(); ++i) hits[si][i] += local[i];
        }
      },
      1);

  // Per member: codes with recall > 0.01, their precision, the `top` most precise.
  std::vector<std::vector<CodeMatch>> kept(members.size());
  // Threads only pay for themselves when there is much to do: many codes, or
  // activations to recount in the first slots.
  size_t member_work = 0;
  for (auto& [s, g] : members) member_work += size_t(s->info().codes) * (slots_of(*s) < s->info().k ? 64 : 4);
  parallel_chunks(int64_t(members.size()), member_work, size_t(1) << 20, threads, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      auto [s, g] = members[size_t(m)];
      size_t si = size_t(std::find(sites.begin(), sites.end(), s) - sites.begin());
      const int64_t K = s->info().codes;
      std::vector<CodeMatch> list;
      for (int64_t c = 0; c < K; ++c) {
        uint32_t h = hits[si][size_t(g * K + c)];
        if (h == 0 || double(h) / double(M) <= 0.01) continue;
        CodeMatch cm;
        cm.site = s->info().name;
        cm.group = g;
        cm.groups = s->info().groups;
        cm.code = c;
        cm.hits = h;
        cm.activations = activations_in_slots(*s, g, c, slots_of(*s));
        cm.recall = double(h) / double(M);
        cm.precision = cm.activations > 0 ? double(h) / double(cm.activations) : 0.0;
        list.push_back(std::move(cm));
      }
      auto by_precision = [](const CodeMatch& a, const CodeMatch& b) { return better(a, b, SearchSort::precision); };
      size_t n = std::min(list.size(), size_t(options.top));
      std::partial_sort(list.begin(), list.begin() + std::ptrdiff_t(n), list.end(), by_precision);
      list.resize(n);
      for (CodeMatch& cm : list)
        if (cm.precision >= options.min_precision) kept[size_t(m)].push_back(std::move(cm));
    }
  });
  std::vector<CodeMatch> out;
  for (auto& k : kept) out.insert(out.end(), std::make_move_iterator(k.begin()), std::make_move_iterator(k.end()));
  std::sort(out.begin(), out.end(), [&](const CodeMatch& a, const CodeMatch& b) { return better(a, b, options.sort); });
  return out;
}

std::vector<CodeMatch> topic_codes(const CodeCache& cache, int64_t d, double recall_threshold) {
  CB_CHECK(d >= 0 && d < cache.num_documents(),
           "--doc " << d << ": out of range; the cache has " << cache.num_documents() << " documents");
  const int64_t b = cache.doc_tokens()[size_t(d)], e = cache.doc_tokens()[size_t(d) + 1];
  const int64_t T = e - b;
  std::vector<CodeMatch> out;
  if (T == 0) return out;
  for (const SiteArrays& s : cache.sites()) {
    const int64_t G = s.info().groups, K = s.info().codes, k = s.info().k;
    std::vector<int64_t> n(size_t(G * K), 0);
    for (int64_t p = b; p < e; ++p)
      for (int64_t g = 0; g < G; ++g)
        for (int64_t slot = 0; slot < k; ++slot)
          if (int64_t c = s.code(p, g, slot); c >= 0) ++n[size_t(g * K + c)];
    for (int64_t g = 0; g < G; ++g)
      for (int64_t c = 0; c < K; ++c) {
        int64_t h = n[size_t(g * K + c)];
        double recall = double(h) / double(T);
        if (h == 0 || recall < recall_threshold || recall <= 0.01) continue;
        double precision = double(h) / double(s.count(g, c));
        if (precision < 0.01) continue;
        CodeMatch cm;
        cm.site = s.info().name;
        cm.group = g;
        cm.groups = G;
        cm.code = c;
        cm.hits = h;
        cm.activations = s.count(g, c);
        cm.precision = precision;
        cm.recall = recall;
        out.push_back(std::move(cm));
      }
  }
  sort_matches(out, SearchSort::recall);
  return out;
}

SearchResult search(const CodeCache& cache, const std::string& pattern, const SearchOptions& options) {
  SearchResult r;
  r.positions = match_positions(cache, pattern, options);
  r.codes = codes_on_positions(cache, r.positions, options);
  return r;
}

}  // namespace cb::cache
