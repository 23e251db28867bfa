// The TokFSM metrics of a model (docs/original.md#tokfsm-sampling-and-metrics):
// transitions of sequences the model samples from BOS, and first-transition
// accuracy from its next-state distribution. The model is run as a plain
// next-token predictor through the runtime (any compiled model: codebooks and
// interventions included). Sampling decodes token by token with a KV cache
// (tools/generate.h): all sequences as one batch, each step runs one new
// token per sequence instead of the whole prefix.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "runtime/executable.h"
#include "train/tokfsm.h"

namespace cb {

class LanguageModel {
 public:
  LanguageModel(std::shared_ptr<const Graph> model, const Backend& backend, int num_threads);
  // Next-token probabilities after each prefix (all of one length).
  std::vector<std::vector<double>> next_token_probs(const std::vector<std::vector<int64_t>>& prefixes);
  // `count` sequences of `length` tokens: `prompt`, then tokens sampled at
  // temperature 1 from the model, one Rng stream per sequence from `seed`
  // (the same tokens as re-running each prefix, up to float rounding).
  std::vector<std::vector<int64_t>> sample(int64_t count, int64_t length, const std::vector<int64_t>& prompt,
                                           uint64_t seed);
  Executable& executable() { return *exe_; }

 private:
  std::unique_ptr<Executable> exe_;
  std::shared_ptr<const Graph> graph_;
  std::string backend_;
  int num_threads_ = 0;
};

struct FsmMetrics {
  TransitionAccuracy sampled;            // eval_transition_accuracy, eval_first_transition_accuracy
  double first_transition_accuracy = 0;  // the tutorial's metric (from next-state probabilities)
};

// The seed of the sequences sampled to evaluate the model of training step
// `step`: training's evaluations and `codebook eval` of that step's
// checkpoint draw the same sequences (a model without a step uses step 0).
inline uint64_t fsm_sample_seed(uint64_t eval_seed, int64_t step) { return eval_seed + uint64_t(step); }

// `samples` sequences of `seq_len` tokens from BOS (none: sampled left zero).
FsmMetrics evaluate_fsm(LanguageModel& lm, const Fsm& fsm, int64_t samples, int64_t seq_len, uint64_t seed);

}  // namespace cb
