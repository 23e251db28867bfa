#include "train/train_config.h"

#include <algorithm>
#include <filesystem>

#include "frontend/bpe_tokenizer.h"
#include "frontend/hf_import.h"
#include "frontend/onnx_import.h"
#include "ir/codebook.h"
#include "ir/verifier.h"
#include "passes/codebook_sites.h"
#include "passes/tie_embeddings.h"
#include "support/error.h"
#include "support/thread_count.h"
#include "support/value_checks.h"
#include "support/yaml.h"

namespace cb {
namespace {

// The original's fsm_main.yaml recipe (its TokFSM model) with its key names.
// Keys that are new here are marked (new).
const char* kDefaults = R"(# codebook train: built-in defaults (the original's fsm_main.yaml recipe)
model_args:
  model_name_or_path: null   # ONNX file or Hugging Face folder; null: build model_config_args from scratch
  seed: 0                    # (new) random init of a model built from scratch
model_config_args:           # Hugging Face config.json of the model built from scratch (TokFSM: GPT-NeoX 4 x 128)
  model_type: gpt_neox
  vocab_size: 11
  hidden_size: 128
  intermediate_size: 512
  num_hidden_layers: 4
  num_attention_heads: 4
  max_position_embeddings: 128
  rotary_pct: 0.25
  rotary_emb_base: 10000
  use_parallel_residual: true
  hidden_act: gelu
  tie_word_embeddings: false
  bos_token_id: 10
  eos_token_id: 10
apply_codebook: true
codebook_args:
  codebook_at: [attn_preproj, mlp]
  codebook_type: [group, vanilla]  # group: num_codebooks members per site (-1: one per head); vanilla: one
  num_codebooks: [-1, 1]
  k_codebook: [1, 1]
  num_codes: 1000                  # one value, or one per placement
  layers_to_snap: all              # all, or a list of layer indices (negative from the end)
  similarity_metric: inner_product # inner_product | euclidean
  loss: aeloss                     # base | aeloss | fullaeloss[-beta] | vqvae[-beta]
  kmeans_init: false               # initialise codes by mini-batch k-means on the model's own activations
  kmeans_init_examples: 1000
  insert_after_steps: 0            # (new) train the model alone for N steps, then insert the codebooks (k-means when kmeans_init)
  replace_after_steps: 0           # dead-code replacement every N training steps (0: never)
  replace_rho: 1.0e-4              # relative noise of replaced codes
  seed: 0                          # (new) N(0,1) code initialisation
dataset_args:
  kind: tokfsm                     # (new) tokfsm | text
  seq_len: 128                     # tokens per block (text: block_size)
  train_files: []                  # text: .txt files (one document each) or .jsonl (one per line)
  text_field: text
  tokenizer: null                  # text: folder with vocab.json + merges.txt, or tokenizer.json
  validation_split_percentage: 5
  seed: 42                         # text: epoch shuffles; tokfsm: training samples
fsm_args:                          # the original's TokFSM task
  num_states: 100
  num_edges: 10
  representation_base: 10
  seed: 42
  fsm_path: null                   # a saved fsm.npy instead of the random FSM
  eval_seed: 1                     # (new) the fixed evaluation samples
  max_eval_samples: 2048
  generate_samples: 100            # sequences sampled from BOS for eval_transition_accuracy
training_args:
  per_device_train_batch_size: 512
  per_device_eval_batch_size: 512
  learning_rate: 1.0e-3
  lr_scheduler_type: constant      # constant | linear | cosine (after linear warm-up)
  warmup_steps: 0
  max_steps: 20000
  logging_steps: 500
  eval_steps: 500
  save_steps: 500
  save_total_limit: 2
  max_eval_samples: -1             # -1: the whole evaluation set
  optim: adamw                     # adamw | sgd
  adam_beta1: 0.9
  adam_beta2: 0.999
  adam_epsilon: 1.0e-8
  sgd_momentum: 0.0
  weight_decay: 0.0                # model parameters
  max_grad_norm: 1.0
  train_model_params: true
  model_lr_factor: 1.0
  codebook_weight_decay: 0.0       # AdamW decay of the codebook group (applies; the original's never did)
  compat_original: false           # reproduce the original's parameter collection (docs/original.md#which-parameters-train)
  seed: 42                         # dead-code replacement draws
runtime:
  threads: 2
  backend: cpu
  device: cpu                      # cpu | cuda: the step runs on the GPU where it can, state stays there (docs/cuda.md#training)
  precision: f32                   # f32 | bf16: matmuls multiply bf16 factors, f32 accumulation (docs/precision.md)
)";

const Json& at(const Json& j, const std::string& group, const std::string& key) {
  const Json* g = j.find(group);
  CB_CHECK(g && g->is_object(), "config: missing group '" << group << "'");
  const Json* v = g->find(key);
  CB_CHECK(v, "config: missing key '" << group << "." << key << "'");
  return *v;
}

template <typename F>
auto read(const Json& j, const std::string& group, const std::string& key, F f) {
  try {
    return f(at(j, group, key));
  } catch (const Error& e) {
    throw Error("config key '" + group + "." + key + "': " + e.what());
  }
}

int64_t get_int(const Json& j, const std::string& g, const std::string& k) {
  return read(j, g, k, [](const Json& v) { return v.as_int(); });
}
double get_double(const Json& j, const std::string& g, const std::string& k) {
  return read(j, g, k, [](const Json& v) { return v.as_double(); });
}
bool get_bool(const Json& j, const std::string& g, const std::string& k) {
  return read(j, g, k, [](const Json& v) { return v.as_bool(); });
}
std::string get_string(const Json& j, const std::string& g, const std::string& k) {
  return read(j, g, k, [](const Json& v) { return v.is_null() ? std::string() : v.as_string(); });
}

// One value or a list with one value per placement.
std::vector<Json> per_placement(const Json& v, const Json& placements, const std::string& key) {
  size_t n = placements.is_array() ? placements.size() : 1;
  if (!v.is_array()) return std::vector<Json>(n, v);
  CB_CHECK(v.size() == n, "config key '" << key << "' has " << v.size() << " values for the " << n
                                         << " placements of codebook_args.codebook_at " << placements.dump()
                                         << ": give one value per placement, or one value for all");
  return v.as_array();
}

// The lists with one entry per placement.
const char* const kPerPlacementKeys[] = {"codebook_type", "num_codebooks", "k_codebook", "num_codes"};

// A codebook_at set without the per-placement lists takes them along: each
// list keeps the entries of the placements it kept ([attn_preproj, mlp] ->
// [mlp] keeps the second entries). A list is left as it was when it was
// given with codebook_at, or a placement is new (parsing then names it).
void follow_placements(const Json& before, const Json& layer, Json& out) {
  const Json* lc = layer.find("codebook_args");
  const Json* bc = before.find("codebook_args");
  if (!lc || !lc->is_object() || !lc->find("codebook_at") || !bc) return;
  const Json* old_at = bc->find("codebook_at");
  const Json& new_at = lc->at("codebook_at");
  if (!old_at || !old_at->is_array() || !new_at.is_array()) return;
  std::vector<size_t> picks;
  for (const Json& p : new_at.as_array()) {
    size_t i = 0;
    while (i < old_at->size() &&
           !(old_at->as_array()[i].is_string() && p.is_string() && old_at->as_array()[i].as_string() == p.as_string()))
      ++i;
    if (i == old_at->size()) return;
    picks.push_back(i);
  }
  for (const char* key : kPerPlacementKeys) {
    const Json* list = bc->find(key);
    if (lc->find(key) || !list || !list->is_array() || list->size() != old_at->size()) continue;
    Json::Array kept;
    for (size_t i : picks) kept.push_back(list->as_array()[i]);
    out["codebook_args"][key] = Json(kept);
  }
}

// Levenshtein distance (for "did you mean" suggestions).
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// "; did you mean 'group.key'?" for the known key nearest to `key`, if near.
std::string suggestion(const std::string& key, const Json& known, const std::string& path) {
  std::string best;
  size_t best_d = std::max<size_t>(2, key.size() / 3) + 1;
  for (auto& [k, v] : known.as_object()) {
    size_t d = edit_distance(key, k);
    if (d < best_d) {
      best_d = d;
      best = k;
    }
  }
  return best.empty() ? "" : "; did you mean '" + (path.empty() ? best : path + "." + best) + "'?";
}

// Checks that every key of `user` exists in `defaults` (objects recursively;
// model_config_args is free-form).
void check_known_keys(const Json& user, const Json& defaults, const std::string& path) {
  if (!user.is_object()) return;
  for (auto& [k, v] : user.as_object()) {
    std::string p = path.empty() ? k : path + "." + k;
    const Json* d = defaults.find(k);
    CB_CHECK(d, "config: unknown key '" << p << "'" << suggestion(k, defaults, path));
    if (p == "model_config_args") continue;
    if (d->is_object()) {
      CB_CHECK(v.is_object(), "config: '" << p << "' must be a mapping");
      check_known_keys(v, *d, p);
    }
  }
}

// A config file's model_config_args replaces the default model whole (a GPT-2
// config must not inherit GPT-NeoX keys); command-line overrides (deep) change
// single keys of it.
void merge_into(Json& base, const Json& over, bool deep) {
  for (auto& [k, v] : over.as_object()) {
    Json& b = base[k];
    if (b.is_object() && v.is_object() && (deep || k != "model_config_args"))
      merge_into(b, v, deep);
    else
      b = v;
  }
}

}  // namespace

