// Causal LMs from a Hugging Face config.json (+ model.safetensors), built as
// an ordinary cb::Graph of standard ops: GPT-2, GPT-Neo and GPT-NeoX.
//
// The graph computes what transformers' eager implementation computes (same
// op order, masks and constants), from inputs input_ids, attention_mask and
// position_ids (all i64 [batch, sequence]) to `logits` f32 [batch, sequence,
// vocab]. Attention masking is HF's: key j is visible from query i when j <= i
// and attention_mask[b, j] != 0, as an additive 0 / float-min bias; GPT-Neo
// first applies its own per-layer causal table (banded to `window_size` in
// local layers) with torch.where, exactly as its attention module does. The
// graph is canonicalised, so passes/transformer_anatomy.h finds every layer
// and site, and it can be compiled, run and exported like an imported ONNX model.
//
// Parameters keep their Hugging Face state-dict names ("transformer.h.0.
// attn.c_attn.weight", "gpt_neox.layers.0.attention.query_key_value.weight",
// "embed_out.weight"). Most are stored exactly as in the state dict; the
// weights of nn.Linear layers ([out, in] in PyTorch) are stored transposed,
// [in, out], as MatMul reads them (HfParameter::transposed says which), and
// the output projection reads the embedding matrix itself when the config
// ties them. hf_state_dict() gives the tensors back in Hugging Face layout.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "frontend/safetensors.h"
#include "ir/graph.h"
#include "support/json.h"

namespace cb {

enum class HfArchitecture { gpt2, gpt_neo, gpt_neox };
const char* hf_model_type(HfArchitecture a);  // "gpt2", "gpt_neo", "gpt_neox"

// The fields of config.json the builders use, with transformers' defaults for
// missing ones. Options we do not implement (cross-attention, RoPE scaling,
// ...) are rejected when parsing, naming the field.
struct HfConfig {
  HfArchitecture architecture = HfArchitecture::gpt2;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t intermediate_size = 0;  // MLP width
  int64_t max_positions = 0;      // learned position embeddings (GPT-2/Neo); context length (NeoX)
  double layer_norm_eps = 1e-5;
  std::string activation;  // "gelu_new", "gelu", "relu", ...
  bool tie_word_embeddings = true;
  double initializer_range = 0.02;
  // GPT-2: scores * head_dim^-0.5 (scale_attn_weights), / (layer + 1) (scale_attn_by_inverse_layer_idx).
  bool scale_attn_weights = true;
  bool scale_attn_by_inverse_layer_idx = false;
  // GPT-Neo: "global" or "local" per layer; local layers see `window_size` tokens.
  std::vector<std::string> attention_layers;
  int64_t window_size = 256;
  // GPT-NeoX: rotary embedding on the first rotary_pct of each head.
  double rotary_pct = 0.25;
  double rope_theta = 10000.0;
  bool use_parallel_residual = true;
  bool attention_bias = true;  // biases on query_key_value and dense

