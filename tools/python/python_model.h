// codebook.Model: a model file (ONNX, Hugging Face folder, the original's
// folder, a `codebook train` run or checkpoint folder) loaded once, run with
// the interventions of `codebook run` (the same option syntax and functions:
// tools/codebook_options.h, tools/forced_codes.h), its codes shown as
// `run --show-codes` shows them, as data. A model is always backed by a file
// (what resolve_state_of and reloading read); codebook.compile without an
// output path writes a temporary one that lives as long as the model.
#pragma once
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/precision.h"
#include "passes/interventions.h"
#include "runtime/executable.h"
#include "tools/generate.h"
#include "tools/generation.h"
#include "tools/text_io.h"

namespace cb::python {

// A file deleted (with its external data) when the last model using it goes.
struct TemporaryModelFile {
  std::string path;
  ~TemporaryModelFile();
};

// What a run asks for, beside the inputs.
struct RunRequest {
  InterventionSet interventions;
  std::vector<std::string> show;  // --show-codes values (their sites are tapped)
  // A run without interventions for the checks of tools/intervention_checks.h:
  // the sites these interventions act on are tapped.
  const InterventionSet* tap_intervened = nullptr;
  std::string backend = "cpu";
  Precision precision = Precision::f32;  // of the matmuls (docs/precision.md)
  int threads = 0;
};

// What Model.generate asks for.
struct GenerateRequest {
  InterventionSet interventions;
  tools::GenerationRequest generation;  // its `text` is the model's tokenizer
  bool ignore_eos = false;              // else the model's eos ids stop too
  int64_t context = 0;                  // 0: tools::default_generation_context
  std::string backend = "cpu";
  Precision precision = Precision::f32;
  int threads = 0;
};

struct RunOutputs {
  std::shared_ptr<Graph> graph;  // the graph that ran (interventions and taps applied)
  std::vector<std::string> names;
  std::vector<Tensor> outs;
  std::vector<SiteRef> shown;  // the sites of RunRequest::show
  const Tensor* find(const std::string& name) const;
  // The logits: the output named so, or the only rank-3 float output (as `codebook run`).
  const Tensor* logits() const;
};

class Model {
 public:
  // `arg` as the user gave it (a run folder names its tokenizer through it).
  explicit Model(const std::string& arg, std::shared_ptr<TemporaryModelFile> temp = nullptr);
  ~Model();

  const std::string& arg() const { return arg_; }
  const std::string& path() const { return path_; }
  bool is_temporary() const { return temp_ != nullptr; }
  const Graph& graph() const { return *graph_; }
  // The tokenizer the model records (its run's, its metadata's, its folder's), or null.
  const tools::TokenText* tokenizer() const { return text_ ? &*text_ : nullptr; }
  std::string tokenizer_spec() const { return spec_.value_or(""); }
  // Uses the tokenizer of `spec` (a GPT-2 BPE folder, tokfsm[:BASE]); a bad one is a cb::Error.
  void set_tokenizer(const std::string& spec);
  // The transformer layers; -1 when the site finder finds none.
  int64_t num_layers() const { return num_layers_; }

  // Runs the model on `inputs` (input_ids completed with attention_mask and
  // position_ids where the graph wants them). The compiled graphs of the last
  // two requests are kept (a run with interventions and its clean run), so
  // repeated runs with the same interventions compile once.
  // Thread-safe (one run at a time); call without the GIL.
  RunOutputs run(const RunRequest& request, std::map<std::string, Tensor> inputs);

  // Continues the prompts with a KV cache (tools/generation.h), the
  // interventions at every position. The Generator of the last request's
  // interventions is kept, so repeated calls compile once.
  // Thread-safe (one call at a time, shared with run); call without the GIL.
  std::vector<tools::Continuation> generate(GenerateRequest request);

 private:
  struct Compiled;
  std::string arg_, path_;
  std::shared_ptr<TemporaryModelFile> temp_;
  std::shared_ptr<Graph> graph_;  // as loaded; never changed
  std::optional<std::string> spec_;
  std::optional<tools::TokenText> text_;
  int64_t num_layers_ = -1;
  std::mutex mutex_;
  std::vector<std::shared_ptr<Compiled>> compiled_;  // most recent first
  std::string generator_key_;
  std::unique_ptr<tools::Generator> generator_;
};

}  // namespace cb::python
