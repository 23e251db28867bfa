// Hugging Face GPT-2 / GPT-Neo / GPT-NeoX as cb::Graphs (frontend/hf_import.h):
// config.json parsing, the parameter list, the graph builders (one function
// per architecture's block, mirroring transformers' modeling code), random
// init, checkpoint loading and the state dict back.
#include "frontend/hf_import.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "frontend/onnx_export.h"
#include "ir/builder.h"
#include "passes/canonicalize.h"
#include "support/checked_size.h"
#include "support/error.h"
#include "support/input_file.h"
#include "support/rng.h"

namespace cb {

namespace fs = std::filesystem;

const char* hf_model_type(HfArchitecture a) {
  switch (a) {
    case HfArchitecture::gpt2: return "gpt2";
    case HfArchitecture::gpt_neo: return "gpt_neo";
    case HfArchitecture::gpt_neox: return "gpt_neox";
  }
  return "?";
}

std::string HfConfig::body_prefix() const {
  return architecture == HfArchitecture::gpt_neox ? "gpt_neox" : "transformer";
}

// ---------------------------------------------------------------------------
// config.json

namespace {

// Reads typed fields of a config object; a missing field or JSON null takes
// the default, and every error names the file and the field.
class ConfigFields {
 public:
  ConfigFields(const Json& j, const std::string& what) : j_(j), what_(what) {}

  const Json* get(const char* key) const {
    const Json* v = j_.find(key);
    return v && !v->is_null() ? v : nullptr;
  }
  // The first of `keys` that is set (transformers' attribute aliases).
  const Json* get_any(std::initializer_list<const char*> keys, const char** found = nullptr) const {
    for (const char* k : keys)
      if (const Json* v = get(k)) {
        if (found) *found = k;
        return v;
      }
    return nullptr;
  }
  int64_t integer(std::initializer_list<const char*> keys, int64_t dflt) const {
    const char* key = *keys.begin();
    const Json* v = get_any(keys, &key);
    if (!v) return dflt;
    CB_CHECK(v->is_number() && v->as_double() == std::floor(v->as_double()),
             what_ << ": '" << key << "' must be an integer, got " << v->dump());
    return v->as_int();
  }
  int64_t positive(std::initializer_list<const char*> keys, int64_t dflt) const {
    const int64_t n = integer(keys, dflt);
    CB_CHECK(n > 0, what_ << ": '" << *keys.begin() << "' must be positive, got " << n);
    return n;
  }
  double real(std::initializer_list<const char*> keys, double dflt) const {
    const char* key = *keys.begin();
    const Json* v = get_any(keys, &key);
    if (!v) return dflt;
    CB_CHECK(v->is_number(), what_ << ": '" << key << "' must be a number, got " << v->dump());
    return v->as_double();
  }
  bool boolean(const char* key, bool dflt) const {
    const Json* v = get(key);
    if (!v) return dflt;
    CB_CHECK(v->is_bool(), what_ << ": '" << key << "' must be true or false, got " << v->dump());
    return v->as_bool();
  }
  std::string string(std::initializer_list<const char*> keys, const std::string& dflt) const {
    const char* key = *keys.begin();
    const Json* v = get_any(keys, &key);
    if (!v) return dflt;
    CB_CHECK(v->is_string(), what_ << ": '" << key << "' must be a string, got " << v->dump());
    return v->as_string();
  }
  const std::string& what() const { return what_; }

