// The training state and one optimizer step at a time.
//
// The trainer compiles two step graphs (train/training_graph.h) from fresh
// copies of the model (ModelFactory), and holds everything a step changes:
// the trained parameters, the optimizer states and the codebook usage
// counts, by name. A train step feeds the batch of that step
// (TokenDataset::train_batch, a pure function of the step), the parameters,
// states, step number and scheduled learning rate; takes back the updated
// tensors; counts which codes fired; and, every `replace_after_steps` steps,
// replaces dead codes. Every piece of state is a tensor in state(), and all
// randomness is drawn from (seed, step), so saving state() and the step and
// loading them later continues bit-identically (same threads and backend).
//
// Code usage (per token and always on, unlike the original's;
// docs/original.md#code-usage-counts-and-dead-codes): per codebook member and
// code, the number of tokens that selected it, counted over training steps
// only, on the host from the ids output (B*T*G*k integers per step). Two
// windows are kept: since the last log (dead-code fraction in the logs) and
// since the last replacement. Replacement (when replace_after_steps R > 0):
// after every R-th step, each member's codes unused in the last R steps get
// rows of this step's LayerNorm-ed inputs (randomly permuted, tiled when
// there are fewer rows than dead codes) plus relative noise rho * |row| * N(0,
// I), and their AdamW moments restart from zero.
//
// Data-parallel (TrainerOptions::collective with several ranks; docs/scale.md):
// batch_size is the global batch, and rank r of N runs rows [r*B/N,
// (r+1)*B/N) of each step's batch, so every N sees the same tokens. The step
// graph stops at the gradients; their sum over the ranks / N (the gradient of
// the global batch's mean loss) goes into the separate optimizer graph on
// every rank, so parameters and optimizer states stay identical everywhere.
// Loss, accuracy and reconstruction error are averaged over the ranks, code
// usage counts summed, and dead-code replacement draws rows of the global
// batch's codebook inputs (only the picked rows travel between the ranks), so
// the state is the one-process state (within float rounding) and a
// checkpoint of any N resumes with any other.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "ir/precision.h"
#include "runtime/executable.h"
#include "support/json.h"
#include "train/collective.h"
#include "train/dataset.h"
#include "train/optimizer.h"
#include "train/training_graph.h"

namespace cb {

struct TrainerOptions {
  StepGraphOptions graph;
  Schedule schedule;
  int64_t batch_size = 8;
  int64_t eval_batch_size = 8;
  int64_t max_eval_samples = -1;    // -1: the whole eval set
  int64_t replace_after_steps = 0;  // 0: no dead-code replacement
  float replace_rho = 1e-4f;
  uint64_t seed = 0;  // replacement draws
  int num_threads = 1;
  // bf16: the step's and the evaluation's matmuls multiply bf16 factors
  // (forward and backward; parameters, gradients and AdamW stay f32).
  Precision precision = Precision::f32;
  bool profile = false;        // per-op-type times in train_profile()
  bool profile_nodes = false;  // ... per node instead (CompileOptions::profile_nodes)
  // The ranks of a data-parallel run; null or one rank: this process alone.
  Collective* collective = nullptr;
  // Places the step and evaluation graphs on this backend's device (what it
  // supports; the rest runs on the host backend) and keeps the parameters and
  // optimizer state there between steps (docs/cuda.md#training). Must outlive
  // the Trainer. Null: everything on the host.
  const Backend* device_backend = nullptr;
};

// A fresh copy of the model being trained (compiled with its codebooks).
using ModelFactory = std::function<std::shared_ptr<Graph>()>;

struct CodebookStats {
  std::string site;
  double dead_fraction = 0;  // codes unused since the last log / all codes
  // Mean squared error per component, mean((u - y)^2) over tokens, members
  // and components (u the LayerNorm-ed input, y the output), so sites of
  // different widths compare and aggregate (weighted by width); over the
  // steps since the last log.
  double mse = 0;
  double mean_code_norm = 0, max_code_norm = 0;
  int64_t replaced = 0;      // codes replaced since the last log
  int64_t replacements = 0;  // replacement rounds since the last log
  // Evaluations with codebook_reconstructions, sums over tokens of the site's
  // whole vector (all members): |u - y|^2, |u|^2 and |u - mean(u)|^2 (mean
  // per component over the evaluated tokens). relative MSE = the first / the
  // second; explained variance = 1 - the first / the third.
  double sq_error = 0, sq_norm = 0, sq_centered = 0;
  bool has_reconstruction = false;
};

struct StepMetrics {
  double loss = 0, accuracy = 0, grad_norm = 0, learning_rate = 0;
  double seconds = 0;
  int64_t tokens = 0;
};

struct EvalMetrics {
  double loss = 0, accuracy = 0, perplexity = 0;
  int64_t tokens = 0, samples = 0;
  std::vector<CodebookStats> codebooks;  // dead fraction and mse over the eval set
  double seconds = 0;
};

// Loss, accuracy, perplexity and codebook usage of an eval step graph over
// (the first max_samples of) the dataset's evaluation blocks; `params` holds
// the graph's parameter inputs.
// With several ranks in `collective`, rank r runs batches r, r + N, ... and
// the sums are reduced over the ranks (every rank gets the metrics).
EvalMetrics evaluate_step_graph(Executable& exe, const StepGraph& graph, const std::map<std::string, Tensor>& params,
                                const TokenDataset& data, int64_t batch_size, int64_t max_samples,
                                Collective* collective = nullptr);

class Trainer {
 public:
  Trainer(ModelFactory model, std::shared_ptr<const TokenDataset> data, const TrainerOptions& opts,
          const Backend& backend);