const std::string& train_config_defaults_yaml() {
  static const std::string s = kDefaults;
  return s;
}

Json train_config_defaults() { return parse_yaml(kDefaults, "built-in defaults"); }

// Adds the keys of `defaults` that `config` lacks (recursively), leaving every
// value it has alone: a config saved before a key existed reads as if it
// had the key's default.
void add_missing_keys(Json& config, const Json& defaults) {
  if (!config.is_object() || !defaults.is_object()) return;
  for (auto& [k, v] : defaults.as_object()) {
    if (k == "model_config_args") continue;  // a model's own keys, not ours to add
    if (!config.find(k))
      config[k] = v;
    else
      add_missing_keys(config[k], v);
  }
}

Json resolve_train_config(const Json& base, const std::vector<std::string>& overrides) {
  Json over = Json(Json::Object{});
  for (const std::string& o : overrides) apply_override(over, o);
  Json defaults = train_config_defaults();
  check_known_keys(over, defaults, "");
  Json out = base;
  add_missing_keys(out, defaults);
  merge_into(out, over, true);
  follow_placements(base, over, out);
  return out;
}

Json resolve_train_config(const std::string& file, const std::vector<std::string>& overrides) {
  Json user = file.empty() ? Json() : read_yaml_file(file);
  return resolve_user_train_config(user, file, overrides);
}