 private:
  const Json& j_;
  const std::string& what_;
};

const char* const kActivations[] = {"gelu",      "gelu_python", "gelu_new", "gelu_pytorch_tanh",
                                    "gelu_fast", "relu",        "silu",     "swish"};

void check_activation(const std::string& act, const std::string& what, const char* key) {
  std::string known;
  for (const char* a : kActivations) {
    if (act == a) return;
    known += std::string(known.empty() ? "" : ", ") + a;
  }
  CB_FAIL(what << ": " << key << " '" << act << "' is not supported (supported: " << known << ")");
}

// GPT-Neo's per-layer attention kinds: "attention_layers", or expanded from
// "attention_types" = [[["global", "local"], repeat], ...].
std::vector<std::string> neo_attention_layers(const ConfigFields& f, int64_t num_layers) {
  std::vector<std::string> layers;
  const std::string& what = f.what();
  if (const Json* al = f.get("attention_layers")) {
    CB_CHECK(al->is_array(), what << ": 'attention_layers' must be an array of \"global\"/\"local\"");
    for (const Json& k : al->as_array()) {
      CB_CHECK(k.is_string(), what << ": 'attention_layers' must hold strings, got " << k.dump());
      layers.push_back(k.as_string());
    }
  } else {
    const Json* at = f.get("attention_types");
    Json dflt = json_parse("[[[\"global\", \"local\"], 12]]");
    if (!at) at = &dflt;
    CB_CHECK(at->is_array(), what << ": 'attention_types' must be [[[kinds...], repeat], ...]");
    for (const Json& group : at->as_array()) {
      CB_CHECK(group.is_array() && group.size() == 2 && group.at(size_t(0)).is_array() &&
                   group.at(size_t(1)).is_integer() && group.at(size_t(1)).as_int() >= 0,
               what << ": every 'attention_types' entry must be [[kinds...], repeat], got " << group.dump());
      for (int64_t r = 0; r < group.at(size_t(1)).as_int(); ++r)
        for (const Json& k : group.at(size_t(0)).as_array()) {
          CB_CHECK(k.is_string(), what << ": 'attention_types' kinds must be strings, got " << k.dump());
          // Stop at once when the list outgrows the layers (a repeat of 10^12 would never end).
          CB_CHECK(int64_t(layers.size()) < num_layers,
                   what << ": 'attention_types' lists more attention kinds than the " << num_layers << " layers");
          layers.push_back(k.as_string());
        }
    }
  }
  for (const std::string& k : layers)
    CB_CHECK(k == "global" || k == "local",
             what << ": attention kind '" << k << "' is not supported (expected \"global\" or \"local\")");
  CB_CHECK(int64_t(layers.size()) == num_layers,
           what << ": the attention layers list " << layers.size() << " kinds for " << num_layers << " layers");
  return layers;
}

void parse_gpt2(const ConfigFields& f, HfConfig& c) {
  c.vocab_size = f.positive({"vocab_size"}, 50257);
  c.max_positions = f.positive({"n_positions", "max_position_embeddings"}, 1024);
  c.hidden_size = f.positive({"n_embd", "hidden_size"}, 768);
  c.num_layers = f.positive({"n_layer", "num_hidden_layers"}, 12);
  c.num_heads = f.positive({"n_head", "num_attention_heads"}, 12);
  c.intermediate_size = f.positive({"n_inner"}, checked_mul(4, c.hidden_size, f.what() + ": 4 x hidden size"));
  c.activation = f.string({"activation_function"}, "gelu_new");
  check_activation(c.activation, f.what(), "activation_function");
  c.layer_norm_eps = f.real({"layer_norm_epsilon"}, 1e-5);
  c.initializer_range = f.real({"initializer_range"}, 0.02);
  c.scale_attn_weights = f.boolean("scale_attn_weights", true);
  c.scale_attn_by_inverse_layer_idx = f.boolean("scale_attn_by_inverse_layer_idx", false);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", true);
  CB_CHECK(!f.boolean("add_cross_attention", false),
           f.what() << ": 'add_cross_attention' is true; only decoder-only GPT-2 models are supported");
}

void parse_gpt_neo(const ConfigFields& f, HfConfig& c) {
  c.vocab_size = f.positive({"vocab_size"}, 50257);
  c.max_positions = f.positive({"max_position_embeddings"}, 2048);
  c.hidden_size = f.positive({"hidden_size"}, 2048);
  c.num_layers = f.positive({"num_layers", "num_hidden_layers"}, 24);
  c.num_heads = f.positive({"num_heads", "num_attention_heads"}, 16);
  c.intermediate_size =
      f.positive({"intermediate_size"}, checked_mul(4, c.hidden_size, f.what() + ": 4 x hidden size"));
  c.window_size = f.positive({"window_size"}, 256);
  c.activation = f.string({"activation_function"}, "gelu_new");
  check_activation(c.activation, f.what(), "activation_function");
  c.layer_norm_eps = f.real({"layer_norm_epsilon"}, 1e-5);
  c.initializer_range = f.real({"initializer_range"}, 0.02);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", true);
  c.attention_layers = neo_attention_layers(f, c.num_layers);
}

void parse_gpt_neox(const ConfigFields& f, HfConfig& c) {
  const std::string& what = f.what();
  c.vocab_size = f.positive({"vocab_size"}, 50432);
  c.max_positions = f.positive({"max_position_embeddings"}, 2048);
  c.hidden_size = f.positive({"hidden_size"}, 6144);
  c.num_layers = f.positive({"num_hidden_layers"}, 44);
  c.num_heads = f.positive({"num_attention_heads"}, 64);
  c.intermediate_size =
      f.positive({"intermediate_size"}, checked_mul(4, c.hidden_size, f.what() + ": 4 x hidden size"));
  c.activation = f.string({"hidden_act"}, "gelu");
  check_activation(c.activation, what, "hidden_act");
  c.layer_norm_eps = f.real({"layer_norm_eps"}, 1e-5);
  c.initializer_range = f.real({"initializer_range"}, 0.02);
  c.use_parallel_residual = f.boolean("use_parallel_residual", true);
  c.attention_bias = f.boolean("attention_bias", true);
  c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
  // Rotary settings: transformers 5 writes "rope_parameters"; older configs
  // have rotary_pct with rotary_emb_base or rope_theta.
  c.rotary_pct = f.real({"partial_rotary_factor", "rotary_pct"}, 0.25);
  c.rope_theta = f.real({"rope_theta", "rotary_emb_base"}, 10000.0);
  if (const Json* rp = f.get("rope_parameters")) {
    CB_CHECK(rp->is_object(), what << ": 'rope_parameters' must be an object");
    const std::string rp_what = what + " (rope_parameters)";
    ConfigFields r(*rp, rp_what);
    const std::string type = r.string({"rope_type", "type"}, "default");
    CB_CHECK(type == "default", what << ": RoPE type '" << type << "' is not supported (only \"default\")");
    c.rotary_pct = r.real({"partial_rotary_factor"}, c.rotary_pct);
    c.rope_theta = r.real({"rope_theta"}, c.rope_theta);
  }
  if (const Json* rs = f.get("rope_scaling")) {
    ConfigFields r(*rs, what);
    const std::string type = rs->is_object() ? r.string({"rope_type", "type"}, "") : "";
    CB_CHECK(type == "default", what << ": 'rope_scaling' " << rs->dump() << " is not supported");
  }
  CB_CHECK(c.rotary_pct >= 0 && c.rotary_pct <= 1, what << ": rotary fraction " << c.rotary_pct << " is not in [0, 1]");
  CB_CHECK(c.rope_theta > 0, what << ": rope_theta must be positive, got " << c.rope_theta);
}

// Sizes no real model comes near; past them a config is refused when parsed,
// before anything is built from it (a million layers would build for minutes
// and take gigabytes before failing).
constexpr int64_t kMaxHfLayers = 1024;
constexpr int64_t kMaxHfDimension = int64_t(1) << 31;

void check_hf_dimensions(const HfConfig& c, const std::string& what) {
  CB_CHECK(c.num_layers <= kMaxHfLayers,
           what << ": " << c.num_layers << " layers is more than codebook supports (" << kMaxHfLayers << ")");
  const std::pair<const char*, int64_t> dims[] = {{"hidden size", c.hidden_size},
                                                  {"intermediate (MLP) size", c.intermediate_size},
                                                  {"vocabulary size", c.vocab_size},
                                                  {"number of positions", c.max_positions},
                                                  {"number of heads", c.num_heads}};
  for (const auto& [name, v] : dims)
    CB_CHECK(v <= kMaxHfDimension,
             what << ": " << name << " " << v << " is larger than codebook supports (" << kMaxHfDimension << ")");
  hf_parameter_count(c);  // throws when the count overflows
}

}  // namespace

HfConfig hf_config_from_json(const Json& config, const std::string& what) {
  CB_CHECK(config.is_object(), what << ": a Hugging Face config must be a JSON object");
  ConfigFields f(config, what);
  const std::string type = f.string({"model_type"}, "");
  HfConfig c;
  c.source = config;
  if (type == "gpt2") {
    c.architecture = HfArchitecture::gpt2;
    parse_gpt2(f, c);
  } else if (type == "gpt_neo") {
    c.architecture = HfArchitecture::gpt_neo;
    parse_gpt_neo(f, c);
  } else if (type == "gpt_neox") {
    c.architecture = HfArchitecture::gpt_neox;
    parse_gpt_neox(f, c);
  } else {
    CB_CHECK(type != "codebook", what << ": model_type 'codebook' is a codebook-features CodebookModelConfig, not a "
                                         "base model's config; give its folder as the model (import-hf DIR), and the "
                                         "base model's config.json with --base-config");
    CB_FAIL(what << ": model_type " << (type.empty() ? std::string("is missing") : "'" + type + "' is not supported")
                 << " (supported: gpt2, gpt_neo, gpt_neox)");
  }
  check_hf_dimensions(c, what);
  CB_CHECK(c.hidden_size % c.num_heads == 0,
           what << ": hidden size " << c.hidden_size << " is not a multiple of the " << c.num_heads << " heads");
  if (c.architecture == HfArchitecture::gpt_neox)
    CB_CHECK(c.rotary_dims() % 2 == 0, what << ": the rotary dimensions (" << c.rotary_dims() << " = head size "
                                            << c.head_dim() << " x " << c.rotary_pct << ") must be even");
  CB_CHECK(c.initializer_range >= 0, what << ": initializer_range must not be negative");
  CB_CHECK(c.layer_norm_eps >= 0, what << ": the LayerNorm epsilon must not be negative");
  return c;
}

HfConfig read_hf_config(const std::string& path) { return hf_config_from_json(json_read_file(path), path); }

// ---------------------------------------------------------------------------
// Parameters

std::vector<HfParameter> hf_parameters(const HfConfig& c) {
  using K = HfParameter::Kind;
  const int64_t D = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const double std = c.initializer_range;
  std::vector<HfParameter> ps;
  auto weight = [&](std::string name, std::vector<int64_t> shape, bool transposed, double init_std) {
    ps.push_back({std::move(name), std::move(shape), K::linear_weight, transposed, init_std});
  };
  auto bias = [&](std::string name, int64_t n) { ps.push_back({std::move(name), {n}, K::bias, false, 0}); };
  auto norm = [&](const std::string& name) {
    ps.push_back({name + ".weight", {D}, K::norm_weight, false, 0});
    ps.push_back({name + ".bias", {D}, K::norm_bias, false, 0});
  };
  auto embedding = [&](std::string name, int64_t rows) {
    ps.push_back({std::move(name), {rows, D}, K::embedding, false, std});
  };

  switch (c.architecture) {
    case HfArchitecture::gpt2: {
      // Conv1D weights are [in, out] already; c_proj gets GPT-2's scaled init.
      const double proj_std = std / std::sqrt(2.0 * double(c.num_layers));
      embedding("transformer.wte.weight", V);
      embedding("transformer.wpe.weight", c.max_positions);
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "transformer.h." + std::to_string(l) + ".";
        norm(p + "ln_1");
        weight(p + "attn.c_attn.weight", {D, 3 * D}, false, std);
        bias(p + "attn.c_attn.bias", 3 * D);
        weight(p + "attn.c_proj.weight", {D, D}, false, proj_std);
        bias(p + "attn.c_proj.bias", D);
        norm(p + "ln_2");
        weight(p + "mlp.c_fc.weight", {D, I}, false, std);
        bias(p + "mlp.c_fc.bias", I);
        weight(p + "mlp.c_proj.weight", {I, D}, false, proj_std);
        bias(p + "mlp.c_proj.bias", D);
      }
      norm("transformer.ln_f");
      if (!c.tie_word_embeddings) weight("lm_head.weight", {V, D}, false, std);
      break;
    }
    case HfArchitecture::gpt_neo: {
      embedding("transformer.wte.weight", V);
      embedding("transformer.wpe.weight", c.max_positions);
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "transformer.h." + std::to_string(l) + ".";
        norm(p + "ln_1");
        for (const char* proj : {"q_proj", "k_proj", "v_proj"})
          weight(p + "attn.attention." + proj + ".weight", {D, D}, true, std);
        weight(p + "attn.attention.out_proj.weight", {D, D}, true, std);
        bias(p + "attn.attention.out_proj.bias", D);
        norm(p + "ln_2");
        weight(p + "mlp.c_fc.weight", {I, D}, true, std);
        bias(p + "mlp.c_fc.bias", I);
        weight(p + "mlp.c_proj.weight", {D, I}, true, std);
        bias(p + "mlp.c_proj.bias", D);
      }
      norm("transformer.ln_f");
      if (!c.tie_word_embeddings) weight("lm_head.weight", {V, D}, false, std);
      break;
    }
    case HfArchitecture::gpt_neox: {
      embedding("gpt_neox.embed_in.weight", V);
      for (int64_t l = 0; l < c.num_layers; ++l) {
        const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
        norm(p + "input_layernorm");
        norm(p + "post_attention_layernorm");
        weight(p + "attention.query_key_value.weight", {3 * D, D}, true, std);
        if (c.attention_bias) bias(p + "attention.query_key_value.bias", 3 * D);
        weight(p + "attention.dense.weight", {D, D}, true, std);
        if (c.attention_bias) bias(p + "attention.dense.bias", D);
        weight(p + "mlp.dense_h_to_4h.weight", {I, D}, true, std);
        bias(p + "mlp.dense_h_to_4h.bias", I);
        weight(p + "mlp.dense_4h_to_h.weight", {D, I}, true, std);
        bias(p + "mlp.dense_4h_to_h.bias", D);
      }
      norm("gpt_neox.final_layer_norm");
      if (!c.tie_word_embeddings) weight("embed_out.weight", {V, D}, false, std);
      break;
    }
  }
  return ps;
}

