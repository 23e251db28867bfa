// Token generation with a KV cache: the library part of `codebook generate`
// (tools/cmd_generate.cpp), meant for the browser (tools/serve) and Python
// bindings too. docs/generation.md has the whole story.
//
// A Generator compiles a model once into a graph that runs only new tokens
// (passes/last_position_logits.h, then passes/kv_cache.h), and holds the
// keys and values of every layer between calls. Its caches are tensors of a
// capacity C it grows geometrically (doubling, at most the context); each
// call writes only the new tokens' columns into them, so a decode step never
// copies the whole cache (a copy happens only when the capacity doubles).
//
// Interventions (ablate / force / disable on codebook nodes, applied to the
// model by the interventions pass before it is given here) run at every
// position the model processes. Their positions are absolute: position 5 is
// the sixth token of prompt + generated text, whichever call processes it;
// `*` is every position; negative positions count from the end of each call
// (the prompt in the prefill, the one new token in a decode step), so -1
// acts on the prompt's last token and on every generated one. The codebook
// op sees only the tokens of the current call, so the Generator compiles a
// variant of the graph per distinct set of records that apply to a call
// (with a position-free intervention there is one for all decode steps).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "ir/graph.h"
#include "ir/precision.h"
#include "runtime/executable.h"
#include "support/rng.h"

namespace cb::tools {

struct GeneratorOptions {
  // The longest sequence (prompt + generated); -1: the model's position table
  // (an error for rotary models: give it).
  int64_t context = -1;
  // The first cache capacity (tokens); 0: twice the prompt, at least 16.
  int64_t initial_capacity = 0;
  std::string backend = "cpu";
  // Runs what it supports (placement, docs/cuda.md), the KV cache in its
  // memory; must outlive the Generator.
  const Backend* device_backend = nullptr;
  Precision precision = Precision::f32;  // of the matmuls (docs/precision.md)
  int threads = 0;
  bool profile = false;        // time per op type (profile())
  bool profile_nodes = false;  // ... per node instead (CompileOptions::profile_nodes)
};

class Generator {
 public:
  // Takes the model graph (interventions already applied) and rewrites it.
  // Throws cb::Error when the graph is not a causal LM the passes handle.
  Generator(std::shared_ptr<Graph> model, GeneratorOptions opts = {});

  // Starts a new sequence with `ids` (at least one token); returns the
  // logits of the next token (vocab floats).
  const std::vector<float>& prefill(const std::vector<int64_t>& ids);
  // Appends `token` to the sequence; returns the logits of the next one.
  // Throws cb::Error when the sequence is at the context length.
  const std::vector<float>& step(int64_t token);

  // Batches: B sequences of one length decoded together (each call runs
  // [B, N] tokens; the caches are [B, H, dh, C]). Returns B rows of vocab()
  // logits, one after another. prefill() and step() are the batch of one.
  const std::vector<float>& prefill_batch(const std::vector<std::vector<int64_t>>& rows);
  // One token per row.
  const std::vector<float>& step_batch(const std::vector<int64_t>& tokens);
  int64_t batch() const { return batch_; }
  int64_t vocab() const { return vocab_; }

  int64_t length() const { return length_; }  // tokens processed so far
  int64_t context() const { return context_; }
  int64_t capacity() const { return capacity_; }
  int64_t num_layers() const { return layers_; }
  // How many times the caches grew (each a copy of what they held).
  int64_t cache_growths() const { return growths_; }
  // Time per op type over every call so far (with GeneratorOptions::profile).
  std::map<std::string, OpProfile> profile() const;
  // The compiled graph (no interventions remapped), e.g. for printing.
  const Graph& graph() const { return *graph_; }

 private:
  // Runs `ids`, B rows of n tokens each, after the cached ones.
  const std::vector<float>& run(const std::vector<int64_t>& ids, int64_t n);
  void ensure_capacity(int64_t needed);
  // The backend whose memory holds the KV cache: the device's, else the host's.
  const Backend& cache_memory() const { return opts_.device_backend ? *opts_.device_backend : *backend_; }
  // `t` in cache_memory(): itself, or a copy there.
  Tensor in_cache_memory(const Tensor& t) const;
  Executable& executable_for(int64_t past, int64_t n);

  std::shared_ptr<Graph> graph_;
  GeneratorOptions opts_;
  std::unique_ptr<Backend> backend_;
  bool positional_ = false;  // some codebook record names a position >= 0
  std::map<std::string, std::unique_ptr<Executable>> variants_;
  int64_t layers_ = 0, heads_ = 0, head_dim_ = 0, context_ = 0;
  int64_t length_ = 0, capacity_ = 0, growths_ = 0, batch_ = 1, vocab_ = 0;
  bool has_position_ids_ = false, has_attention_mask_ = false;
  std::vector<Tensor> keys_, values_;  // per layer: [B, H, dh, C] and [B, H, C, dh], in cache_memory()
  std::vector<float> logits_;          // [B, vocab]
};

// The context generation uses when none is given: -1 (the model's learned
// position table) where the model has one; else (rotary models, whose graph
// does not say) the max_position_embeddings of the Hugging Face config the
// model records (import-hf, training), else 2048 (GPT-NeoX's and Pythia's).
int64_t default_generation_context(const Graph& model);

struct SamplingOptions {
  double temperature = 0;  // 0: greedy (the most likely token; ties to the lower id)
  int64_t top_k = 0;       // keep the k most likely tokens; 0: all
  double top_p = 1;        // keep the smallest most-likely set with probability >= p
  uint64_t seed = 0;
};

// Picks next tokens from logits: greedy, or softmax(logits / temperature)
// restricted by top-k then top-p, drawn with the project's seeded RNG
// (support/rng.h), so a seed gives the same tokens on every platform.
class Sampler {
 public:
  explicit Sampler(SamplingOptions o);
  int64_t next(const std::vector<float>& logits);
  // The same over `vocab` logits at `logits` (a row of a batch's).
  int64_t next(const float* logits, int64_t vocab);

 private:
  SamplingOptions o_;
  Rng rng_;
};

}  // namespace cb::tools
