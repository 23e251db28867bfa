// A training run as `codebook train` does it, as one function the command
// and the Python package (codebook.train) share: resolve the configuration,
// start or resume the run, train, log JSON lines to DIR/log.jsonl, evaluate,
// checkpoint, and export the final model. What it reports goes through
// TrainEvents, so the caller decides where it is shown (a terminal's stdout,
// stderr and progress bar; Python callbacks).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "support/json.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace cb::tools {

struct TrainRequest {
  std::string config_file;             // YAML; empty: the built-in defaults
  Json config;                         // or the file's contents as data (a mapping); null: none
  std::vector<std::string> overrides;  // "group.key=value"
  std::string resume;                  // a checkpoint or run folder to continue; empty: a new run
  std::string output;                  // the run folder; empty with resume: the resumed run's
  std::optional<int64_t> stop_at;      // stop after this step with a checkpoint
  bool checkpoints = true;             // false: no checkpoint or final model
  bool profile = false;                // time per op type of the training steps, as a note at the end
  bool profile_nodes = false;          // ... per node instead
};

struct TrainEvents {
  std::function<void(const Json&)> log;          // each log line (training and evaluation)
  std::function<void(const std::string&)> note;  // a message for the user (stderr in the CLI), no newline
  std::function<void(int64_t step, int64_t max_steps, const StepMetrics& m, double eta_seconds)> step;
};

struct TrainOutcome {
  std::string output;  // the run folder
  int64_t step = 0;    // the step reached
  int64_t max_steps = 0;
  std::string model_path;  // the final model.onnx; empty when the run stopped early or wrote nothing
  Json history;            // every log line of the run, the resumed part's included
};

// The resolved configuration of a request (what --print-config prints);
// `resume` is set to the checkpoint when the request resumes one.
Json resolve_request_config(const TrainRequest& request, std::optional<CheckpointInfo>* resume = nullptr);

// Runs the request. Throws cb::Error on a bad configuration, an output folder
// that already holds checkpoints (new runs), or a failure while training; an
// exception thrown by an event stops the run and propagates.
TrainOutcome run_training(const TrainRequest& request, const TrainEvents& events);

}  // namespace cb::tools