int64_t hf_parameter_count(const HfConfig& c) {
  // Every layer has the same parameters: count the model without layers and
  // one layer, so that the count costs nothing even for an absurd config.
  const std::string what = std::string(hf_model_type(c.architecture)) + " parameter count";
  auto count = [&](int64_t layers) {
    HfConfig small = c;
    small.num_layers = layers;
    int64_t n = 0;
    for (const HfParameter& p : hf_parameters(small)) n = checked_add(n, checked_numel(p.shape, what), what);
    return n;
  };
  const int64_t base = count(0), per_layer = count(1) - base;
  return checked_add(base, checked_mul(per_layer, c.num_layers, what), what);
}

void check_hf_model_fits(const HfConfig& c, const std::string& what) {
  const std::string label = what + ": " + hf_model_type(c.architecture) + " model";
  int64_t bytes = checked_mul(hf_parameter_count(c), 4, label);  // the weights as f32
  if (c.architecture == HfArchitecture::gpt_neo)                 // the causal table, max_positions^2 bools
    bytes = checked_add(bytes, checked_mul(c.max_positions, c.max_positions, label), label);
  const double memory = double(physical_memory_bytes()), gb = 1e9;
  if (memory == 0) return;  // unknown: let the allocation decide
  CB_CHECK(double(bytes) <= memory, label << " with " << c.num_layers << " layers, width " << c.hidden_size << ", MLP "
                                          << c.intermediate_size << " and vocabulary " << c.vocab_size << " has "
                                          << hf_parameter_count(c) << " parameters and needs " << double(bytes) / gb
                                          << " GB, more than this machine's " << memory / gb << " GB of memory");
}

