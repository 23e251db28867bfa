#include "tools/serve/live_model.h"

#include <algorithm>
#include <chrono>
#include <sstream>

#include "backends/backend.h"
#include "passes/inference_pipeline.h"
#include "passes/kv_cache.h"
#include "support/error.h"
#include "support/utf8.h"
#include "tools/forced_codes.h"
#include "tools/generation.h"
#include "tools/intervention_checks.h"
#include "tools/model_io.h"
#include "tools/next_token.h"
#include "tools/serve/http_error.h"

namespace cb::serve {

struct LiveModel::Compiled {
  std::shared_ptr<Graph> graph;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Executable> exe;
  std::vector<std::string> names;
  std::vector<std::string> sites;  // tapped, in graph order

  std::vector<Tensor> run(const std::vector<int64_t>& tokens) {
    return exe->run(tools::lm_inputs(*graph, tokens, 1, int64_t(tokens.size())));
  }
  const Tensor& output(const std::vector<Tensor>& outs, const std::string& name) const {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == name) return outs[i];
    CB_FAIL("the model has no output " << name);
  }
  const Tensor& logits(const std::vector<Tensor>& outs) const {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == "logits") return outs[i];
    CB_CHECK(!outs.empty() && outs[0].rank() == 3, "the model has no logits output");
    return outs[0];
  }
};

class LiveModel::Turn {
 public:
  explicit Turn(LiveModel& m) : m_(m) {
    if (m_.in_line_.fetch_add(1) > m_.options_.max_queue) {
      m_.in_line_.fetch_sub(1);
      throw HttpError(503, "busy: the model is running other requests; try again shortly");
    }
    lock_ = std::unique_lock<std::mutex>(m_.model_mutex_);
  }
  ~Turn() {
    lock_.unlock();
    m_.in_line_.fetch_sub(1);
  }

 private:
  LiveModel& m_;
  std::unique_lock<std::mutex> lock_;
};

namespace {

std::unique_ptr<Executable> compile_graph(std::shared_ptr<Graph> g, const Backend& backend, int threads) {
  CompileOptions copts;
  copts.num_threads = threads;
  return Executable::compile(inference_graph(g), backend, copts);
}

// The codes of every tapped site: {site: [[member codes] per member] per position}.
Json codes_json(const LiveModel& m, const std::vector<std::string>& sites, const std::vector<std::string>& names,
                const std::vector<Tensor>& outs) {
  Json j = Json::Object{};
  for (const std::string& site : sites) {
    const Tensor* ids = nullptr;
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i] == site + ".ids") ids = &outs[i];
    if (!ids) continue;
    int64_t T = ids->dim(1), G = ids->dim(2), k = ids->dim(3);
    Json::Array per_pos;
    for (int64_t t = 0; t < T; ++t) {
      Json::Array members;
      for (int64_t g = 0; g < G; ++g) {
        Json::Array codes;
        for (int64_t s = 0; s < k; ++s) codes.push_back(Json(ids->data<int64_t>()[(t * G + g) * k + s]));
        members.push_back(Json(std::move(codes)));
      }
      per_pos.push_back(Json(std::move(members)));
    }
    j[site] = Json(std::move(per_pos));
  }
  return j;
}

}  // namespace

LiveModel::LiveModel(const std::string& model_arg, const std::string& fallback_tokenizer, LiveModelOptions options)
    : options_(options) {
  model_path_ = tools::resolve_model_path(model_arg);
  clean_ = std::make_unique<Compiled>();
  clean_->graph = tools::load_model(model_path_).graph;
  auto meta = clean_->graph->metadata.find(tools::kTokenizerMetadataKey);
  std::optional<std::string> spec =
      tools::recorded_tokenizer(model_arg, meta == clean_->graph->metadata.end() ? "" : meta->second);
  text_ = tools::TokenText::load(spec ? *spec : fallback_tokenizer);
  context_ = tools::context_length(*clean_->graph);
  vocab_ = tools::vocab_size(*clean_->graph);
  num_layers_ = num_layers_of(*clean_->graph);
  clean_->sites = tap_all_codes(*clean_->graph, false);
  CB_CHECK(!clean_->sites.empty(), model_arg << " has no codebooks");
  clean_->backend = make_backend("cpu");
  clean_->exe = compile_graph(clean_->graph, *clean_->backend, options_.threads);
  clean_->names = clean_->exe->output_names();
  sites_ = clean_->sites;
}

