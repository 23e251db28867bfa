// The original library's saved codebook models (frontend/original_checkpoint.h):
// the CodebookModelConfig, the state-dict names the original's wrappers
// produce, and the import as a compiled graph.
#include "frontend/original_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "passes/codebook_sites.h"
#include "passes/pass.h"
#include "support/error.h"

namespace cb {

namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------
// Where each placement's codebook lives in the original's module tree.
//
// Paths are relative to one transformer block ("" is the block itself). A
// *wrapping* placement replaces the module at its path by a wrapper whose
// children are module_layer (the original module, so its parameters gain a
// "module_layer." segment) and codebook_layer. A *replacing* placement swaps
// the module for a subclass with the same parameter names plus
// codebook_layer (attn_preproj: the attention module, attn_plus_mlp: the block).

struct PlacementPath {
  std::string path;
  bool wraps = true;
};

// Empty path: the original cannot build this placement for the architecture.
PlacementPath placement_path(HfArchitecture arch, Placement p) {
  const bool neox = arch == HfArchitecture::gpt_neox, neo = arch == HfArchitecture::gpt_neo;
  switch (p) {
    case Placement::mlp: return {"mlp", true};
    case Placement::mlp_mid: return {"mlp.act", true};
    case Placement::transformer_block: return {"", true};
    case Placement::attn:
      if (neo) return {"-", true};  // the original's dotted attribute lookup fails (spec §4.2)
      return {neox ? "attention" : "attn", true};
    case Placement::attn_preproj: return {neox ? "attention" : neo ? "attn.attention" : "attn", false};
    case Placement::qkv:
      if (neo) return {"-", true};  // separate q/k/v projections: no key on the original's main branch
      return {neox ? "attention.query_key_value" : "attn.c_attn", true};
    case Placement::attn_plus_mlp:
      if (neo) return {"-", false};  // "not implemented" in the original
      return {"", false};
  }
  return {"-", true};
}

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < path.size()) {
    size_t dot = path.find('.', start);
    if (dot == std::string::npos) dot = path.size();
    out.push_back(path.substr(start, dot - start));
    start = dot + 1;
  }
  return out;
}

bool is_under(const std::string& path, const std::string& ancestor) {  // ancestor or equal
  return ancestor.empty() || path == ancestor || path.rfind(ancestor + ".", 0) == 0;
}

// The module structure of one snapped block after the original inserted its
// codebooks: which paths are wrapped, and the state-dict names that follow.
class BlockLayout {
 public:
  // Checks the order of `placements` as the original applies them (config
  // order): a placement attached to an already-wrapped parent lands on the
  // wrapper and never runs, and a module replaced after something inside it
  // was wrapped loses those weights (non-strict load). Both are errors.
  BlockLayout(HfArchitecture arch, const std::vector<Placement>& placements, const std::string& what) {
    std::vector<std::pair<Placement, PlacementPath>> done;
    for (Placement p : placements) {
      const PlacementPath pp = placement_path(arch, p);
      CB_CHECK(pp.path != "-", what << ": codebook_at '" << placement_name(p) << "' is not supported on "
                                    << hf_model_type(arch)
                                    << " by the original library, so no checkpoint of it can exist (supported there: "
                                       "mlp, mlp_mid, attn_preproj, transformer_block)");
      for (const auto& [q, qp] : done) {
        const size_t dot = pp.path.rfind('.');
        const std::string parent = dot == std::string::npos ? "" : pp.path.substr(0, dot);
        if (!pp.path.empty() && qp.wraps && qp.path == parent)
          CB_FAIL(what << ": codebook_at lists '" << placement_name(p) << "' after '" << placement_name(q)
                       << "': the original attaches the second to the first one's wrapper, where it never runs; "
                          "list the inner placement first");
        if (!pp.wraps && is_under(qp.path, pp.path))
          CB_FAIL(what << ": codebook_at lists '" << placement_name(p) << "' after '" << placement_name(q)
                       << "': the original rebuilds the module and loads its weights non-strictly, losing those "
                          "the first placement renamed; list '"
                       << placement_name(p) << "' first");
      }
      done.emplace_back(p, pp);
      if (pp.wraps) wrapped_.insert(pp.path);
      paths_[p] = pp;
    }
  }