// ---------------------------------------------------------------------------
// The graph

namespace {

Tensor transpose_2d(const Tensor& t) {
  const int64_t rows = t.dim(0), cols = t.dim(1);
  Tensor out = Tensor::empty(DType::f32, {cols, rows});
  const float* src = t.data<float>();
  float* dst = out.data<float>();
  constexpr int64_t kBlock = 32;  // cache-friendly tiles
  for (int64_t r0 = 0; r0 < rows; r0 += kBlock)
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock)
      for (int64_t r = r0; r < std::min(rows, r0 + kBlock); ++r)
        for (int64_t c = c0; c < std::min(cols, c0 + kBlock); ++c) dst[c * rows + r] = src[r * cols + c];
  return out;
}

constexpr float kMaskValue = std::numeric_limits<float>::lowest();  // torch.finfo(float32).min

class ModelBuilder {
 public:
  ModelBuilder(const HfConfig& c, const HfWeightSource& weights)
      : c_(c), weights_(weights), graph_(std::make_shared<Graph>()), b_(*graph_) {
    for (const HfParameter& p : hf_parameters(c)) params_.emplace(p.name, p);
  }

  std::shared_ptr<Graph> build() {
    Graph& g = *graph_;
    g.name = std::string(hf_model_type(c_.architecture));
    g.producer = "codebook import-hf";
    g.opsets[""] = kMinExportOpset;
    g.metadata["hf_config"] = c_.source.dump();
    const TensorType tokens{DType::i64, Shape({Dim::sym("batch"), Dim::sym("sequence")})};
    input_ids_ = g.add_input("input_ids", tokens);
    attention_mask_ = g.add_input("attention_mask", tokens);
    position_ids_ = g.add_input("position_ids", tokens);

    Value* h = nullptr;
    {
      auto s = b_.scope(c_.body_prefix());
      positions_ = b_.op("Range", {b_.i64(0), b_.gather(b_.shape_of(input_ids_), b_.i64(1)), b_.i64(1)});
      attention_bias_ = padding_and_causal_bias();
      h = embeddings();
    }
    for (int64_t l = 0; l < c_.num_layers; ++l) {
      switch (c_.architecture) {
        case HfArchitecture::gpt2: h = gpt2_block(h, l); break;
        case HfArchitecture::gpt_neo: h = gpt_neo_block(h, l); break;
        case HfArchitecture::gpt_neox: h = gpt_neox_block(h, l); break;
      }
    }
    const std::string final_norm =
        c_.architecture == HfArchitecture::gpt_neox ? "gpt_neox.final_layer_norm" : "transformer.ln_f";
    {
      auto s = b_.scope(final_norm);
      h = norm(h, final_norm);
    }
    g.outputs.push_back(lm_head(h));
    canonicalize(g);
    return graph_;
  }