Json resolve_user_train_config(const Json& user, const std::string& origin, const std::vector<std::string>& overrides) {
  Json out = train_config_defaults();
  CB_CHECK(user.is_object() || user.is_null(), origin << ": a training config must be a mapping");
  if (user.is_object()) {
    check_known_keys(user, out, "");
    Json before = out;
    merge_into(out, user, false);
    follow_placements(before, user, out);
  }
  return resolve_train_config(out, overrides);
}

Json resolve_train_config_yaml(const std::string& yaml, const std::string& what,
                               const std::vector<std::string>& overrides) {
  return resolve_user_train_config(parse_yaml(yaml, what), what, overrides);
}

TrainRunConfig parse_train_config(const Json& j) {
  TrainRunConfig r;
  r.config = j;
  r.model_path = get_string(j, "model_args", "model_name_or_path");
  r.model_seed = uint64_t(get_int(j, "model_args", "seed"));
  r.model_config = *j.find("model_config_args");
  r.apply_codebook = j.at("apply_codebook").as_bool();

  // Codebooks.
  const Json& at_list = at(j, "codebook_args", "codebook_at");
  std::vector<Json> places = at_list.is_array() ? at_list.as_array() : std::vector<Json>{at_list};
  size_t n = places.size();
  auto types = per_placement(at(j, "codebook_args", "codebook_type"), at_list, "codebook_args.codebook_type");
  auto groups = per_placement(at(j, "codebook_args", "num_codebooks"), at_list, "codebook_args.num_codebooks");
  auto ks = per_placement(at(j, "codebook_args", "k_codebook"), at_list, "codebook_args.k_codebook");
  auto codes = per_placement(at(j, "codebook_args", "num_codes"), at_list, "codebook_args.num_codes");
  for (size_t i = 0; i < n; ++i) {
    PlacementConfig pc;
    try {
      pc.placement = parse_placement(places[i].as_string());
      std::string type = types[i].as_string();
      CB_CHECK(type == "group" || type == "vanilla", "codebook_type must be group or vanilla, not '" << type << "'");
      int64_t g = groups[i].as_int();
      pc.groups = type == "vanilla" ? 1 : g == -1 ? kGroupsPerHead : g;
      if (type != "vanilla") minus_one_or_positive(g, "one per attention head", "codebook_args.num_codebooks");
      pc.k = positive(ks[i].as_int(), "codebook_args.k_codebook");
      pc.num_codes = positive(codes[i].as_int(), "codebook_args.num_codes");
    } catch (const Error& e) {
      throw Error("config codebook_args, placement " + std::to_string(i) + ": " + e.what());
    }
    r.codebooks.placements.push_back(pc);
  }
  const Json& layers = at(j, "codebook_args", "layers_to_snap");
  if (layers.is_array()) {
    for (auto& l : layers.as_array()) r.codebooks.layers.push_back(l.as_int());
  } else {
    CB_CHECK(layers.is_string() && layers.as_string() == "all",
             "config key 'codebook_args.layers_to_snap' must be 'all' or a list of layers");
  }
  r.codebooks.metric = parse_metric(get_string(j, "codebook_args", "similarity_metric"));
  r.codebooks.seed = uint64_t(get_int(j, "codebook_args", "seed"));
  r.codebook_loss = get_string(j, "codebook_args", "loss");
  r.kmeans_init = get_bool(j, "codebook_args", "kmeans_init");
  r.kmeans_init_examples =
      positive(get_int(j, "codebook_args", "kmeans_init_examples"), "codebook_args.kmeans_init_examples");
  r.insert_codebooks_after = get_int(j, "codebook_args", "insert_after_steps");
  r.trainer.replace_after_steps =
      non_negative(get_int(j, "codebook_args", "replace_after_steps"), "codebook_args.replace_after_steps");
  r.trainer.replace_rho =
      float(non_negative(get_double(j, "codebook_args", "replace_rho"), "codebook_args.replace_rho"));

  // Data.
  std::string kind = get_string(j, "dataset_args", "kind");
  CB_CHECK(kind == "tokfsm" || kind == "text",
           "config key 'dataset_args.kind' must be tokfsm or text, not '" << kind << "'");
  r.dataset = kind == "tokfsm" ? DatasetKind::tokfsm : DatasetKind::text;
  int64_t seq = positive(get_int(j, "dataset_args", "seq_len"), "dataset_args.seq_len");
  r.fsm.num_states = positive(get_int(j, "fsm_args", "num_states"), "fsm_args.num_states");
  r.fsm.num_edges = positive(get_int(j, "fsm_args", "num_edges"), "fsm_args.num_edges");
  r.fsm.base = in_range<int64_t>(get_int(j, "fsm_args", "representation_base"), 2, 36, "fsm_args.representation_base");
  r.fsm.seed = uint64_t(get_int(j, "fsm_args", "seed"));
  r.fsm_path = get_string(j, "fsm_args", "fsm_path");
  r.tokfsm.seq_len = seq;
  r.tokfsm.seed = uint64_t(get_int(j, "dataset_args", "seed"));
  r.tokfsm.eval_seed = uint64_t(get_int(j, "fsm_args", "eval_seed"));
  r.tokfsm.eval_samples = positive(get_int(j, "fsm_args", "max_eval_samples"), "fsm_args.max_eval_samples");
  r.fsm_generate_samples = non_negative(get_int(j, "fsm_args", "generate_samples"), "fsm_args.generate_samples");
  r.text.block_size = seq;
  for (auto& f : at(j, "dataset_args", "train_files").as_array()) r.text.files.push_back(f.as_string());
  r.text.text_field = get_string(j, "dataset_args", "text_field");
  r.text.validation_percent = in_half_open_range(get_double(j, "dataset_args", "validation_split_percentage"), 0.0,
                                                 100.0, "dataset_args.validation_split_percentage");
  r.text.seed = uint64_t(get_int(j, "dataset_args", "seed"));
  r.tokenizer_dir = get_string(j, "dataset_args", "tokenizer");
  if (r.dataset == DatasetKind::text) {
    CB_CHECK(!r.text.files.empty(), "config: dataset_args.kind is text but dataset_args.train_files is empty");
    CB_CHECK(!r.tokenizer_dir.empty(), "config: dataset_args.kind is text but dataset_args.tokenizer is not set");
  }

  // Training.
  TrainerOptions& t = r.trainer;
  t.batch_size =
      positive(get_int(j, "training_args", "per_device_train_batch_size"), "training_args.per_device_train_batch_size");
  t.eval_batch_size =
      positive(get_int(j, "training_args", "per_device_eval_batch_size"), "training_args.per_device_eval_batch_size");
  t.max_eval_samples = minus_one_or_positive(get_int(j, "training_args", "max_eval_samples"),
                                             "the whole evaluation set", "training_args.max_eval_samples");
  t.schedule.base_lr = float(positive(get_double(j, "training_args", "learning_rate"), "training_args.learning_rate"));
  t.schedule.kind = parse_schedule(get_string(j, "training_args", "lr_scheduler_type"));
  t.schedule.warmup_steps = non_negative(get_int(j, "training_args", "warmup_steps"), "training_args.warmup_steps");
  r.max_steps = positive(get_int(j, "training_args", "max_steps"), "training_args.max_steps");
  t.schedule.total_steps = r.max_steps;
  r.logging_steps = positive(get_int(j, "training_args", "logging_steps"), "training_args.logging_steps");
  r.eval_steps = non_negative(get_int(j, "training_args", "eval_steps"), "training_args.eval_steps");
  r.save_steps = non_negative(get_int(j, "training_args", "save_steps"), "training_args.save_steps");
  r.save_total_limit = non_negative(get_int(j, "training_args", "save_total_limit"), "training_args.save_total_limit");
  std::string optim = get_string(j, "training_args", "optim");
  CB_CHECK(optim == "adamw" || optim == "adamw_torch" || optim == "sgd",
           "config key 'training_args.optim' must be adamw or sgd, not '" << optim << "'");
  OptimizerConfig& o = t.graph.optimizer;
  o.kind = optim == "sgd" ? OptimizerKind::sgd : OptimizerKind::adamw;
  // Adam's betas are decay rates in [0, 1); 1 would divide by 1 - beta^t = 0.
  o.beta1 =
      float(in_half_open_range(get_double(j, "training_args", "adam_beta1"), 0.0, 1.0, "training_args.adam_beta1"));
  o.beta2 =
      float(in_half_open_range(get_double(j, "training_args", "adam_beta2"), 0.0, 1.0, "training_args.adam_beta2"));
  o.eps = float(positive(get_double(j, "training_args", "adam_epsilon"), "training_args.adam_epsilon"));
  o.momentum =
      float(in_half_open_range(get_double(j, "training_args", "sgd_momentum"), 0.0, 1.0, "training_args.sgd_momentum"));
  // 0: no clipping.
  o.max_grad_norm = float(non_negative(get_double(j, "training_args", "max_grad_norm"), "training_args.max_grad_norm"));
  t.graph.model_weight_decay =
      float(non_negative(get_double(j, "training_args", "weight_decay"), "training_args.weight_decay"));
  t.graph.train_model = get_bool(j, "training_args", "train_model_params");
  t.graph.model_lr_factor =
      float(non_negative(get_double(j, "training_args", "model_lr_factor"), "training_args.model_lr_factor"));
  t.graph.codebook_weight_decay = float(
      non_negative(get_double(j, "training_args", "codebook_weight_decay"), "training_args.codebook_weight_decay"));
  t.graph.compat_original = get_bool(j, "training_args", "compat_original");
  t.seed = uint64_t(get_int(j, "training_args", "seed"));
  if (r.insert_codebooks_after != 0) {
    CB_CHECK(r.insert_codebooks_after > 0 && r.insert_codebooks_after < r.max_steps,
             "config key 'codebook_args.insert_after_steps' must be between 0 and training_args.max_steps ("
                 << r.max_steps << "), not " << r.insert_codebooks_after);
    CB_CHECK(r.apply_codebook, "config key 'codebook_args.insert_after_steps' needs apply_codebook: true");
    CB_CHECK(t.graph.train_model,
             "config key 'codebook_args.insert_after_steps' trains the model alone first: it needs "
             "training_args.train_model_params: true");
  }
  t.num_threads = checked_thread_count(get_int(j, "runtime", "threads"), "runtime.threads", false);
  r.backend = get_string(j, "runtime", "backend");
  r.device = get_string(j, "runtime", "device");
  CB_CHECK(r.device == "cpu" || r.device == "cuda",
           "config key 'runtime.device' must be cpu or cuda, not '" << r.device << "'");
  t.precision = parse_precision(get_string(j, "runtime", "precision"), "config key 'runtime.precision'");
  return r;
}