  // The state-dict name (relative to the block) of a base parameter at `rel`.
  std::string parameter(const std::string& rel) const { return renamed(components(rel), true); }

  // The prefix of a placement's codebook module (relative to the block).
  std::string codebook(Placement p) const {
    const PlacementPath& pp = paths_.at(p);
    std::vector<std::string> c = components(pp.path);
    // A wrapper's codebook_layer sits beside module_layer; a replacing
    // module's inside the module, so a wrapper around that module counts.
    std::string prefix = renamed(c, !pp.wraps);
    return prefix.empty() ? "codebook_layer" : prefix + ".codebook_layer";
  }

 private:
  // Inserts "module_layer" after every wrapped prefix of `c` (the whole of
  // `c` too when `include_self`).
  std::string renamed(const std::vector<std::string>& c, bool include_self) const {
    std::vector<std::string> out;
    std::string prefix;
    auto wrapped_here = [&](size_t n) { return wrapped_.count(prefix) && (n < c.size() || include_self); };
    if (wrapped_here(0)) out.push_back("module_layer");
    for (size_t i = 0; i < c.size(); ++i) {
      prefix += (i ? "." : "") + c[i];
      out.push_back(c[i]);
      if (wrapped_here(i + 1)) out.push_back("module_layer");
    }
    std::string s;
    for (const std::string& part : out) s += (s.empty() ? "" : ".") + part;
    return s;
  }

  std::set<std::string> wrapped_;
  std::map<Placement, PlacementPath> paths_;
};

// ---------------------------------------------------------------------------
// CodebookModelConfig fields

const Json* field(const Json& config, const char* key) {
  const Json* v = config.find(key);
  return v && !v->is_null() ? v : nullptr;
}

// A per-placement field: a scalar for every placement, or a list of exactly
// one value per placement (handle_multiple_codebooks_per_layer).
std::vector<Json> per_placement(const Json& config, const char* key, const Json& dflt, size_t n,
                                const std::string& what) {
  const Json* v = field(config, key);
  if (!v) return std::vector<Json>(n, dflt);
  if (!v->is_array()) return std::vector<Json>(n, *v);
  CB_CHECK(v->size() == n, what << ": '" << key << "' has " << v->size() << " entries but codebook_at has " << n);
  return v->as_array();
}

int64_t integer(const Json& v, const char* key, const std::string& what) {
  CB_CHECK(v.is_integer(), what << ": '" << key << "' must hold integers, got " << v.dump());
  return v.as_int();
}

}  // namespace

bool is_original_checkpoint(const std::string& dir) {
  std::error_code ec;
  const fs::path config = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir, ec) || !fs::exists(config, ec)) return false;
  const Json j = json_read_file(config.string());
  const Json* type = j.is_object() ? j.find("model_type") : nullptr;
  return type && type->is_string() && type->as_string() == "codebook";
}

