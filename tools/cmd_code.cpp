// codebook code CACHE SITE[g] CODE: one code of a code cache -- how often it
// fires, on which tokens, its examples in context, its score histogram, and
// what it writes: its direct logit effect and its most similar codes
// (tools/cache/code_examples.h, tools/code_effects.h; docs/cache.md "A code's
// examples").
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>

#include "support/error.h"
#include "support/json.h"
#include "support/utf8.h"
#include "tools/cache/cache_build.h"
#include "tools/cache/code_cache.h"
#include "tools/cache/code_examples.h"
#include "tools/code_effects.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/text_io.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

// What the code writes (tools/code_effects.h): its direct effect on the
// next-token logits and the codes most like it, read off the weights of the
// cache's model. Skipped, with a note, when the model file is gone or is not
// the one the cache was built with.
void show_what_the_code_writes(const cache::CodeCache& cache, const cache::SiteArrays& site, int64_t g, int64_t code,
                               std::ostream* text, Json* json) {
  const cache::CacheManifest& m = cache.manifest();
  std::string file = m.model.at("file").as_string();
  std::string why_not;
  std::error_code ec;
  if (!std::filesystem::exists(file, ec))
    why_not = "the cache's model " + file + " is not there";
  else if (cache::model_fingerprint(file) != m.model.at("sha256").as_string())
    why_not = file + " has changed since the cache was built";
  LogitEffect effect;
  std::vector<SimilarCode> similar;
  if (why_not.empty()) {
    try {
      LoadedModel model = load_model(file);
      CodeEffects effects(*model.graph);
      SiteRef ref = parse_site(site.info().member_name(g));
      if (site.info().groups == 1) ref.group = kAll;
      effect = effects.logit_effect(ref, code, 8);
      similar = effects.similar(ref, code, 5);
      if (!effect.available) why_not = effect.reason;
    } catch (const Error& e) {  // the examples are still worth showing
      why_not = e.what();
    }
  }
  std::optional<TokenText> tokens;
  try {
    tokens = TokenText::load(m.tokenizer);
  } catch (const Error&) {  // shown as ids
  }
  auto token_name = [&](int64_t id) { return tokens ? tokens->shown(id) : std::to_string(id); };
  if (json) {
    Json j = Json::Object{};
    if (!why_not.empty()) j["not_available"] = why_not;
    for (auto [key, list] : {std::pair{"promoted", &effect.promoted}, std::pair{"suppressed", &effect.suppressed}}) {
      Json::Array a;
      for (const TokenLogit& t : *list)
        a.push_back(Json(Json::Object{{"token", Json(t.token)}, {"logit", Json(t.logit)}}));
      if (effect.available) j[key] = Json(std::move(a));
    }
    Json::Array sim;
    for (const SimilarCode& c : similar)
      sim.push_back(Json(Json::Object{{"code", Json(c.code)}, {"cosine", Json(c.cosine)}}));
    if (!similar.empty()) j["similar"] = Json(std::move(sim));
    (*json)["writes"] = j;
    return;
  }
  if (!similar.empty()) {
    *text << "most similar codes (cosine):";
    for (const SimilarCode& c : similar) *text << "  " << c.code << " (" << std::setprecision(3) << c.cosine << ")";
    *text << "\n";
  }
  if (!effect.available) {
    *text << "what it writes: not shown (" << why_not << ")\n";
    return;
  }
  *text << "what it writes (direct effect on the logits, through the final LayerNorm's scale and the unembedding):\n";
  for (auto [label, list] :
       {std::pair{"  promotes:  ", &effect.promoted}, std::pair{"  suppresses:", &effect.suppressed}}) {
    *text << label;
    for (const TokenLogit& t : *list)
      *text << " " << token_name(t.token) << " " << std::showpos << std::setprecision(3) << t.logit << std::noshowpos;
    *text << "\n";
  }
}

struct Histogram {
  float lo = 0, hi = 0;
  std::vector<int64_t> counts;
};