ModelFactory make_model_factory(const TrainRunConfig& run) {
  std::shared_ptr<HfConfig> hf;
  if (run.model_path.empty())
    hf = std::make_shared<HfConfig>(hf_config_from_json(run.model_config, "model_config_args"));
  return [run, hf]() -> std::shared_ptr<Graph> {
    std::shared_ptr<Graph> g;
    if (hf) {
      g = build_hf_random(*hf, run.model_seed);
    } else {
      std::error_code ec;
      bool hf_dir = std::filesystem::is_directory(run.model_path, ec) &&
                    std::filesystem::exists(std::filesystem::path(run.model_path) / "config.json", ec);
      g = hf_dir ? import_hf(run.model_path) : import_onnx(run.model_path);
      // An exported lm_head copy of the embedding would train apart from it.
      TieEmbeddingsPass tie;
      PassManager().run(tie, *g);
    }
    if (run.apply_codebook) {
      InsertCodebooksPass insert(run.codebooks);
      PassManager().run(insert, *g);
      for (auto& n : g->nodes())
        if (n->domain == kCodebookDomain && n->op_type == kCodebookOp) n->attrs["loss"] = run.codebook_loss;
    }
    return g;
  };
}

int64_t logits_vocab_size(Graph& model) {
  infer_types(model);
  if (model.outputs.empty()) return -1;
  const Shape& s = model.outputs[0]->type.shape;
  if (!s.rank_known || s.dims.size() != 3 || !s.dims[2].is_static()) return -1;
  return s.dims[2].value;
}