 private:
  // A parameter as the graph stores it (see hf_import.h): checked against
  // its HF shape, nn.Linear weights transposed to [in, out].
  Value* param(const std::string& name) {
    auto it = params_.find(name);
    CB_CHECK(it != params_.end(), "hf_import: internal error, no parameter '" << name << "'");
    const HfParameter& p = it->second;
    if (Value* v = graph_->find_value(name)) return v;
    Tensor t = weights_(p);
    CB_CHECK(t.dtype() == DType::f32 && t.dims() == p.shape, "parameter '" << name << "' is " << dtype_name(t.dtype())
                                                                           << dims_str(t.dims()) << ", expected f32"
                                                                           << dims_str(p.shape));
    return b_.parameter(name, p.transposed ? transpose_2d(t) : t);
  }

  Value* norm(Value* x, const std::string& name) {
    return b_.layer_norm(x, param(name + ".weight"), param(name + ".bias"), float(c_.layer_norm_eps));
  }
  Value* linear(Value* x, const std::string& name, bool has_bias = true) {
    return b_.linear(x, param(name + ".weight"), has_bias ? param(name + ".bias") : nullptr);
  }
  Value* activation(Value* x) {
    const std::string& a = c_.activation;
    if (a == "gelu" || a == "gelu_python") return b_.gelu_erf(x);
    if (a == "relu") return b_.relu(x);
    if (a == "silu" || a == "swish") return b_.silu(x);
    return b_.gelu_tanh(x);  // gelu_new, gelu_pytorch_tanh, gelu_fast: the tanh approximation
  }
  Value* mlp(Value* x, const std::string& up, const std::string& down) {
    return linear(activation(linear(x, up)), down);
  }

  // [B, T, D] -> [B, H, T, head_dim].
  Value* split_heads(Value* x, int64_t head_width) {
    return b_.transpose(b_.reshape(x, {0, 0, c_.num_heads, head_width}), {0, 2, 1, 3});
  }
  // [B, H, T, head_dim] -> [B, T, D]: the merged heads (attn_preproj).
  Value* merge_heads(Value* x) { return b_.reshape(b_.transpose(x, {0, 2, 1, 3}), {0, 0, c_.hidden_size}); }

  // transformers' causal + padding mask as an additive bias [B, 1, T, T]:
  // 0 where key j <= query i and attention_mask[b, j] != 0, else float-min.
  Value* padding_and_causal_bias() {
    Value* causal = b_.op("LessOrEqual", {b_.unsqueeze(positions_, {0}), b_.unsqueeze(positions_, {1})});
    Value* keep = b_.unsqueeze(b_.cast(attention_mask_, DType::boolean), {1, 2});
    return b_.where(b_.op("And", {causal, keep}), b_.f32(0.0f), b_.f32(kMaskValue));
  }

  Value* embeddings() {
    if (c_.architecture == HfArchitecture::gpt_neox) return b_.gather(param("gpt_neox.embed_in.weight"), input_ids_);
    // GPT-2 and GPT-Neo: learned absolute positions.
    return b_.add(b_.gather(param("transformer.wte.weight"), input_ids_),
                  b_.gather(param("transformer.wpe.weight"), position_ids_));
  }

  // softmax(scores + mask) @ v, merged: the attention up to the output projection.
  Value* attend(Value* scores, Value* v) {
    Value* probs = b_.softmax(b_.add(scores, attention_bias_), -1);
    return merge_heads(b_.matmul(probs, v));
  }

  Value* gpt2_block(Value* x, int64_t layer) {
    const std::string p = "transformer.h." + std::to_string(layer);
    Value* attn_in;
    Value* attn;
    {
      auto s = b_.scope(p + ".attn");
      const int64_t D = c_.hidden_size, dh = c_.head_dim();
      attn_in = norm(x, p + ".ln_1");
      std::vector<Value*> qkv = b_.split(linear(attn_in, p + ".attn.c_attn"), 2, {D, D, D});
      Value* k_t = b_.transpose(b_.reshape(qkv[1], {0, 0, c_.num_heads, dh}), {0, 2, 3, 1});
      Value* scores = b_.matmul(split_heads(qkv[0], dh), k_t);
      double scale = c_.scale_attn_weights ? 1.0 / std::sqrt(double(dh)) : 1.0;
      if (c_.scale_attn_by_inverse_layer_idx) scale /= double(layer + 1);
      if (scale != 1.0) scores = b_.mul(scores, b_.f32(float(scale)));
      attn = linear(attend(scores, split_heads(qkv[2], dh)), p + ".attn.c_proj");
    }
    auto s = b_.scope(p + ".mlp");
    Value* h = b_.add(attn, x);
    return b_.add(h, mlp(norm(h, p + ".ln_2"), p + ".mlp.c_fc", p + ".mlp.c_proj"));
  }

