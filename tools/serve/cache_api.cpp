#include "tools/serve/cache_api.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>

#include "support/error.h"
#include "support/utf8.h"
#include "tools/cache/cache_build.h"
#include "tools/cache/code_examples.h"
#include "tools/cache/code_search.h"
#include "tools/code_effects.h"
#include "tools/model_io.h"

namespace cb::serve {

namespace {

std::string json_text(std::string_view s) { return utf8_replace_invalid(s); }

Json code_match_json(const cache::CodeMatch& m) {
  Json e = Json::Object{};
  e["site"] = m.site;
  e["group"] = m.group;
  e["member"] = m.member_name();
  e["code"] = m.code;
  e["precision"] = m.precision;
  e["recall"] = m.recall;
  e["activations"] = m.activations;
  return e;
}

// Markers of firing tokens in snippets split into parts for the page: control
// bytes that the cache's escaped token text never holds (shown_token escapes them).
const cache::Highlight kSplitMarks{"\x01", "\x02"};

// A snippet as [{text, fired}] parts.
Json snippet_parts(const std::string& marked) {
  Json::Array parts;
  std::string cur;
  bool fired = false;
  auto flush = [&] {
    if (!cur.empty()) parts.push_back(Json(Json::Object{{"text", Json(json_text(cur))}, {"fired", Json(fired)}}));
    cur.clear();
  };
  for (char ch : marked) {
    if (ch == '\x01' || ch == '\x02') {
      flush();
      fired = ch == '\x01';
    } else {
      cur += ch;
    }
  }
  flush();
  return Json(std::move(parts));
}

std::string unmarked(const std::string& marked, const cache::Highlight& h) {
  std::string out;
  for (char ch : marked) {
    if (ch == '\x01')
      out += h.open;
    else if (ch == '\x02')
      out += h.close;
    else
      out += ch;
  }
  return out;
}

}  // namespace

CacheApi::CacheApi(const cache::CodeCache& cache, std::string model, bool read_only, bool live_model)
    : cache_(cache), model_(std::move(model)), read_only_(read_only), live_model_(live_model) {
  try {
    tokens_ = tools::TokenText::load(cache.manifest().tokenizer);
  } catch (const Error&) {  // token ids shown as numbers
  }
  state_digits_ = cache::tokfsm_state_digits(cache.manifest());
}

CacheApi::~CacheApi() = default;

std::string CacheApi::token_name(int64_t id) const {
  return tokens_ ? json_text(tokens_->token_bytes(id)) : std::to_string(id);
}

std::pair<const cache::SiteArrays*, int64_t> CacheApi::member(const std::string& name) const {
  return cache_.member(name);  // cb::Error naming the cache's sites when unknown
}

Json CacheApi::info() const {
  const cache::CacheManifest& m = cache_.manifest();
  Json j = Json::Object{};
  j["cache"] = std::filesystem::path(cache_.dir()).filename().string();
  j["tokens"] = m.tokens;
  j["documents"] = m.documents;
  j["tokenizer"] = m.tokenizer;
  j["tokfsm_state_digits"] = state_digits_;
  Json::Array sites;
  for (const cache::SiteArrays& s : cache_.sites()) {
    Json e = s.info().to_json();
    Json::Array members;
    for (int64_t g = 0; g < s.info().groups; ++g) members.push_back(Json(s.info().member_name(g)));
    e["members"] = Json(std::move(members));
    int64_t dead = 0;
    for (int64_t c : s.counts()) dead += c == 0;
    e["dead_codes"] = dead;
    sites.push_back(std::move(e));
  }
  j["sites"] = Json(std::move(sites));
  j["metrics"] = m.metrics;
  j["model"] = live_model_;
  j["read_only"] = read_only_;
  return j;
}

Json CacheApi::search(const Params& p) const {
  std::string pattern = required_param(p, "regex");
  if (pattern.size() > cache::kMaxPatternBytes)
    throw HttpError(400, "regex longer than " + std::to_string(cache::kMaxPatternBytes) + " bytes");
  cache::SearchOptions o;
  o.site = string_param(p, "site", "");
  if (!o.site.empty()) member(o.site);
  o.top = int_param(p, "top", 8, 1, 1000);
  o.min_precision = double_param(p, "min_precision", 0.5, 0, 1);
  o.sort = cache::parse_search_sort(string_param(p, "sort", "precision"));
  o.topk_slots = int_param(p, "topk_slots", 0, 0, 1 << 20);
  std::string parity = string_param(p, "parity", "");
  if (parity == "even")
    o.parity = 0;
  else if (parity == "odd")
    o.parity = 1;
  else if (!parity.empty())
    throw HttpError(400, "parameter 'parity' must be even or odd");
  int64_t limit = int_param(p, "limit", 200, 1, kMaxSearchResults);
  cache::SearchResult r = cache::search(cache_, pattern, o);
  Json j = Json::Object{};
  j["matches"] = int64_t(r.positions.size());
  j["total"] = int64_t(r.codes.size());
  Json::Array codes;
  for (const cache::CodeMatch& m : r.codes) {
    if (int64_t(codes.size()) >= limit) break;
    codes.push_back(code_match_json(m));
  }
  j["codes"] = Json(std::move(codes));
  return j;
}

tools::CodeEffects* CacheApi::effects() {
  // Called with effects_mutex_ held.
  if (effects_tried_) return effects_.get();
  effects_tried_ = true;
  const cache::CacheManifest& m = cache_.manifest();
  const Json* file = m.model.find("file");
  const Json* sha = m.model.find("sha256");
  if (!file || !sha || !file->is_string() || !sha->is_string()) {
    why_not_ = "the cache names no model";
    return nullptr;
  }
  std::vector<std::string> candidates = {file->as_string()};
  if (!model_.empty()) candidates.push_back(tools::resolve_model_path(model_));
  for (const std::string& path : candidates) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) continue;
    try {
      if (cache::model_fingerprint(path) != sha->as_string()) continue;
      effects_graph_ = tools::load_model(path).graph;
      effects_ = std::make_unique<tools::CodeEffects>(*effects_graph_);
      return effects_.get();
    } catch (const Error& e) {
      why_not_ = e.what();
      return nullptr;
    }
  }
  why_not_ = "the cache's model " + file->as_string() + " is not there or has changed since the cache was built";
  return nullptr;
}