LiveModel::~LiveModel() = default;

std::vector<int64_t> LiveModel::prompt_tokens(const Json& body) const {
  if (!body.is_object()) throw HttpError(400, "expected a JSON object");
  std::vector<int64_t> tokens;
  if (const Json* p = body.find("prompt")) {
    if (!p->is_string()) throw HttpError(400, "'prompt' must be a string");
    if (p->as_string().size() > size_t(options_.max_prompt_tokens) * 64) throw HttpError(400, "'prompt' is too long");
    tokens = text_->encode(p->as_string());
    // A text prompt starts at a document start, as the cache's documents do.
    int64_t bos = text_->document_start_id();
    if (!text_->is_tokfsm() && bos >= 0 && bos < vocab_) tokens.insert(tokens.begin(), bos);
  } else if (const Json* t = body.find("tokens")) {
    if (!t->is_array()) throw HttpError(400, "'tokens' must be an array of token ids");
    for (const Json& v : t->as_array()) {
      if (!v.is_integer()) throw HttpError(400, "'tokens' must be an array of token ids");
      tokens.push_back(v.as_int());
    }
  } else {
    throw HttpError(400, "give \"prompt\": TEXT or \"tokens\": [ids]");
  }
  if (tokens.empty()) throw HttpError(400, "the prompt gives no tokens");
  int64_t limit = context_ > 0 ? std::min(context_, options_.max_prompt_tokens) : options_.max_prompt_tokens;
  if (int64_t(tokens.size()) > limit)
    throw HttpError(400, "the prompt has " + std::to_string(tokens.size()) + " tokens; at most " +
                             std::to_string(limit) + " are allowed");
  return tokens;
}

InterventionSet LiveModel::interventions(const Json& body) const {
  InterventionSet iv;
  int64_t n = 0;
  for (auto [key, kind] :
       {std::pair{"ablate", InterventionKind::ablate}, std::pair{"force", InterventionKind::force}}) {
    const Json* list = body.find(key);
    if (!list) continue;
    if (!list->is_array()) throw HttpError(400, std::string("'") + key + "' must be an array of strings");
    for (const Json& s : list->as_array()) {
      if (!s.is_string()) throw HttpError(400, std::string("'") + key + "' must be an array of strings");
      if (s.as_string().empty()) continue;
      if (++n > options_.max_interventions) throw HttpError(400, "too many interventions");
      Intervention it = parse_intervention(kind, s.as_string());
      it.site = parse_site(it.site.name(), num_layers_);  // resolves negative layers, range-checks
      iv.items.push_back(std::move(it));
    }
  }
  if (const Json* mode = body.find("ablate_mode")) {
    if (!mode->is_string() || (mode->as_string() != "skip" && mode->as_string() != "zero"))
      throw HttpError(400, "'ablate_mode' must be \"skip\" or \"zero\"");
    iv.zero_ablation = mode->as_string() == "zero";
  }
  return iv;
}

std::shared_ptr<Graph> LiveModel::intervened_graph(const InterventionSet& iv) const {
  std::shared_ptr<Graph> g = tools::load_model(model_path_).graph;
  if (iv.empty()) return g;
  InterventionSet resolved = iv;
  tools::resolve_state_of(resolved, model_path_, "cpu", options_.threads);
  apply_interventions(*g, resolved);
  return g;
}