  Value* gpt_neo_block(Value* x, int64_t layer) {
    const std::string p = "transformer.h." + std::to_string(layer);
    const std::string a = p + ".attn.attention";
    Value* attn;
    {
      auto s = b_.scope(a);
      const int64_t dh = c_.head_dim();
      Value* ln = norm(x, p + ".ln_1");
      Value* q = split_heads(linear(ln, a + ".q_proj", false), dh);
      Value* k = split_heads(linear(ln, a + ".k_proj", false), dh);
      Value* v = split_heads(linear(ln, a + ".v_proj", false), dh);
      // No 1/sqrt(d) scaling. The module's own causal table (banded in local
      // layers) masks first, with torch.where, then the padding+causal bias.
      Value* scores = b_.matmul(q, b_.transpose(k, {0, 1, 3, 2}));
      scores = b_.where(neo_causal_table(c_.attention_layers[size_t(layer)]), scores, b_.f32(kMaskValue));
      attn = linear(attend(scores, v), a + ".out_proj");
    }
    auto s = b_.scope(p + ".mlp");
    Value* h = b_.add(attn, x);
    return b_.add(h, mlp(norm(h, p + ".ln_2"), p + ".mlp.c_fc", p + ".mlp.c_proj"));
  }

  // GPT-Neo's `bias` buffer, rows and columns 0..T-1: key j visible from
  // query i when j <= i (and i - j < window_size in local layers). One table
  // constant per kind, shared by the layers.
  Value* neo_causal_table(const std::string& kind) {
    Value*& table = neo_tables_[kind];
    if (!table) {
      const int64_t n = c_.max_positions, window = kind == "local" ? c_.window_size : n;
      Tensor t = Tensor::empty(DType::boolean, {n, n});
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) t.data<bool>()[i * n + j] = j <= i && i - j < window;
      table = graph_->add_constant("transformer." + kind + "_attention_mask", t);
    }
    return b_.gather(b_.gather(table, positions_, 0), positions_, 1);
  }

  // cos and sin of the rotary angles, [B, 1, T, rotary_dims], as
  // GPTNeoXRotaryEmbedding computes them (f32), shared by all layers.
  void rotary_tables() {
    if (rope_cos_) return;
    auto s = b_.scope("gpt_neox.rotary_emb");
    const int64_t dim = c_.rotary_dims();
    std::vector<float> inv_freq;
    for (int64_t i = 0; i < dim; i += 2)
      inv_freq.push_back(1.0f / std::pow(float(c_.rope_theta), float(i) / float(dim)));
    Value* pos = b_.cast(b_.unsqueeze(position_ids_, {2}), DType::f32);  // [B, T, 1]
    Value* freqs = b_.mul(pos, b_.constant(Tensor::from_vector(inv_freq, {int64_t(inv_freq.size())})));
    Value* angles = b_.concat({freqs, freqs}, -1);
    rope_cos_ = b_.unsqueeze(b_.op("Cos", {angles}), {1});
    rope_sin_ = b_.unsqueeze(b_.op("Sin", {angles}), {1});
  }

  // x * cos + rotate_half(x) * sin on the first rotary_dims of each head.
  Value* apply_rotary(Value* x) {
    const int64_t dh = c_.head_dim(), rot = c_.rotary_dims(), end = std::numeric_limits<int64_t>::max();
    Value* x_rot = rot == dh ? x : b_.slice(x, {0}, {rot}, {3});
    Value* x1 = b_.slice(x_rot, {0}, {rot / 2}, {3});
    Value* x2 = b_.slice(x_rot, {rot / 2}, {rot}, {3});
    Value* rotated = b_.concat({b_.neg(x2), x1}, 3);
    Value* embedded = b_.add(b_.mul(x_rot, rope_cos_), b_.mul(rotated, rope_sin_));
    return rot == dh ? embedded : b_.concat({embedded, b_.slice(x, {rot}, {end}, {3})}, 3);
  }

  Value* gpt_neox_block(Value* x, int64_t layer) {
    const std::string p = "gpt_neox.layers." + std::to_string(layer);
    if (c_.rotary_dims() > 0) rotary_tables();
    Value* attn;
    {
      auto s = b_.scope(p + ".attention");
      const int64_t dh = c_.head_dim();
      Value* ln = norm(x, p + ".input_layernorm");
      // Fused projection, per head [q_h | k_h | v_h].
      Value* qkv = split_heads(linear(ln, p + ".attention.query_key_value", c_.attention_bias), 3 * dh);
      std::vector<Value*> parts = b_.split(qkv, 3, {dh, dh, dh});
      Value* q = parts[0];
      Value* k = parts[1];
      if (c_.rotary_dims() > 0) {
        q = apply_rotary(q);
        k = apply_rotary(k);
      }
      Value* scores = b_.mul(b_.matmul(q, b_.transpose(k, {0, 1, 3, 2})), b_.f32(float(1.0 / std::sqrt(double(dh)))));
      attn = linear(attend(scores, parts[2]), p + ".attention.dense", c_.attention_bias);
    }
    auto s = b_.scope(p + ".mlp");
    const std::string up = p + ".mlp.dense_h_to_4h", down = p + ".mlp.dense_4h_to_h";
    if (c_.use_parallel_residual) {
      Value* m = mlp(norm(x, p + ".post_attention_layernorm"), up, down);
      return b_.add(b_.add(m, attn), x);
    }
    Value* h = b_.add(attn, x);
    return b_.add(mlp(norm(h, p + ".post_attention_layernorm"), up, down), h);
  }

  // logits = h @ W^T with W the [vocab, D] output matrix (the embedding
  // itself when tied), as a Gemm over [B*T, D] so W is never copied.
  Value* lm_head(Value* h) {
    std::string name = c_.architecture == HfArchitecture::gpt_neox ? "embed_out.weight" : "lm_head.weight";
    if (c_.tie_word_embeddings)
      name = c_.architecture == HfArchitecture::gpt_neox ? "gpt_neox.embed_in.weight" : "transformer.wte.weight";
    auto s = b_.scope(c_.architecture == HfArchitecture::gpt_neox ? "embed_out" : "lm_head");
    Value* flat = b_.reshape(h, {-1, c_.hidden_size});
    Value* logits = b_.op("Gemm", {flat, param(name)}, {{"transB", int64_t(1)}});
    Value* shape = b_.concat({b_.shape_of(input_ids_), b_.i64s({c_.vocab_size})}, 0);
    return b_.create("Reshape", {logits, shape}, {graph_->add_value("logits")})->outputs[0];
  }

  const HfConfig& c_;
  const HfWeightSource& weights_;
  std::shared_ptr<Graph> graph_;
  Builder b_;
  std::map<std::string, HfParameter> params_;
  Value* input_ids_ = nullptr;
  Value* attention_mask_ = nullptr;
  Value* position_ids_ = nullptr;
  Value* positions_ = nullptr;       // 0..T-1, i64 [T]
  Value* attention_bias_ = nullptr;  // [B, 1, T, T]
  Value* rope_cos_ = nullptr;
  Value* rope_sin_ = nullptr;
  std::map<std::string, Value*> neo_tables_;
};

}  // namespace

