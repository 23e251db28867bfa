// The Trainer of a configured run (train/train_config.h), new or resumed.
//
// A run trains make_model_factory(run): the model with its codebooks, whose
// codes are k-means-initialised from the model's activations when
// codebook_args.kmeans_init is set. With codebook_args.insert_after_steps =
// N > 0 the run has two stages: steps 1..N train the model alone, then the
// codebooks are inserted into the trained model (k-means-initialised from its
// activations at that point when kmeans_init) and model and codebooks train
// together from step N+1 on, with the model's optimizer moments carried over.
// A model that has already learned its task gives k-means activations worth
// clustering; trained from the start, a k = 1 bottleneck at every attention
// head and MLP slows learning a lot (docs/training.md has the numbers).
// Both stages are functions of (config, step), so a run resumed at any step,
// before or after the insertion, continues bit-identically.
#pragma once
#include <memory>

#include "train/train_config.h"
#include "train/trainer.h"

namespace cb {

// The trainer of a run at `step`: 0 for a new run; a resumed run then loads
// its checkpoint's state (which replaces every initial value).
std::unique_ptr<Trainer> make_run_trainer(const TrainRunConfig& run, const RunData& data, const TrainerOptions& opts,
                                          const Backend& backend, int64_t step);

// True when `trainer` has finished the run's first stage (the model alone)
// and the codebooks go in before the next step.
bool codebooks_due(const TrainRunConfig& run, const Trainer& trainer);

// The second stage's trainer: the codebooks inserted into `plain`'s trained
// model, continuing its step and optimizer state.
std::unique_ptr<Trainer> trainer_with_codebooks(const TrainRunConfig& run, const RunData& data,
                                                const TrainerOptions& opts, const Backend& backend,
                                                const Trainer& plain);

}  // namespace cb
