// What `codebook train` and `codebook eval` print: the run header and the
// JSON log lines, with the original's metric names
// (docs/original.md#loss-and-logged-metrics):
// loss, accuracy, learning_rate, grad_norm, tokens_per_s,
// dead_code_fraction[/layer{L}], dead_code_fraction_before_replacement[/layer{L}],
// MSE[/layer{L}] (per component), relative_MSE and explained_variance (eval
// with reconstructions), mean_norm[/layer{L}], max_norm[/layer{L}] ("eval_"
// prefixed for evaluations; docs/training.md defines each), and for TokFSM
// eval_transition_accuracy, eval_first_transition_accuracy (of sampled
// sequences) and eval_first_transition_accuracy_probs (from next-state
// probabilities, the tutorial's number).
#pragma once
#include <ostream>

#include "support/json.h"
#include "train/tokfsm_eval.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace cb::tools {

// Means over the steps since the last log line.
struct LogWindow {
  double loss = 0, accuracy = 0, grad_norm = 0, learning_rate = 0, seconds = 0;
  int64_t tokens = 0, steps = 0;
  void add(const StepMetrics& m);
};

// `v` (an f32 value, or a mean of f32 values) rounded to the shortest decimal
// that reads back to the same float: logs print 0.001, not 0.0010000000474974513.
double f32_number(double v);

Json train_log_line(int64_t step, const LogWindow& w, Trainer& trainer);
Json eval_log_line(const EvalMetrics& m, const Trainer& trainer);
// Per-site codebook metrics aggregated per layer and in total, under `prefix`.
void add_codebook_metrics(Json& line, const std::vector<CodebookStats>& stats,
                          const std::vector<CodebookOutputs>& codebooks, const std::string& prefix, bool norms);
void add_fsm_metrics(Json& line, const FsmMetrics& m, bool sampled);
void print_run_header(std::ostream& os, const TrainRunConfig& run, const Trainer& trainer, const TokenDataset& data);

}  // namespace cb::tools