LiveModel::Compiled& LiveModel::compiled(const InterventionSet& iv, const std::string& key) {
  if (iv.empty()) return *clean_;
  if (last_ && last_key_ == key) return *last_;
  auto c = std::make_unique<Compiled>();
  c->graph = intervened_graph(iv);
  c->sites = tap_all_codes(*c->graph, false);
  c->backend = make_backend("cpu");
  c->exe = compile_graph(c->graph, *c->backend, options_.threads);
  c->names = c->exe->output_names();
  last_ = std::move(c);
  last_key_ = key;
  return *last_;
}

tools::Generator& LiveModel::generator(const InterventionSet& iv, const std::string& key) {
  if (iv.empty() && clean_generator_) return *clean_generator_;
  if (!iv.empty() && last_generator_ && last_generator_key_ == key) return *last_generator_;
  std::shared_ptr<Graph> g = intervened_graph(iv);
  tools::GeneratorOptions o;
  o.threads = options_.threads;
  // A rotary model has no position table to say its context: the longest
  // request (prompt + new tokens) bounds the mask tables instead.
  o.context = position_table_rows(*g) > 0 ? -1 : options_.max_prompt_tokens + options_.max_new_tokens;
  auto gen = std::make_unique<tools::Generator>(g, o);
  if (iv.empty()) return *(clean_generator_ = std::move(gen));
  last_generator_key_ = key;
  return *(last_generator_ = std::move(gen));
}

Json LiveModel::tokens_json(const std::vector<int64_t>& tokens) const {
  Json::Array a;
  for (int64_t t : tokens)
    a.push_back(Json(Json::Object{{"id", Json(t)}, {"text", Json(utf8_replace_invalid(text_->token_bytes(t)))}}));
  return Json(std::move(a));
}

Json LiveModel::top_json(const std::vector<double>& probs, int n) const {
  Json::Array a;
  for (int64_t t : tools::top_tokens(probs, n))
    a.push_back(Json(Json::Object{{"token", Json(t)},
                                  {"text", Json(utf8_replace_invalid(text_->token_bytes(t)))},
                                  {"p", Json(probs[size_t(t)])}}));
  return Json(std::move(a));
}

Json LiveModel::run(const Json& body) {
  std::vector<int64_t> tokens = prompt_tokens(body);
  Turn turn(*this);
  std::vector<Tensor> outs = clean_->run(tokens);
  Json j = Json::Object{};
  j["tokens"] = tokens_json(tokens);
  Json::Array sites;
  for (const std::string& s : clean_->sites) sites.push_back(Json(s));
  j["sites"] = Json(std::move(sites));
  j["codes"] = codes_json(*this, clean_->sites, clean_->names, outs);
  j["next"] = top_json(tools::next_token_probs(clean_->logits(outs), 0), 10);
  return j;
}

namespace {
std::string key_of(const Json& body) {
  Json k = Json::Object{};
  for (const char* f : {"ablate", "force", "ablate_mode"})
    if (const Json* v = body.find(f)) k[f] = *v;
  return k.dump();
}
}  // namespace

Json LiveModel::intervene(const Json& body) {
  std::vector<int64_t> tokens = prompt_tokens(body);
  InterventionSet iv = interventions(body);
  if (iv.items.empty()) throw HttpError(400, "give at least one intervention in \"ablate\" or \"force\"");
  tools::check_intervention_positions(iv, int64_t(tokens.size()));  // past the sequence: an error, as in `run`
  Turn turn(*this);
  std::vector<Tensor> clean_outs = clean_->run(tokens);
  Compiled& c = compiled(iv, key_of(body));
  std::vector<Tensor> outs = c.run(tokens);
  const Tensor& clean_logits = clean_->logits(clean_outs);
  const Tensor& logits = c.logits(outs);
  std::vector<double> p = tools::next_token_probs(clean_logits, 0), q = tools::next_token_probs(logits, 0);
  Json j = Json::Object{};
  j["tokens"] = tokens_json(tokens);
  j["clean_next"] = top_json(p, 10);
  j["next"] = top_json(q, 10);
  j["jsd"] = tools::jensen_shannon(p, q);
  j["jsd_unit"] = "bits";
  Json::Array per;
  for (double v : tools::jensen_shannon_per_position(clean_logits, logits)) per.push_back(Json(v));
  j["jsd_per_position"] = Json(std::move(per));
  j["clean_codes"] = codes_json(*this, clean_->sites, clean_->names, clean_outs);
  j["codes"] = codes_json(*this, c.sites, c.names, outs);
  // The CLI's warnings for interventions that cannot act (a code that never fires there, ...).
  std::map<std::string, const Tensor*> clean_by_name;
  for (size_t i = 0; i < clean_->names.size(); ++i) clean_by_name[clean_->names[i]] = &clean_outs[i];
  std::ostringstream warnings;
  tools::warn_ineffective_interventions(iv, num_layers_, int64_t(tokens.size()), clean_by_name, warnings);
  Json::Array w;
  std::istringstream lines(warnings.str());
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) w.push_back(Json(utf8_replace_invalid(line)));
  j["warnings"] = Json(std::move(w));
  return j;
}