Json CacheApi::writes_of(const cache::SiteArrays& site, int64_t g, int64_t code, int64_t n_similar) {
  std::lock_guard<std::mutex> lock(effects_mutex_);
  Json j = Json::Object{};
  tools::CodeEffects* fx = effects();
  if (!fx) {
    j["not_available"] = why_not_;
    return j;
  }
  SiteRef ref = parse_site(site.info().member_name(g));
  if (site.info().groups == 1) ref.group = kAll;
  std::vector<tools::SimilarCode> similar;
  tools::LogitEffect effect;
  try {
    similar = fx->similar(ref, code, n_similar);
    effect = fx->logit_effect(ref, code, 10);
  } catch (const Error& e) {  // the model lacks this site: the examples are still worth showing
    j["not_available"] = e.what();
    return j;
  }
  Json::Array sim;
  for (const tools::SimilarCode& c : similar)
    sim.push_back(Json(Json::Object{{"code", Json(c.code)}, {"cosine", Json(c.cosine)}}));
  j["similar"] = Json(std::move(sim));
  if (!effect.available) {
    j["not_available"] = effect.reason;
    return j;
  }
  for (auto [key, list] : {std::pair{"promoted", &effect.promoted}, std::pair{"suppressed", &effect.suppressed}}) {
    Json::Array a;
    for (const tools::TokenLogit& t : *list)
      a.push_back(
          Json(Json::Object{{"token", Json(t.token)}, {"text", Json(token_name(t.token))}, {"logit", Json(t.logit)}}));
    j[key] = Json(std::move(a));
  }
  return j;
}

