// The decoding loop over a Generator (tools/generate.h) that `codebook
// generate` and the Python package's Model.generate share: several prompts,
// those of one length decoded together as one batch, each with its own
// sampler, until --max-new tokens, the model's context, or a stop condition
// (an end-of-sequence id, a token sequence, a text). docs/generation.md.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tools/generate.h"
#include "tools/text_io.h"

namespace cb::tools {

// When a continuation ends before --max-new tokens.
struct StopConditions {
  // Stop once the new tokens end with one of these (an EOS id: one token).
  std::vector<std::vector<int64_t>> sequences;
  // Stop once the new tokens' text (their bytes) contains one of these.
  std::vector<std::string> texts;
  // Adds one --stop-at value: a comma list of token ids is a sequence,
  // "text:TEXT" and anything else is text (which needs a tokenizer).
  void add(const std::string& value);
  bool empty() const { return sequences.empty() && texts.empty(); }
};

// The end-of-sequence ids the model records: eos_token_id (one id or a list)
// of the Hugging Face config import-hf and training keep in its metadata
// ("hf_config"); none when it records none.
std::vector<int64_t> model_eos_ids(const std::map<std::string, std::string>& metadata);

struct GenerationRequest {
  std::vector<std::vector<int64_t>> prompts;
  int64_t max_new = 32;
  // Prompt i is sampled with seed + i: the same as generating it alone with that seed.
  SamplingOptions sampling;
  StopConditions stop;
  // Turns token ids into text for StopConditions::texts (required with them).
  const TokenText* text = nullptr;
  // Stop every prompt ("time") once this passes (the code browser's bound on
  // a request's model time); none by default.
  std::optional<std::chrono::steady_clock::time_point> deadline;
};

struct Continuation {
  std::vector<int64_t> ids;  // the new tokens, a stop sequence's included
  // Why it ended: "max-new", "context", "time" (the deadline), or the condition met ("stop-at 50256",
  // "stop-at text \"\\n\"").
  std::string stop;
};

struct GenerationStats {
  int64_t batches = 0;   // prefills (one per distinct prompt length)
  int64_t steps = 0;     // decode calls
  double prefill_s = 0;  // their time
  double decode_s = 0;
  int64_t new_tokens = 0;  // over every prompt
};

// Continues every prompt. Prompts of one length run as one batch [B, ...]
// (lengths in order of first appearance); `on_token(prompt index, token)`
// is called as each token is chosen. Continuations come back in the
// prompts' order. Throws cb::Error for an empty prompt or one longer than
// the context.
std::vector<Continuation> generate_continuations(Generator& gen, const GenerationRequest& request,
                                                 const std::function<void(size_t, int64_t)>& on_token = {},
                                                 GenerationStats* stats = nullptr);

}  // namespace cb::tools
