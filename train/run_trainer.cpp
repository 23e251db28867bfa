#include "train/run_trainer.h"

#include "train/kmeans_init.h"
#include "train/parameters.h"

namespace cb {
namespace {

bool staged(const TrainRunConfig& run) { return run.apply_codebook && run.insert_codebooks_after > 0; }

ModelFactory model_alone(TrainRunConfig run) {
  run.apply_codebook = false;
  return make_model_factory(run);
}

}  // namespace

std::unique_ptr<Trainer> make_run_trainer(const TrainRunConfig& run, const RunData& data, const TrainerOptions& opts,
                                          const Backend& backend, int64_t step) {
  // At step N exactly the first stage has ended but the codebooks are not in
  // yet (codebooks_due): a checkpoint of step N holds the model alone.
  if (staged(run) && step <= run.insert_codebooks_after)
    return std::make_unique<Trainer>(model_alone(run), data.dataset, opts, backend);
  ModelFactory model = make_model_factory(run);
  if (run.kmeans_init && step == 0) model = kmeans_initialized_factory(model, *data.dataset, run, backend);
  return std::make_unique<Trainer>(model, data.dataset, opts, backend);
}

bool codebooks_due(const TrainRunConfig& run, const Trainer& trainer) {
  return staged(run) && trainer.step() == run.insert_codebooks_after && trainer.train_graph().codebooks.empty();
}

std::unique_ptr<Trainer> trainer_with_codebooks(const TrainRunConfig& run, const RunData& data,
                                                const TrainerOptions& opts, const Backend& backend,
                                                const Trainer& plain) {
  auto trained = std::make_shared<std::map<std::string, Tensor>>();
  for (const std::string& p : plain.train_graph().parameters) (*trained)[p] = plain.state().at(p).clone();
  ModelFactory with_codebooks = make_model_factory(run);
  ModelFactory model = [with_codebooks, trained] {
    std::shared_ptr<Graph> g = with_codebooks();
    assign_constants(*g, *trained);
    return g;
  };
  if (run.kmeans_init) model = kmeans_initialized_factory(model, *data.dataset, run, backend);
  auto trainer = std::make_unique<Trainer>(model, data.dataset, opts, backend);
  trainer->continue_from(plain);
  return trainer;
}

}  // namespace cb