Json CacheApi::code(const Params& p) {
  auto [site, g] = member(required_param(p, "site"));
  const cache::CacheSite& info = site->info();
  int64_t code = int_param(p, "code", 0, 0, info.codes - 1);
  if (!has_param(p, "code")) throw HttpError(400, "missing parameter 'code'");
  const int64_t slots = int_param(p, "topk_slots", 1, 1, info.k);
  // The original's "minimum number of activations" filter: the first code at
  // or after the one asked for with at least that many activations (the code
  // asked for when none has).
  const int64_t min_acts = int_param(p, "min_acts", 0, 0, INT64_MAX);
  const int64_t requested = code;
  if (min_acts > 0) {
    for (int64_t c = code; c < info.codes; ++c)
      if (cache::activations_in_slots(*site, g, c, slots) >= min_acts) {
        code = c;
        break;
      }
  }
  const int64_t page = int_param(p, "page", 0, 0, INT64_MAX / kMaxExamplesPerPage);
  const int64_t per_page = int_param(p, "per_page", 20, 1, kMaxExamplesPerPage);
  const int64_t context = int_param(p, "context", 5, 0, kMaxContext);
  const int64_t show_tokens = int_param(p, "tokens", 10, 0, 100);

  std::vector<int64_t> positions = cache::code_positions(*site, g, code, slots);
  const int64_t N = cache_.num_tokens();
  Json j = Json::Object{};
  j["site"] = info.name;
  j["group"] = g;
  j["member"] = info.member_name(g);
  j["code"] = code;
  j["requested_code"] = requested;
  j["codes"] = info.codes;
  j["topk_slots"] = slots;
  j["k"] = info.k;
  j["activations"] = int64_t(positions.size());
  j["density"] = N > 0 ? double(positions.size()) / double(N) : 0.0;

  // The tokens it fires on most (ties: lower id first).
  std::map<uint32_t, std::pair<int64_t, int64_t>> per_token;  // id -> (count, first position)
  for (int64_t p2 : positions) {
    auto [it, fresh] = per_token.try_emplace(cache_.tokens()[size_t(p2)], 0, p2);
    ++it->second.first;
  }
  std::vector<std::pair<uint32_t, std::pair<int64_t, int64_t>>> tokens(per_token.begin(), per_token.end());
  std::stable_sort(tokens.begin(), tokens.end(), [](auto& a, auto& b) { return a.second.first > b.second.first; });
  if (int64_t(tokens.size()) > show_tokens) tokens.resize(size_t(show_tokens));
  Json::Array tl;
  for (auto& [id, cp] : tokens)
    tl.push_back(Json(Json::Object{{"token", Json(int64_t(id))},
                                   {"text", Json(cache::shown_token(cache_.token_text(cp.second)))},
                                   {"count", Json(cp.first)}}));
  j["top_tokens"] = Json(std::move(tl));

  auto docs = cache::by_document(cache_, positions);
  j["documents"] = int64_t(docs.size());
  j["page"] = page;
  j["per_page"] = per_page;
  Json::Array ex;
  for (int64_t i = page * per_page; i < std::min<int64_t>(int64_t(docs.size()), (page + 1) * per_page); ++i) {
    auto& [d, fired] = docs[size_t(i)];
    std::string marked = state_digits_ > 0 ? cache::render_tokfsm(cache_, d, fired, state_digits_, kSplitMarks)
                                           : cache::render_snippet(cache_, d, fired, context, kSplitMarks);
    Json e = Json::Object{};
    e["doc"] = d;
    Json::Array ps;
    for (int64_t q : fired) ps.push_back(Json(q));
    e["positions"] = Json(std::move(ps));
    e["snippet"] = json_text(unmarked(marked, cache::Highlight::plain()));
    e["parts"] = snippet_parts(marked);
    ex.push_back(std::move(e));
  }
  j["examples"] = Json(std::move(ex));

  // The histogram of its scores at its activations (10 bins), when the cache has scores.
  if (site->has_scores() && !positions.empty()) {
    std::vector<float> v;
    for (int64_t q : positions)
      for (int64_t s = 0; s < slots; ++s)
        if (site->code(q, g, s) == code) {
          float x = site->score(q, g, s);
          if (std::isfinite(x)) v.push_back(x);
          break;
        }
    if (!v.empty()) {
      auto [mn, mx] = std::minmax_element(v.begin(), v.end());
      float lo = *mn, hi = *mx;
      std::vector<int64_t> counts(10, 0);
      for (float x : v) {
        int bin = hi > lo ? int(double(x - lo) / double(hi - lo) * 10) : 0;
        ++counts[size_t(std::clamp(bin, 0, 9))];
      }
      Json::Array c;
      for (int64_t n : counts) c.push_back(Json(n));
      j["scores"] = Json(Json::Object{{"min", Json(double(lo))}, {"max", Json(double(hi))}, {"counts", Json(c)}});
    }
  }
  j["writes"] = writes_of(*site, g, code, 8);
  return j;
}

Json CacheApi::similar(const Params& p) {
  auto [site, g] = member(required_param(p, "site"));
  if (!has_param(p, "code")) throw HttpError(400, "missing parameter 'code'");
  int64_t code = int_param(p, "code", 0, 0, site->info().codes - 1);
  int64_t n = int_param(p, "n", 8, 1, 100);
  Json j = writes_of(*site, g, code, n);
  j["site"] = site->info().name;
  j["group"] = g;
  j["code"] = code;
  return j;
}