  Json source;  // the parsed config.json

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t rotary_dims() const { return int64_t(double(head_dim()) * rotary_pct); }
  // The parameter-name prefix of the transformer body: "transformer" or "gpt_neox".
  std::string body_prefix() const;
};

// `what` names the source in errors (the file).
HfConfig hf_config_from_json(const Json& config, const std::string& what = "config.json");
HfConfig read_hf_config(const std::string& path);

// One trainable tensor of the model, as in the HF state dict (tied copies
// and non-persistent buffers excluded).
struct HfParameter {
  enum class Kind { embedding, linear_weight, bias, norm_weight, norm_bias };
  std::string name;
  std::vector<int64_t> shape;  // Hugging Face layout
  Kind kind = Kind::linear_weight;
  bool transposed = false;  // stored [in, out] in the graph, [out, in] in the state dict
  double init_std = 0;      // HF's normal init std for weights and embeddings
};
std::vector<HfParameter> hf_parameters(const HfConfig& c);
// What transformers' num_parameters() says; computed without listing the
// parameters. Throws cb::Error when the count overflows.
int64_t hf_parameter_count(const HfConfig& c);
// Throws cb::Error (naming `what`, the config's source) when the model's f32
// weights (and GPT-Neo's causal table) need more than this machine's memory;
// build_hf_model and import_hf check this before building anything. Configs
// with more than 1024 layers or a dimension over 2^31 are refused when parsed.
void check_hf_model_fits(const HfConfig& c, const std::string& what);

// Supplies each parameter in Hugging Face layout, f32, with p.shape.
using HfWeightSource = std::function<Tensor(const HfParameter& p)>;

// Builds the model graph (canonicalised).
std::shared_ptr<Graph> build_hf_model(const HfConfig& c, const HfWeightSource& weights);

// Random weights as transformers initialises them: weights and embeddings
// N(0, initializer_range^2) (GPT-2's attn.c_proj and mlp.c_proj:
// std / sqrt(2 * n_layer)), biases 0, LayerNorm weight 1 and bias 0. The
// same seed gives the same weights; each parameter has its own stream, so a
// parameter's values do not depend on which others exist.
HfWeightSource hf_random_weights(uint64_t seed);
std::shared_ptr<Graph> build_hf_random(const HfConfig& c, uint64_t seed);

// The weights of a checkpoint: one safetensors file, or the shards listed by
// a model.safetensors.index.json. Names may lack the body prefix (GPT2Model
// checkpoints: "h.0.attn.c_attn.weight"), and GPT-NeoX's output matrix may be
// "lm_head.weight" instead of "embed_out.weight"; F16/BF16/F64 become f32.
// The source (valid while the checkpoint and the config live) throws
// cb::Error for a missing tensor or a wrong shape.
class HfCheckpoint {
 public:
  static std::shared_ptr<HfCheckpoint> open(const std::vector<std::string>& safetensors_paths);
  // DIR/model.safetensors or DIR/model.safetensors.index.json.
  static std::shared_ptr<HfCheckpoint> open_dir(const std::string& dir);
  HfWeightSource source(const HfConfig& c);
  // Checks that every parameter of `c` is in the files with its shape (headers
  // only, nothing read); throws naming the file and tensor.
  void check(const HfConfig& c) const;
  // Tensors in the files that no parameter used, except known non-persistent
  // buffers (attention masks, rotary inv_freq) and a tied lm_head copy.
  std::vector<std::string> unused_tensors(const HfConfig& c) const;
  // Tensors by their exact names (frontend/original_checkpoint reads renamed
  // state dicts): the entry or null; the tensor as f32 (throws naming it).
  const SafetensorsEntry* find(const std::string& name) const;
  Tensor tensor_f32(const std::string& name) const;
  std::vector<std::string> tensor_names() const;
  std::string path() const;  // the file, or the first shard and ", ..." (for messages)

 private:
  const SafetensorsFile* file_of(const std::string& name) const;
  // The file and the name under which `p` is stored (names may lack the body
  // prefix); throws for a missing tensor or a wrong shape.
  std::pair<const SafetensorsFile*, std::string> resolve(const HfParameter& p, const HfConfig& c) const;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::vector<std::string> used_;
};

// DIR/config.json + DIR/model.safetensors (or sharded): the imported model.
// Throws cb::Error naming the file and tensor for anything missing, of the
// wrong shape or dtype, or left over in the checkpoint.
std::shared_ptr<Graph> import_hf(const std::string& dir);

// The graph's parameters in Hugging Face layout under their HF names (the
// inverse of the import), ready for safetensors_write; and config.json +
// model.safetensors written into `dir` (created if needed), loadable by
// transformers and by import_hf.
NamedTensors hf_state_dict(const Graph& g, const HfConfig& c);
void save_hf(const Graph& g, const HfConfig& c, const std::string& dir);

}  // namespace cb
