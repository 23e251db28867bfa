// The live model of the code browser (docs/serve.md "Live model"): run a
// prompt and see the codes at every site and the next-token distribution;
// ablate or force codes (the CLI's --ablate/--force syntax) and compare the
// distributions (Jensen-Shannon divergence in bits); generate a continuation
// with the interventions active in every step: the Generator and Sampler of
// `codebook generate` (tools/generate.h: KV cache, interventions at absolute
// positions), so the same request gives the same tokens as the command.
//
// The model runs one request at a time: a request waits its turn behind at
// most `max_queue` others, and one arriving past that is answered 503 "busy".
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "passes/interventions.h"
#include "runtime/executable.h"
#include "support/json.h"
#include "tools/generate.h"
#include "tools/text_io.h"

namespace cb::serve {

struct LiveModelOptions {
  int max_queue = 4;                 // requests waiting for the model beyond the one running
  int64_t max_prompt_tokens = 1024;  // also capped by the model's learned context
  int64_t max_new_tokens = 64;       // generate
  int64_t max_interventions = 64;
  double max_generate_seconds = 30;  // model time of one generate request (both continuations)
  int threads = 0;                   // 0: all cores
};

class LiveModel {
 public:
  // `model_arg`: a model file or training run folder; `fallback_tokenizer`:
  // used when the model records none (the cache's). Throws cb::Error when the
  // model cannot be loaded or has no codebooks.
  LiveModel(const std::string& model_arg, const std::string& fallback_tokenizer, LiveModelOptions options = {});
  ~LiveModel();

  // {"prompt": TEXT} or {"tokens": [ids]} -> tokens, the codes at every site, next-token top 10.
  Json run(const Json& body);
  // ... plus "ablate": [SPEC...], "force": [SPEC...], "ablate_mode": "skip"|"zero" ->
  // both distributions, the codes with interventions, JSD in bits.
  Json intervene(const Json& body);
  // ... plus "max_tokens": N (default 16), "temperature" (0: greedy), "top_k",
  // "top_p", "seed" -> the continuation with the interventions, and without
  // them when any are given; "stopped": why it ended (max_tokens, context, time).
  Json generate(const Json& body);

  const std::vector<std::string>& sites() const { return sites_; }

 private:
  struct Compiled;
  // Holds the model for one request; throws HttpError 503 past the queue.
  class Turn;
  std::vector<int64_t> prompt_tokens(const Json& body) const;
  InterventionSet interventions(const Json& body) const;
  // The compiled model with `iv` (all codes tapped): the clean one, or the
  // last intervened one when `iv` is the same again (generate reuses it).
  Compiled& compiled(const InterventionSet& iv, const std::string& key);
  // The model graph with `iv` applied (state-of forces resolved).
  std::shared_ptr<Graph> intervened_graph(const InterventionSet& iv) const;
  // The KV-cache generator of the model with `iv`: the clean one, or the
  // last intervened one when `iv` is the same again.
  tools::Generator& generator(const InterventionSet& iv, const std::string& key);
  Json tokens_json(const std::vector<int64_t>& tokens) const;
  Json top_json(const std::vector<double>& probs, int n) const;

  std::string model_path_;
  std::optional<tools::TokenText> text_;
  LiveModelOptions options_;
  int64_t context_ = -1, vocab_ = -1, num_layers_ = 0;
  std::vector<std::string> sites_;
  std::unique_ptr<Compiled> clean_, last_;
  std::string last_key_;
  std::unique_ptr<tools::Generator> clean_generator_, last_generator_;
  std::string last_generator_key_;
  std::mutex model_mutex_;
  std::atomic<int> in_line_{0};
};

}  // namespace cb::serve
