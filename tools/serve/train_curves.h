// The training curves of the served model when it is a `codebook train` run:
// every numeric field of DIR/log.jsonl (loss, accuracy, dead-code fraction and
// MSE per layer, learning rate, eval_*) against the step, for the page's plots.
#pragma once
#include <string>

#include "support/json.h"

namespace cb::serve {

// The log.jsonl of `model_arg`: DIR/log.jsonl for a run folder, the one
// beside a model file, or the run's for a checkpoint folder (checkpoint-N) or
// a model file in one; "" when none.
std::string find_training_log(const std::string& model_arg);

// {"log": NAME, "series": {key: [[step, value], ...]}}: each series thinned
// to at most max_points evenly spaced points (the last one kept). A line
// that is not JSON (a run being written) is skipped. Throws cb::Error when
// the file cannot be read or is larger than 256 MiB.
Json training_curves(const std::string& log_path, size_t max_points = 1000);

}  // namespace cb::serve
