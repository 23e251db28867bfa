#include "tools/cache/code_examples.h"

#include <algorithm>

#include "support/error.h"
#include "tools/text_io.h"

namespace cb::cache {

std::vector<int64_t> code_positions(const SiteArrays& site, int64_t g, int64_t c, int64_t slots) {
  CB_CHECK(g >= 0 && g < site.info().groups, site.info().name << ": member " << g << " out of range");
  CB_CHECK(c >= 0 && c < site.info().codes, site.info().member_name(g)
                                                << ": code " << c << " out of range (the codebook has "
                                                << site.info().codes << " codes)");
  PositionList p = site.positions(g, c);
  std::vector<int64_t> out;
  out.reserve(p.size());
  for (size_t i = 0; i < p.size(); ++i)
    if (slots >= site.info().k || site.fires(p[i], g, c, slots)) out.push_back(p[i]);
  return out;
}

std::vector<std::pair<int64_t, std::vector<int64_t>>> by_document(const CodeCache& cache,
                                                                  const std::vector<int64_t>& positions,
                                                                  int64_t max_documents) {
  std::vector<std::pair<int64_t, std::vector<int64_t>>> out;
  auto doc_tokens = cache.doc_tokens();
  for (int64_t p : positions) {
    if (out.empty() || p >= doc_tokens[size_t(out.back().first) + 1]) {
      if (max_documents >= 0 && int64_t(out.size()) == max_documents) break;
      out.push_back({cache.document_of(p), {}});
    }
    out.back().second.push_back(p);
  }
  return out;
}

std::string shown_token(std::string_view bytes) {
  if (bytes.empty()) return "<|endoftext|>";
  std::string q = tools::escape_bytes(std::string(bytes));
  return q.substr(1, q.size() - 2);
}

std::string render_snippet(const CodeCache& cache, int64_t d, const std::vector<int64_t>& fired, int64_t context,
                           const Highlight& h) {
  const int64_t first = cache.doc_tokens()[size_t(d)], end = cache.doc_tokens()[size_t(d) + 1];
  auto text = [&](int64_t b, int64_t e) {
    std::string s;
    for (int64_t p = std::max(b, first); p < std::min(e, end); ++p) s += shown_token(cache.token_text(p));
    return s;
  };
  std::string out;
  int64_t last = first - 1;  // the previous firing token; the document's start at first
  for (int64_t p : fired) {
    if (p - last <= 2 * context + 1) {
      out += text(last + 1, p);
    } else {
      out += text(last + 1, last + 1 + context) + " ... " + text(p - context, p);
    }
    out += h.open + shown_token(cache.token_text(p)) + h.close;
    last = p;
  }
  out += text(last + 1, last + 1 + context);
  if (last + 1 + context < end) out += " ...";
  return out;
}

std::string render_tokfsm(const CodeCache& cache, int64_t d, const std::vector<int64_t>& fired, int64_t state_digits,
                          const Highlight& h) {
  const int64_t first = cache.doc_tokens()[size_t(d)], end = cache.doc_tokens()[size_t(d) + 1];
  const int64_t base = cache.doc_text()[size_t(d)];
  std::string out;
  size_t f = 0;
  for (int64_t p = first; p < end; ++p) {
    bool hit = f < fired.size() && fired[f] == p;
    if (hit) ++f;
    std::string_view t = cache.token_text(p);
    if (t.empty()) {  // the <|endoftext|> a sample starts with
      if (hit) out += h.open + "<|endoftext|>" + h.close + " ";
      continue;
    }
    for (size_t i = 0; i < t.size(); ++i) {
      int64_t offset = cache.token_offsets()[size_t(p)] - base + int64_t(i);
      if (offset > 0 && state_digits > 0 && offset % state_digits == 0) out += "-";
      if (hit && i == 0) out += h.open;
      out += shown_token(t.substr(i, 1));
    }
    if (hit) out += h.close;
  }
  return out;
}

int64_t tokfsm_state_digits(const CacheManifest& m) {
  if (m.tokenizer.rfind("tokfsm", 0) != 0) return 0;
  for (const Json* j : {&m.source, &m.build})
    if (const Json* v = j->find("state_digits"); v && v->is_number()) return std::max<int64_t>(1, v->as_int());
  return 2;
}

}  // namespace cb::cache