  // Steps done so far (0 before the first).
  int64_t step() const { return step_; }
  // Runs optimizer step step()+1 on its batch.
  StepMetrics train_step();
  // Loss, accuracy, perplexity and codebook usage over the eval set (does not
  // change the state).
  EvalMetrics evaluate();

  // Per codebook, over the steps since the last call (then the window restarts).
  std::vector<CodebookStats> take_codebook_stats();

  // Everything a step changes, by name: parameters, optimizer states
  // ("<param>.adam_m", ...), usage counts ("usage.log/<site>", "usage.replace/<site>",
  // i64 [G, K]) and running sums ("stats/<site>.mse_sum", ...). On the host:
  // state kept on the device is copied back first (and goes over again at
  // the next step).
  const std::map<std::string, Tensor>& state() const;
  // Restores a saved state and step; throws cb::Error naming a missing or
  // mismatched tensor.
  void load_state(const std::map<std::string, Tensor>& state, int64_t step);

  // Takes over `earlier`'s step and each of its parameters and optimizer
  // states that this trainer also has (same name, dtype and shape): how a run
  // goes on when its model changes mid-run (codebooks inserted,
  // train/run_trainer.h). Everything else keeps its initial value (usage
  // counts and log-window statistics start afresh).
  void continue_from(const Trainer& earlier);

  // The model with the trained parameters as constants (for export and eval).
  std::shared_ptr<Graph> trained_model() const;
  const StepGraph& train_graph() const { return train_; }
  int64_t num_trained_parameters() const;
  // Per op type, the train steps' times (the separate optimizer graph's included).
  std::map<std::string, OpProfile> train_profile() const;
  void clear_train_profile();
  // Data-parallel: seconds this rank spent in the collectives of its train
  // steps (the exchange and the wait for the slowest rank), since it started.
  double collective_seconds() const { return collective_seconds_; }

 private:
  std::map<std::string, Tensor> feeds(const StepGraph& g, const Tensor& input_ids) const;
  int ranks() const { return opts_.collective ? opts_.collective->size() : 1; }
  // The gradient outputs of a step summed over the ranks / N, by name.
  void add_mean_gradients(const std::vector<Tensor>& outputs, std::map<std::string, Tensor>& into);
  // `outputs`: this step's (the codebooks' LayerNorm-ed inputs of this
  // rank's rows); the rows picked from the whole batch are summed over the ranks.
  void replace_dead_codes(const std::vector<Tensor>& outputs);
  // Rank 0's state to every rank.
  void broadcast_state();
  // The state tensor `name` on the host (copied back from the device if there).
  Tensor& host_state(const std::string& name) const;

  ModelFactory model_;
  std::shared_ptr<const TokenDataset> data_;
  TrainerOptions opts_;
  StepGraph train_, eval_;
  std::unique_ptr<Executable> train_exe_, eval_exe_, optimizer_exe_;
  // Parameters and optimizer states may be on opts_.device_backend's device
  // between steps; everything the host reads goes through host_state().
  mutable std::map<std::string, Tensor> state_;
  std::map<std::string, int> train_output_index_, optimizer_output_index_;
  int64_t step_ = 0;
  int64_t window_steps_ = 0;
  double collective_seconds_ = 0;
};

}  // namespace cb