Json LiveModel::generate(const Json& body) {
  std::vector<int64_t> tokens = prompt_tokens(body);
  InterventionSet iv = interventions(body);
  int64_t n = 16;
  if (const Json* v = body.find("max_tokens")) {
    if (!v->is_integer() || v->as_int() < 1 || v->as_int() > options_.max_new_tokens)
      throw HttpError(400, "'max_tokens' must be an integer in [1, " + std::to_string(options_.max_new_tokens) + "]");
    n = v->as_int();
  }
  tools::SamplingOptions sampling;
  if (const Json* v = body.find("temperature")) {
    if (!v->is_number() || v->as_double() < 0 || v->as_double() > 10)
      throw HttpError(400, "'temperature' must be a number in [0, 10] (0: greedy)");
    sampling.temperature = v->as_double();
  }
  if (const Json* v = body.find("top_k")) {
    if (!v->is_integer() || v->as_int() < 0) throw HttpError(400, "'top_k' must be a non-negative integer (0: all)");
    sampling.top_k = v->as_int();
  }
  if (const Json* v = body.find("top_p")) {
    if (!v->is_number() || !(v->as_double() > 0 && v->as_double() <= 1))
      throw HttpError(400, "'top_p' must be a number in (0, 1]");
    sampling.top_p = v->as_double();
  }
  if (const Json* v = body.find("seed")) {
    if (!v->is_integer() || v->as_int() < 0) throw HttpError(400, "'seed' must be a non-negative integer");
    sampling.seed = uint64_t(v->as_int());
  }
  // The sequence (prompt + new tokens) stays within the context, as in `codebook generate`.
  bool context_ends = false;
  if (context_ > 0 && int64_t(tokens.size()) + n > context_) {
    n = std::max<int64_t>(0, context_ - int64_t(tokens.size()));
    context_ends = true;
  }
  // Absolute positions may name generated tokens: past prompt + new tokens they change nothing.
  tools::check_intervention_positions(iv, int64_t(tokens.size()) + n);
  Turn turn(*this);
  using Clock = std::chrono::steady_clock;
  tools::GenerationRequest request;
  request.prompts = {tokens};
  request.max_new = n;
  request.sampling = sampling;
  request.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(options_.max_generate_seconds));
  std::string stopped = context_ends ? "context" : "max_tokens";
  // `codebook generate`'s decoding loop (tools/generation.h), without stop conditions.
  auto continue_with = [&](tools::Generator& gen) {
    if (n == 0) return std::vector<int64_t>{};
    tools::Continuation c = tools::generate_continuations(gen, request).front();
    if (c.stop == "time") stopped = "time";
    return c.ids;
  };
  Json j = Json::Object{};
  j["tokens"] = tokens_json(tokens);
  j["continuation"] = tokens_json(continue_with(generator(iv, key_of(body))));
  if (!iv.items.empty()) j["clean_continuation"] = tokens_json(continue_with(generator({}, "")));
  j["stopped"] = stopped;
  return j;
}

}  // namespace cb::serve