// The code's scores at its activations (the slot it is in), in 10 bins.
Histogram score_histogram(const cache::SiteArrays& s, int64_t g, int64_t code, const std::vector<int64_t>& positions,
                          int64_t slots) {
  std::vector<float> v;
  for (int64_t p : positions)
    for (int64_t slot = 0; slot < slots; ++slot)
      if (s.code(p, g, slot) == code) {
        float x = s.score(p, g, slot);
        if (std::isfinite(x)) v.push_back(x);
        break;
      }
  Histogram h;
  h.counts.assign(10, 0);
  if (v.empty()) return h;
  auto [mn, mx] = std::minmax_element(v.begin(), v.end());
  h.lo = *mn, h.hi = *mx;
  for (float x : v) {
    int bin = h.hi > h.lo ? int(double(x - h.lo) / double(h.hi - h.lo) * 10) : 0;
    ++h.counts[size_t(std::clamp(bin, 0, 9))];
  }
  return h;
}

// Bytes as a JSON-safe string (invalid UTF-8 replaced).
std::string json_text(std::string_view s) { return utf8_replace_invalid(s); }

}  // namespace

int cmd_code(int argc, char** argv) {
  po::options_description opts("usage: codebook code CACHE SITE[g] CODE [options]\n\noptions");
  opts.add_options()("context", po::value<int64_t>()->default_value(5)->notifier(must_be_non_negative("--context")),
                     "tokens shown each side of a firing token")(
      "max", po::value<int64_t>()->default_value(100)->notifier(must_be_at_least<int64_t>(-1, "--max")),
      "example documents shown (-1: all)")(
      "topk-slots", po::value<int64_t>()->default_value(1)->notifier(must_be_positive("--topk-slots")),
      "count the code only in its first k slots (default 1: where it is the best match)")(
      "tokens", po::value<int64_t>()->default_value(10)->notifier(must_be_non_negative("--tokens")),
      "most frequent tokens shown")("json", "print one JSON object");
  po::variables_map vm;
  if (!parse_command_line_list(argc, argv, opts, "args", "CACHE SITE[g] CODE", vm,
                               "\nWhere one code fires in a code cache: its activation count and density, the\n"
                               "tokens it fires on most, and one line per document 'DOC: snippet' with the\n"
                               "firing tokens marked ([[token]], or in colour on a terminal). A TokFSM cache\n"
                               "shows whole documents as states joined by '-'.\n"))
    return 0;
  std::vector<std::string> args =
      vm.count("args") ? vm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
  if (args.size() != 3)
    throw po::error("expected CACHE SITE[g] CODE (got " + std::to_string(args.size()) + " arguments)");
  int64_t context = vm["context"].as<int64_t>(), max = vm["max"].as<int64_t>();
  int64_t topk = vm["topk-slots"].as<int64_t>(), show_tokens = vm["tokens"].as<int64_t>();
  int64_t code = 0;
  try {
    size_t used = 0;
    code = std::stoll(args[2], &used);
    CB_CHECK(used == args[2].size(), "");
  } catch (const std::exception&) {
    CB_FAIL("CODE '" << args[2] << "' is not a number");
  }
  bool json = vm.count("json") > 0;

  cache::CodeCache c = cache::CodeCache::open(args[0]);
  auto [site, g] = c.member(args[1]);
  const int64_t slots = std::min(topk, site->info().k);
  std::vector<int64_t> positions = cache::code_positions(*site, g, code, slots);
  const int64_t N = c.num_tokens();
  double density = N > 0 ? double(positions.size()) / double(N) : 0.0;

  // The tokens it fires on most (by token id; ties: lower id first).
  std::map<uint32_t, int64_t> per_token;
  for (int64_t p : positions) ++per_token[c.tokens()[size_t(p)]];
  std::vector<std::pair<uint32_t, int64_t>> tokens(per_token.begin(), per_token.end());
  std::stable_sort(tokens.begin(), tokens.end(), [](auto& a, auto& b) { return a.second > b.second; });
  if (int64_t(tokens.size()) > show_tokens) tokens.resize(size_t(show_tokens));
  // A token's text: that of its first firing occurrence.
  auto text_of = [&](uint32_t id) -> std::string_view {
    for (int64_t p : positions)
      if (c.tokens()[size_t(p)] == id) return c.token_text(p);
    return {};
  };

  auto docs = cache::by_document(c, positions, max);
  const int64_t state_digits = cache::tokfsm_state_digits(c.manifest());
  const cache::Highlight h = !json && isatty(1) ? cache::Highlight::terminal() : cache::Highlight::plain();
  auto snippet = [&](int64_t d, const std::vector<int64_t>& fired, const cache::Highlight& hl) {
    return state_digits > 0 ? cache::render_tokfsm(c, d, fired, state_digits, hl)
                            : cache::render_snippet(c, d, fired, context, hl);
  };
  bool scores = site->has_scores() && !positions.empty();
  cache::SiteArrays const& s = *site;

  if (json) {
    Json j = Json::Object{};
    j["site"] = s.info().name;
    j["group"] = g;
    j["code"] = code;
    j["topk_slots"] = slots;
    j["activations"] = int64_t(positions.size());
    j["density"] = density;
    Json::Array tl;
    for (auto& [id, n] : tokens) {
      Json t = Json::Object{};
      t["token"] = int64_t(id);
      t["text"] = json_text(text_of(id));
      t["count"] = n;
      tl.push_back(std::move(t));
    }
    j["top_tokens"] = Json(std::move(tl));
    Json::Array ex;
    for (auto& [d, fired] : docs) {
      Json e = Json::Object{};
      e["doc"] = d;
      Json::Array ps;
      for (int64_t p : fired) ps.push_back(Json(p));
      e["positions"] = Json(std::move(ps));
      e["snippet"] = json_text(snippet(d, fired, cache::Highlight::plain()));
      ex.push_back(std::move(e));
    }
    j["examples"] = Json(std::move(ex));
    if (scores) {
      Histogram hist = score_histogram(s, g, code, positions, slots);
      j["scores"]["min"] = double(hist.lo);
      j["scores"]["max"] = double(hist.hi);
      Json::Array counts;
      for (int64_t n : hist.counts) counts.push_back(Json(n));
      j["scores"]["counts"] = Json(std::move(counts));
    }
    show_what_the_code_writes(c, s, g, code, nullptr, &j);
    std::cout << j.dump() << "\n";
    return 0;
  }

  std::cout << s.info().member_name(g) << " code " << code << ": " << positions.size() << " activations";
  if (slots < s.info().k) std::cout << " in the first " << slots << " of " << s.info().k << " slots";
  std::cout << std::setprecision(4) << ", density " << density * 100 << "% of " << N << " tokens\n";
  if (!tokens.empty()) {
    std::cout << "fires most on:";
    for (auto& [id, n] : tokens) std::cout << "  " << tools::escape_bytes(std::string(text_of(id))) << " " << n;
    std::cout << "\n";
  }
  if (scores) {
    Histogram hist = score_histogram(s, g, code, positions, slots);
    int64_t most = *std::max_element(hist.counts.begin(), hist.counts.end());
    std::cout << "scores (" << hist.counts.size() << " bins):\n";
    for (size_t b = 0; b < hist.counts.size(); ++b) {
      double lo = hist.lo + (hist.hi - hist.lo) * double(b) / 10,
             hi = hist.lo + (hist.hi - hist.lo) * double(b + 1) / 10;
      int bar = most > 0 ? int(std::lround(40.0 * double(hist.counts[b]) / double(most))) : 0;
      std::cout << "  " << std::fixed << std::setprecision(3) << std::setw(9) << lo << " .. " << std::setw(9) << hi
                << " " << std::setw(8) << hist.counts[b] << " " << std::string(size_t(bar), '#') << "\n";
    }
    std::cout.unsetf(std::ios::fixed);
  }
  show_what_the_code_writes(c, s, g, code, &std::cout, nullptr);
  std::cout << "examples (" << docs.size() << " of " << cache::by_document(c, positions).size() << " documents):\n";
  const bool terminal = h.open != cache::Highlight::plain().open;
  for (auto& [d, fired] : docs)  // the document's number in green on a terminal, as the original
    std::cout << (terminal ? "\x1b[32m" : "") << d << (terminal ? "\x1b[0m" : "") << ": " << snippet(d, fired, h)
              << "\n";
  return 0;
}

}  // namespace cb::tools