std::shared_ptr<Graph> build_hf_model(const HfConfig& c, const HfWeightSource& weights) {
  check_hf_model_fits(c, "the config");
  return ModelBuilder(c, weights).build();
}

// ---------------------------------------------------------------------------
// Random init

HfWeightSource hf_random_weights(uint64_t seed) {
  return [seed](const HfParameter& p) {
    Tensor t = Tensor::empty(DType::f32, p.shape);
    float* d = t.data<float>();
    const int64_t n = t.numel();
    switch (p.kind) {
      case HfParameter::Kind::embedding:
      case HfParameter::Kind::linear_weight: {
        Rng::for_name(seed, p.name).fill_normal(d, n, 0.0, p.init_std);  // a stream per parameter
        break;
      }
      case HfParameter::Kind::norm_weight: std::fill(d, d + n, 1.0f); break;
      case HfParameter::Kind::bias:
      case HfParameter::Kind::norm_bias: std::fill(d, d + n, 0.0f); break;
    }
    return t;
  };
}

std::shared_ptr<Graph> build_hf_random(const HfConfig& c, uint64_t seed) {
  return build_hf_model(c, hf_random_weights(seed));
}

// ---------------------------------------------------------------------------
// Checkpoints

std::shared_ptr<HfCheckpoint> HfCheckpoint::open(const std::vector<std::string>& safetensors_paths) {
  CB_CHECK(!safetensors_paths.empty(), "no safetensors files given");
  auto ck = std::make_shared<HfCheckpoint>();
  std::map<std::string, std::string> owner;
  for (const std::string& path : safetensors_paths) {
    ck->files_.push_back(SafetensorsFile::open(path));
    for (const SafetensorsEntry& e : ck->files_.back()->entries()) {
      auto [it, fresh] = owner.emplace(e.name, path);
      CB_CHECK(fresh, "tensor '" << e.name << "' is in both " << it->second << " and " << path);
    }
  }
  return ck;
}

std::shared_ptr<HfCheckpoint> HfCheckpoint::open_dir(const std::string& dir) {
  const fs::path d(dir);
  if (fs::exists(d / "model.safetensors")) return open({(d / "model.safetensors").string()});
  const fs::path index = d / "model.safetensors.index.json";
  if (fs::exists(index)) {
    const Json j = json_read_file(index.string());
    const Json* map = j.find("weight_map");
    CB_CHECK(map && map->is_object(), index.string() << ": no \"weight_map\" object");
    std::set<std::string> shards;
    for (const auto& [name, file] : map->as_object()) {
      CB_CHECK(file.is_string(), index.string() << ": weight_map entry '" << name << "' is not a file name");
      check_name_inside_folder(file.as_string(), index.string() + ": weight_map entry '" + name + "': shard",
                               "the model folder");
      shards.insert(file.as_string());
    }
    std::vector<std::string> paths;
    for (const std::string& s : shards) paths.push_back((d / s).string());
    return open(paths);
  }
  if (fs::exists(d / "pytorch_model.bin"))
    CB_FAIL(dir << " has only pytorch_model.bin (a PyTorch pickle); save the model as safetensors first "
                   "(transformers: model.save_pretrained(dir, safe_serialization=True))");
  CB_FAIL("no model.safetensors or model.safetensors.index.json in " << dir);
}

const SafetensorsFile* HfCheckpoint::file_of(const std::string& name) const {
  for (const auto& f : files_)
    if (f->find(name)) return f.get();
  return nullptr;
}

const SafetensorsEntry* HfCheckpoint::find(const std::string& name) const {
  const SafetensorsFile* f = file_of(name);
  return f ? f->find(name) : nullptr;
}