int64_t model_vocab_size(const TrainRunConfig& run) {
  if (run.model_path.empty()) return hf_config_from_json(run.model_config, "model_config_args").vocab_size;
  TrainRunConfig alone = run;
  alone.apply_codebook = false;
  return logits_vocab_size(*make_model_factory(alone)());
}

RunData make_run_data(const TrainRunConfig& run, int64_t model_vocab) {
  RunData d;
  auto check_vocab = [&](int64_t data_vocab, const std::string& what) {
    CB_CHECK(model_vocab <= 0 || data_vocab <= model_vocab,
             what << " has " << data_vocab << " token ids but the model's vocabulary has " << model_vocab
                  << " (model_config_args.vocab_size or the model's logits): ids from " << model_vocab
                  << " on cannot be embedded");
  };
  if (run.dataset == DatasetKind::tokfsm) {
    auto fsm =
        std::make_shared<Fsm>(run.fsm_path.empty() ? Fsm::random(run.fsm) : Fsm::load(run.fsm_path, run.fsm.base));
    check_vocab(fsm->vocab_size(),
                "the TokFSM data (fsm_args.representation_base " + std::to_string(run.fsm.base) + " digits + BOS)");
    d.fsm = fsm;
    d.dataset = std::make_shared<TokFsmDataset>(fsm, run.tokfsm);
  } else {
    auto tok = std::make_shared<BpeTokenizer>(BpeTokenizer::load(run.tokenizer_dir));
    check_vocab(tok->vocab_size(), "the tokenizer " + run.tokenizer_dir);
    PackedTextDataset::Config c = run.text;
    auto eos = tok->token_to_id("<|endoftext|>");
    CB_CHECK(eos, "tokenizer " << run.tokenizer_dir << " has no <|endoftext|> token to put between documents");
    c.eos_id = int64_t(*eos);
    d.dataset = std::make_shared<PackedTextDataset>(c, [tok](const std::string& text) {
      std::vector<int64_t> ids;
      for (auto id : tok->encode(text)) ids.push_back(int64_t(id));
      return ids;
    });
  }
  return d;
}

}  // namespace cb
