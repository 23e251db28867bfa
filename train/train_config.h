// A training run's configuration: YAML whose groups and keys mirror the
// original library's Hydra configs (main.yaml, fsm_main.yaml;
// docs/original.md#config-keys-hydra-mainyaml--fsm_mainyaml), overridable
// as `group.key=value`. The built-in defaults
// (train_config_defaults()) are fsm_main.yaml's TokFSM recipe; a config file
// only lists what differs. Unknown keys are errors (a typo never silently
// falls back to a default), except inside model_config_args, which is a
// Hugging Face config.json passed through.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "passes/insert_codebooks.h"
#include "support/json.h"
#include "train/dataset.h"
#include "train/trainer.h"

namespace cb {

// The defaults, as YAML text (documented key by key).
const std::string& train_config_defaults_yaml();
Json train_config_defaults();

// defaults <- file (if any) <- overrides ("a.b=v"); unknown keys rejected.
Json resolve_train_config(const std::string& file, const std::vector<std::string>& overrides);
// The same with the file's contents given as data (`origin` names it in errors):
// a mapping, or null for none.
Json resolve_user_train_config(const Json& user, const std::string& origin, const std::vector<std::string>& overrides);
// The same for a config file's text already in memory; `what` names it in errors.
Json resolve_train_config_yaml(const std::string& yaml, const std::string& what,
                               const std::vector<std::string>& overrides);
// The same on an already resolved config (a checkpoint's), with extra overrides;
// keys added since it was saved take their defaults.
Json resolve_train_config(const Json& base, const std::vector<std::string>& overrides);

enum class DatasetKind { tokfsm, text };

struct TrainRunConfig {
  Json config;  // the resolved configuration

  // The model: an ONNX file / Hugging Face folder, or model_config_args built
  // with random init (seeded).
  std::string model_path;
  Json model_config;
  uint64_t model_seed = 0;
  bool apply_codebook = true;
  CodebookConfig codebooks;
  std::string codebook_loss = "aeloss";
  bool kmeans_init = false;
  int64_t kmeans_init_examples = 1000;
  // > 0: the model trains alone for this many steps, then the codebooks are
  // inserted (train/run_trainer.h).
  int64_t insert_codebooks_after = 0;

  DatasetKind dataset = DatasetKind::tokfsm;
  Fsm::Config fsm;
  std::string fsm_path;
  TokFsmDataset::Config tokfsm;
  int64_t fsm_generate_samples = 100;
  PackedTextDataset::Config text;
  std::string tokenizer_dir;

  TrainerOptions trainer;
  int64_t max_steps = 0, logging_steps = 0, eval_steps = 0, save_steps = 0, save_total_limit = 0;
  std::string backend = "cpu";
  std::string device = "cpu";  // cpu | cuda (tools/device_option.h makes its backend)
};

// Reads a resolved config; throws cb::Error naming the key of a bad value.
TrainRunConfig parse_train_config(const Json& resolved);

// Fresh copies of the model with its codebooks (the same every call).
ModelFactory make_model_factory(const TrainRunConfig& run);

// The dataset, and for TokFSM the FSM it samples.
struct RunData {
  std::shared_ptr<const TokenDataset> dataset;
  std::shared_ptr<const Fsm> fsm;  // null for text
};
// `model_vocab` (> 0) is checked against the data's vocabulary first (the
// tokenizer's or the FSM's), so a mismatch is an error naming both sizes, not
// an index error inside the model's embedding Gather.
RunData make_run_data(const TrainRunConfig& run, int64_t model_vocab = -1);

// The vocabulary size of the run's model (model_config_args.vocab_size, or
// the last dimension of the logits of model_args.model_path); -1 if unknown.
int64_t model_vocab_size(const TrainRunConfig& run);
// The vocabulary size of a model graph's logits (its first output); -1 if unknown.
int64_t logits_vocab_size(Graph& model);

}  // namespace cb