Tensor HfCheckpoint::tensor_f32(const std::string& name) const {
  const SafetensorsFile* f = file_of(name);
  CB_CHECK(f, path() << ": no tensor '" << name << "'");
  return f->tensor_f32(name);
}

std::vector<std::string> HfCheckpoint::tensor_names() const {
  std::vector<std::string> names;
  for (const auto& f : files_)
    for (const SafetensorsEntry& e : f->entries()) names.push_back(e.name);
  return names;
}

std::string HfCheckpoint::path() const { return files_[0]->path() + (files_.size() > 1 ? ", ..." : ""); }

std::pair<const SafetensorsFile*, std::string> HfCheckpoint::resolve(const HfParameter& p, const HfConfig& c) const {
  const std::string prefix = c.body_prefix() + ".";
  std::string name = p.name;
  const SafetensorsFile* f = file_of(name);
  if (!f && name.rfind(prefix, 0) == 0) {  // GPT2Model / GPTNeoXModel checkpoints: no body prefix
    name = name.substr(prefix.size());
    f = file_of(name);
  }
  if (!f && name == "embed_out.weight") {  // transformers 5 calls GPT-NeoX's output matrix lm_head
    name = "lm_head.weight";
    f = file_of(name);
  }
  CB_CHECK(f, "the checkpoint (" << files_[0]->path() << (files_.size() > 1 ? ", ..." : "") << ") has no tensor '"
                                 << p.name << "', which a " << hf_model_type(c.architecture)
                                 << " model with this config needs");
  const SafetensorsEntry* e = f->find(name);
  CB_CHECK(e->shape == p.shape, f->path()
                                    << ": tensor '" << name << "' is " << dims_str(e->shape) << ", but the config ("
                                    << hf_model_type(c.architecture) << ", hidden size " << c.hidden_size
                                    << ", vocabulary " << c.vocab_size << ") needs " << dims_str(p.shape));
  return {f, name};
}

void HfCheckpoint::check(const HfConfig& c) const {
  for (const HfParameter& p : hf_parameters(c)) resolve(p, c);
}

HfWeightSource HfCheckpoint::source(const HfConfig& c) {
  return [this, &c](const HfParameter& p) {
    auto [f, name] = resolve(p, c);
    used_.push_back(name);
    return f->tensor_f32(name);
  };
}

std::vector<std::string> HfCheckpoint::unused_tensors(const HfConfig& c) const {
  auto ignorable = [&](const std::string& name) {
    auto ends_with = [&](const char* suffix) {
      const std::string s(suffix);
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    // Non-persistent buffers older transformers versions saved, and the
    // lm_head copy of a tied embedding.
    return ends_with(".attn.bias") || ends_with(".attn.masked_bias") || ends_with(".attention.bias") ||
           ends_with(".attention.masked_bias") || ends_with("rotary_emb.inv_freq") ||
           (c.tie_word_embeddings && (name == "lm_head.weight" || name == "embed_out.weight"));
  };
  const std::set<std::string> used(used_.begin(), used_.end());
  std::vector<std::string> unused;
  for (const auto& f : files_)
    for (const SafetensorsEntry& e : f->entries())
      if (!used.count(e.name) && !ignorable(e.name)) unused.push_back(e.name);
  return unused;
}

std::shared_ptr<Graph> import_hf(const std::string& dir) {
  const HfConfig c = read_hf_config((fs::path(dir) / "config.json").string());
  check_hf_model_fits(c, dir);
  std::shared_ptr<HfCheckpoint> checkpoint = HfCheckpoint::open_dir(dir);
  checkpoint->check(c);  // every tensor present with its shape, before anything is built
  std::shared_ptr<Graph> g = build_hf_model(c, checkpoint->source(c));
  const std::vector<std::string> unused = checkpoint->unused_tensors(c);
  if (!unused.empty()) {
    std::string list;
    for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", '" : "'") + unused[i] + "'";
    CB_FAIL(dir << ": " << unused.size() << " tensor" << (unused.size() == 1 ? " is" : "s are") << " not part of a "
                << hf_model_type(c.architecture) << " causal LM with this config: " << list
                << (unused.size() > 5 ? ", ..." : ""));
  }
  return g;
}

// ---------------------------------------------------------------------------
// Back to Hugging Face

NamedTensors hf_state_dict(const Graph& g, const HfConfig& c) {
  NamedTensors out;
  for (const HfParameter& p : hf_parameters(c)) {
    const Value* v = g.find_value(p.name);
    CB_CHECK(v && v->is_constant(), "the graph has no parameter '" << p.name << "'");
    Tensor t = *v->constant;
    CB_CHECK(t.dtype() == DType::f32, "parameter '" << p.name << "' is " << dtype_name(t.dtype()) << ", expected f32");
    if (p.transposed && t.rank() == 2) t = transpose_2d(t);
    CB_CHECK(t.dims() == p.shape, "parameter '" << p.name << "' is " << dims_str(t.dims())
                                                << " in Hugging Face layout, "
                                                << "expected " << dims_str(p.shape));
    out.emplace_back(p.name, t);
  }
  return out;
}

void save_hf(const Graph& g, const HfConfig& c, const std::string& dir) {
  NamedTensors state = hf_state_dict(g, c);
  std::error_code ec;
  fs::create_directories(dir, ec);
  CB_CHECK(!ec, "cannot create " << dir << ": " << ec.message());
  json_write_file((fs::path(dir) / "config.json").string(), c.source);
  safetensors_write((fs::path(dir) / "model.safetensors").string(), state, {{"format", "pt"}});
}

}  // namespace cb