OriginalCodebookConfig original_codebook_config(const Json& config, const HfConfig& base, const std::string& what) {
  CB_CHECK(config.is_object(), what << ": a CodebookModelConfig must be a JSON object");
  OriginalCodebookConfig out;

  std::vector<std::string> at;
  const Json* at_json = field(config, "codebook_at");
  if (!at_json) {
    at.push_back("mlp");
  } else if (at_json->is_string()) {
    at.push_back(at_json->as_string());
  } else {
    CB_CHECK(at_json->is_array(), what << ": 'codebook_at' must be a string or a list of strings");
    for (const Json& p : at_json->as_array()) {
      CB_CHECK(p.is_string(), what << ": 'codebook_at' must hold strings, got " << p.dump());
      at.push_back(p.as_string());
    }
  }
  CB_CHECK(!at.empty(), what << ": 'codebook_at' is empty");
  const size_t n = at.size();
  const std::vector<Json> types = per_placement(config, "codebook_type", Json("vanilla"), n, what);
  const std::vector<Json> codes = per_placement(config, "num_codes", Json(int64_t(100)), n, what);
  const std::vector<Json> groups = per_placement(config, "num_codebooks", Json(int64_t(1)), n, what);
  const std::vector<Json> ks = per_placement(config, "k_codebook", Json(int64_t(1)), n, what);

  std::vector<Placement> order;
  for (size_t i = 0; i < n; ++i) {
    PlacementConfig pc;
    try {
      pc.placement = parse_placement(at[i]);
    } catch (const Error& e) {
      CB_FAIL(what << ": codebook_at: " << e.what());
    }
    CB_CHECK(types[i].is_string() && (types[i].as_string() == "vanilla" || types[i].as_string() == "group"),
             what << ": codebook_type " << types[i].dump() << " is not \"vanilla\" or \"group\"");
    const bool group = types[i].as_string() == "group";
    pc.num_codes = integer(codes[i], "num_codes", what);
    pc.k = integer(ks[i], "k_codebook", what);
    int64_t g = integer(groups[i], "num_codebooks", what);
    if (g == -1) g = base.num_heads;  // set_codebook_args: -1 is one codebook per head
    CB_CHECK(g >= 1, what << ": num_codebooks " << g << " must be positive (or -1 for one per head)");
    CB_CHECK(group || g == 1,
             what << ": a vanilla codebook (codebook_at '" << at[i] << "') must have num_codebooks 1, got " << g);
    pc.groups = g;
    out.codebooks.placements.push_back(pc);
    // qkv is always a GroupCodebookLayer of 3 * num_codebooks members.
    out.group.push_back(group || pc.placement == Placement::qkv);
    order.push_back(pc.placement);
  }
  BlockLayout(base.architecture, order, what);  // checks the order the original applies them in

  const int64_t L = base.num_layers;
  const Json* layers = field(config, "layers_to_snap");
  if (layers && layers->is_string()) {
    CB_CHECK(layers->as_string() == "all", what << ": 'layers_to_snap' must be \"all\" or a list of layer indices");
    for (int64_t l = 0; l < L; ++l) out.codebooks.layers.push_back(l);
  } else if (layers) {
    CB_CHECK(layers->is_array(), what << ": 'layers_to_snap' must be \"all\" or a list of layer indices");
    std::set<int64_t> seen;
    for (const Json& l : layers->as_array()) {
      int64_t i = integer(l, "layers_to_snap", what);
      CB_CHECK(i >= -L && i < L,
               what << ": layers_to_snap has layer " << i << ", but the base model has " << L << " layers");
      if (i < 0) i += L;
      if (seen.insert(i).second) out.codebooks.layers.push_back(i);
    }
    std::sort(out.codebooks.layers.begin(), out.codebooks.layers.end());
  }
  out.snaps_no_layer = out.codebooks.layers.empty();

  std::string metric = "inner_product";
  if (const Json* m = field(config, "similarity_metric")) {
    CB_CHECK(m->is_string(), what << ": 'similarity_metric' must be a string");
    metric = m->as_string();
  }
  CB_CHECK(metric == "inner_product" || metric == "euclidean",
           what << ": similarity_metric '" << metric << "' is not \"inner_product\" or \"euclidean\"");
  out.codebooks.metric = parse_metric(metric);
  return out;
}