Json CacheApi::topics(const Params& p) const {
  const int64_t D = cache_.num_documents();
  if (D == 0) throw HttpError(400, "the cache has no documents");
  int64_t d = int_param(p, "doc", 0, 0, D - 1);
  double recall = double_param(p, "recall", 0.2, 0, 1);
  int64_t max_chars = int_param(p, "max_chars", 1024, 0, 102400);
  const cache::SearchSort sort = cache::parse_search_sort(string_param(p, "sort", "recall"));
  std::vector<cache::CodeMatch> codes = cache::topic_codes(cache_, d, recall);
  // "next": the next document (wrapping) with at least one topic code, looked
  // for within a bounded time.
  if (string_param(p, "next", "") == "1") {
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    bool found = false;
    for (int64_t i = 1; i <= D && std::chrono::steady_clock::now() < until; ++i) {
      int64_t e = (d + i) % D;
      codes = cache::topic_codes(cache_, e, recall);
      if (!codes.empty()) {
        d = e, found = true;
        break;
      }
    }
    if (!found) throw HttpError(404, "no document after " + std::to_string(d) + " has a topic code at this recall");
  }
  Json j = Json::Object{};
  j["doc"] = d;
  j["documents"] = D;
  j["tokens"] = cache_.doc_tokens()[size_t(d) + 1] - cache_.doc_tokens()[size_t(d)];
  std::string text = state_digits_ > 0 ? cache::render_tokfsm(cache_, d, {}, state_digits_, cache::Highlight::plain())
                                       : std::string(cache_.document_text(d));
  bool cut = int64_t(text.size()) > max_chars;
  if (cut) text = text.substr(0, size_t(max_chars)) + "...";
  j["text"] = json_text(text);
  j["truncated"] = cut;
  cache::sort_matches(codes, sort);
  Json::Array list;
  for (const auto& m : codes) list.push_back(code_match_json(m));
  j["codes"] = Json(std::move(list));
  return j;
}

namespace {
std::string demo_path(const cache::CodeCache& c) { return c.dir() + "/demo_codes.json"; }
}  // namespace

Json CacheApi::demo_codes() const {
  std::lock_guard<std::mutex> lock(demo_mutex_);
  std::error_code ec;
  Json j = std::filesystem::exists(demo_path(cache_), ec) ? json_read_file(demo_path(cache_))
                                                          : Json(Json::Object{{"codes", Json(Json::Array{})}});
  // Activation counts looked up live, as the original's table does.
  if (const Json* codes = j.find("codes"); codes && codes->is_array())
    for (Json& e : j["codes"].as_array()) {
      try {
        auto [site, g] = member(e.at("member").as_string());
        int64_t c = e.at("code").as_int();
        if (c >= 0 && c < site->info().codes) e["activations"] = site->count(g, c);
      } catch (const Error&) {  // an entry of another cache: shown as it is
      }
    }
  j["read_only"] = read_only_;
  return j;
}

Json CacheApi::save_demo_code(const Json& body) {
  if (read_only_) throw HttpError(403, "the server is read-only (--read-only)");
  if (!body.is_object()) throw HttpError(400, "expected a JSON object");
  const Json* site_name = body.find("site");
  const Json* code_j = body.find("code");
  if (!site_name || !site_name->is_string() || !code_j || !code_j->is_integer())
    throw HttpError(400, "expected {\"site\": \"layer0.mlp[g]\", \"code\": N, ...}");
  auto [site, g] = member(site_name->as_string());
  int64_t code = code_j->as_int();
  if (code < 0 || code >= site->info().codes)
    throw HttpError(400, "code " + std::to_string(code) + " is out of range for " + site->info().member_name(g) + " (" +
                             std::to_string(site->info().codes) + " codes)");
  Json entry = Json::Object{};
  entry["member"] = site->info().member_name(g);
  entry["site"] = site->info().name;
  entry["group"] = g;
  entry["code"] = code;
  for (const char* key : {"description", "regex"})
    if (const Json* v = body.find(key); v && v->is_string()) {
      if (v->as_string().size() > 4096) throw HttpError(400, std::string(key) + " longer than 4096 bytes");
      entry[key] = v->as_string();
    }
  for (const char* key : {"precision", "recall"})
    if (const Json* v = body.find(key); v && v->is_number()) entry[key] = v->as_double();
  const Json* remove = body.find("remove");
  bool removing = remove && remove->is_bool() && remove->as_bool();

  // One writer at a time; the file is replaced atomically (json_write_file).
  std::lock_guard<std::mutex> lock(demo_mutex_);
  std::error_code ec;
  Json file = std::filesystem::exists(demo_path(cache_), ec) ? json_read_file(demo_path(cache_))
                                                             : Json(Json::Object{{"codes", Json(Json::Array{})}});
  if (!file.is_object() || !file.find("codes") || !file.at("codes").is_array())
    throw HttpError(500, "demo_codes.json in the cache is not {\"codes\": [...]}");
  Json::Array& codes = file["codes"].as_array();
  auto same = [&](const Json& e) {
    const Json* m = e.find("member");
    const Json* c = e.find("code");
    return m && c && *m == entry.at("member") && *c == entry.at("code");
  };
  codes.erase(std::remove_if(codes.begin(), codes.end(), same), codes.end());
  if (!removing) codes.push_back(entry);
  json_write_file(demo_path(cache_), file);
  return Json(Json::Object{{"saved", Json(!removing)}, {"count", Json(int64_t(codes.size()))}});
}

}  // namespace cb::serve