HfConfig original_base_config(const std::string& dir, const std::string& base_config) {
  std::error_code ec;
  if (!base_config.empty()) {
    fs::path p(base_config);
    if (fs::is_directory(p, ec)) p /= "config.json";
    CB_CHECK(fs::exists(p, ec), "--base-config: " << p.string() << " does not exist");
    return read_hf_config(p.string());
  }
  const fs::path in_dir = fs::path(dir) / "base_config.json";
  if (fs::exists(in_dir, ec)) return read_hf_config(in_dir.string());
  std::string hint;
  const Json config = json_read_file((fs::path(dir) / "config.json").string());
  if (const Json* name = config.find("_name_or_path"); name && name->is_string() && !name->as_string().empty())
    hint = " (its config names '" + name->as_string() + "')";
  CB_FAIL(dir << " is a codebook-features checkpoint (config.json has model_type \"codebook\"), which does not "
                 "record the base model's architecture; give the base model's config.json"
              << hint << " with `import-hf --base-config FILE`, or copy it to " << in_dir.string()
              << " (then every command reads the folder), e.g. the config.json of EleutherAI/pythia-70m-deduped");
}

std::shared_ptr<Graph> import_original_checkpoint(const std::string& dir, const std::string& base_config) {
  const fs::path d(dir);
  const std::string config_path = (d / "config.json").string();
  const Json config = json_read_file(config_path);
  const HfConfig base = original_base_config(dir, base_config);
  const OriginalCodebookConfig cb = original_codebook_config(config, base, config_path);

  std::error_code ec;
  if (!fs::exists(d / "model.safetensors", ec) && !fs::exists(d / "model.safetensors.index.json", ec) &&
      fs::exists(d / "pytorch_model.bin", ec))
    CB_FAIL(dir << " has only pytorch_model.bin (a PyTorch pickle, which codebook does not read); convert it once "
                   "with: python3 -c \"import torch; from safetensors.torch import save_file; sd = torch.load('"
                << (d / "pytorch_model.bin").string()
                << "', map_location='cpu'); save_file({k: v.contiguous().clone() for k, v in sd.items()}, '"
                << (d / "model.safetensors").string() << "')\"");
  if (!fs::exists(d / "model.safetensors", ec) && !fs::exists(d / "model.safetensors.index.json", ec) &&
      fs::exists(d / "pytorch_model.bin.index.json", ec))
    CB_FAIL(dir << " has only pytorch_model-*.bin shards (PyTorch pickles, which codebook does not read); convert "
                   "them once with: python3 -c \"import json, torch; from safetensors.torch import save_file; d = '"
                << dir
                << "'; sd = {}; [sd.update(torch.load(d + '/' + f, map_location='cpu')) for f in "
                   "set(json.load(open(d + '/pytorch_model.bin.index.json'))['weight_map'].values())]; "
                   "save_file({k: v.contiguous().clone() for k, v in sd.items()}, d + '/model.safetensors')\"");
  std::shared_ptr<HfCheckpoint> ck = HfCheckpoint::open_dir(dir);

  std::vector<Placement> order;
  for (const PlacementConfig& pc : cb.codebooks.placements) order.push_back(pc.placement);
  const BlockLayout layout(base.architecture, order, config_path);
  const std::set<int64_t> snapped(cb.codebooks.layers.begin(), cb.codebooks.layers.end());
  const std::string layers_prefix =
      base.architecture == HfArchitecture::gpt_neox ? "gpt_neox.layers." : "transformer.h.";

  // The state-dict name of a base parameter: "model." + its name, renamed
  // inside snapped blocks.
  auto saved_name = [&](const std::string& name) -> std::string {
    if (name.rfind(layers_prefix, 0) == 0) {
      const size_t dot = name.find('.', layers_prefix.size());
      const int64_t layer = std::stoll(name.substr(layers_prefix.size(), dot - layers_prefix.size()));
      if (snapped.count(layer)) return "model." + name.substr(0, dot + 1) + layout.parameter(name.substr(dot + 1));
    }
    return "model." + name;
  };
  std::set<std::string> used;
  auto load = [&](const std::string& name, const std::vector<int64_t>& shape, const std::string& needed_by) {
    const SafetensorsEntry* e = ck->find(name);
    CB_CHECK(e, ck->path() << ": no tensor '" << name << "', which " << needed_by << " needs");
    CB_CHECK(e->shape == shape, ck->path() << ": tensor '" << name << "' is " << dims_str(e->shape) << ", but "
                                           << needed_by << " needs " << dims_str(shape));
    used.insert(name);
    return ck->tensor_f32(name);
  };
  const std::string base_what = std::string("the ") + hf_model_type(base.architecture) + " base model";
  std::shared_ptr<Graph> g = build_hf_model(base, [&](const HfParameter& p) {
    std::string name = saved_name(p.name);
    if (name == "model.embed_out.weight" && !ck->find(name) && ck->find("model.lm_head.weight"))
      name = "model.lm_head.weight";
    return load(name, p.shape, base_what);
  });

  if (!cb.snaps_no_layer) {
    InsertCodebooksPass insert(cb.codebooks);
    PassManager().run(insert, *g);
    std::map<Placement, size_t> index;
    for (size_t i = 0; i < cb.codebooks.placements.size(); ++i) index[cb.codebooks.placements[i].placement] = i;
    for (const InsertedCodebook& ins : insert.inserted()) {
      const SiteRef site = parse_site(ins.site);
      const bool group = cb.group[index.at(site.placement)];
      const std::string prefix =
          "model." + layers_prefix + std::to_string(site.layer) + "." + layout.codebook(site.placement) + ".";
      const int64_t G = ins.groups, K = ins.num_codes, Dg = ins.width / ins.groups;
      Tensor codes = Tensor::empty(DType::f32, {G, K, Dg});
      Tensor scale = Tensor::empty(DType::f32, {G, Dg});
      Tensor bias = Tensor::empty(DType::f32, {G, Dg});
      const std::string needed_by = "the codebook at " + ins.site;
      for (int64_t m = 0; m < G; ++m) {
        const std::string member = group ? prefix + "codebook." + std::to_string(m) + "." : prefix;
        auto copy = [&](const std::string& name, std::vector<int64_t> shape, Tensor& into) {
          const Tensor t = load(name, shape, needed_by);
          const int64_t n = t.numel();
          std::memcpy(into.data<float>() + m * n, t.data<float>(), size_t(n) * sizeof(float));
        };
        copy(member + "codebook.weight", {K, Dg}, codes);
        copy(member + "ln.weight", {Dg}, scale);
        copy(member + "ln.bias", {Dg}, bias);
      }
      ins.node->inputs[1]->constant = std::move(codes);
      ins.node->inputs[2]->constant = std::move(scale);
      ins.node->inputs[3]->constant = std::move(bias);
    }
  }

  // Tensors nobody used: an error, except buffers older transformers saved
  // (attention masks, rotary inv_freq) and the lm_head copy of tied embeddings.
  auto ignorable = [&](std::string name) {
    for (size_t at; (at = name.find(".module_layer")) != std::string::npos;) name.erase(at, 13);
    auto ends_with = [&](const char* suffix) {
      const size_t n = std::strlen(suffix);
      return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
    };
    return ends_with(".attn.bias") || ends_with(".attn.masked_bias") || ends_with(".attention.bias") ||
           ends_with(".attention.masked_bias") || ends_with("rotary_emb.inv_freq") ||
           (base.tie_word_embeddings && (name == "model.lm_head.weight" || name == "model.embed_out.weight"));
  };
  std::vector<std::string> unused;
  for (const std::string& name : ck->tensor_names())
    if (!used.count(name) && !ignorable(name)) unused.push_back(name);
  if (!unused.empty()) {
    std::string list;
    for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", '" : "'") + unused[i] + "'";
    CB_FAIL(ck->path() << ": " << unused.size() << " tensor" << (unused.size() == 1 ? " is" : "s are")
                       << " not part of the codebook model its config.json describes (codebook_at, layers_to_snap, "
                          "codebook_type): "
                       << list << (unused.size() > 5 ? ", ..." : ""));
  }
  return g;
}

}  // namespace cb
