#include "passes/pass_registry.h"

#include <set>
#include <sstream>

#include "passes/autodiff.h"
#include "passes/bf16_matmuls.h"
#include "passes/canonicalize.h"
#include "passes/codebook_sites.h"
#include "passes/fold_attention_layouts.h"
#include "passes/fuse_attention.h"
#include "passes/fuse_gelu.h"
#include "passes/fuse_layer_norm.h"
#include "passes/fuse_matmul_epilogue.h"
#include "passes/gemm_for_weights.h"
#include "passes/kv_cache.h"
#include "passes/last_position_logits.h"
#include "passes/lower_codebook.h"
#include "passes/place_devices.h"
#include "passes/tie_embeddings.h"
#include "support/error.h"

namespace cb {

namespace {

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

// A per-placement option: one value for all placements, or one per placement.
std::vector<std::string> per_placement(const std::string& value, size_t n, const char* option) {
  std::vector<std::string> v = split_list(value);
  CB_CHECK(v.size() == 1 || v.size() == n,
           option << " '" << value << "': give one value or one per placement (" << n << ")");
  if (v.size() == 1) v.assign(n, v[0]);
  return v;
}

template <class P>
PassInfo plain(const std::string& name, const std::string& summary) {
  return {name, summary, {}, [](const PassOptions&) { return std::make_unique<P>(); }};
}

// The canonicalisation passes come as factories (passes/canonicalize.h).
PassInfo plain(const std::string& name, const std::string& summary, std::unique_ptr<Pass> (*make)()) {
  return {name, summary, {}, [make](const PassOptions&) { return make(); }};
}

std::vector<PassInfo> build_registry() {
  std::vector<PassInfo> r;
  r.push_back({"insert-codebooks",
               "puts a codebook.Codebook node at the chosen sites of the chosen layers",
               {"at", "layers", "codes", "k", "groups", "metric", "seed"},
               [](const PassOptions& o) {
                 return std::make_unique<InsertCodebooksPass>(codebook_config_from_pass_options(o));
               }});
  r.push_back(
      {"interventions",
       "ablates, forces and taps codes: attributes of the codebook nodes, tap outputs",
       {"ablate", "ablate-mode", "disable-topk", "disable-slot", "force", "tap"},
       [](const PassOptions& o) { return std::make_unique<InterventionsPass>(interventions_from_pass_options(o)); }});
  r.push_back(
      {"lower-codebook", "replaces every codebook node by standard ONNX ops (opset 18)", {}, [](const PassOptions&) {
         return std::make_unique<LowerCodebookPass>();
       }});
  r.push_back(plain<FuseAttentionPass>(
      "fuse-attention", "replaces Q Kt MatMul, scale, mask, Softmax and probs V MatMul by one codebook.Attention"));
  r.push_back(plain<FoldAttentionLayoutsPass>(
      "fold-attention-layouts",
      "makes codebook.Attention read and write the head Transposes' and QKV Split's inputs and outputs in place"));
  r.push_back(plain<FuseGeluPass>("fuse-gelu", "replaces decomposed tanh/erf GELUs by one Gelu node"));
  r.push_back(plain<FuseLayerNormPass>(
      "fuse-layer-norm", "replaces decomposed LayerNorms (opset < 17 exports) by one LayerNormalization"));
  r.push_back(plain<FuseMatMulEpiloguePass>(
      "fuse-matmul-epilogue", "Gemm / MatMul (+ bias Add) (+ Gelu) -> one codebook.FusedMatMul (inference only)"));
  r.push_back(plain<Bf16MatMulsPass>(
      "bf16-matmuls",
      "marks f32 MatMul/Gemm/FusedMatMul to multiply bf16 roundings of their factors (--precision bf16)"));
  r.push_back(plain<GemmForWeightsPass>(
      "gemm-for-weights", "MatMul by a (transposed) 2-D weight, with its [N] bias Add -> one Gemm (training graphs)"));
  r.push_back(plain<TieEmbeddingsPass>("tie-embeddings",
                                       "makes an lm_head that copies the embedding table (transposed) read the table"));
  r.push_back(plain<LastPositionLogitsPass>("last-position-logits",
                                            "slices the last position before the LM head (next-token logits only)"));
  r.push_back({"kv-cache",
               "past keys/values as inputs, the new tokens' as outputs: one graph for prefill and decode steps",
               {"context"},
               [](const PassOptions& o) {
                 KvCacheOptions k;
                 k.context = parse_int(o.get("context", "-1"), "--context");
                 return std::make_unique<KvCachePass>(k);
               }});
  r.push_back(
      {"autodiff",
       "appends the backward of a scalar loss with respect to the given values",
       {"loss", "wrt"},
       [](const PassOptions& o) {
         CB_CHECK(o.has("loss") && o.has("wrt"), "pass autodiff: give --loss VALUE and --wrt VALUE,...");
         return std::make_unique<AutodiffPass>(AutodiffOptions{o.get("loss", ""), split_list(o.get("wrt", ""))});
       }});
  r.push_back({"place-devices",
               "places the nodes a device supports on it (--ops: the op types it runs), copies at every boundary",
               {"device", "ops"},
               [](const PassOptions& o) {
                 // By default, a cuda:0 that runs no op: nothing moves.
                 std::vector<std::string> ops = split_list(o.get("ops", ""));
                 std::set<std::string> names(ops.begin(), ops.end());
                 PlacementTarget t{Device::parse(o.get("device", "cuda:0")), [names](const Node& n) {
                                     return names.count(n.domain.empty() ? n.op_type : n.domain + "." + n.op_type) > 0;
                                   }};
                 return std::make_unique<PlaceDevicesPass>(std::move(t));
               }});
  r.push_back(plain<CanonicalizePass>("canonicalize",
                                      "the pipeline below, repeated until nothing changes, then type inference"));
  r.push_back(plain("type-inference", "re-infers every value's type", make_type_inference_pass));
  r.push_back(plain("constant-folding", "evaluates nodes whose inputs are all constants", make_constant_folding_pass));
  r.push_back(
      plain("shape-folding", "folds shape arithmetic into constant Reshape/Expand shapes", make_shape_folding_pass));
  r.push_back(plain("identity-elimination", "removes Identity nodes", make_identity_elimination_pass));
  r.push_back(plain("common-subexpression-elimination", "merges nodes that compute the same",
                    make_common_subexpression_elimination_pass));
  r.push_back(plain("dead-code-elimination", "removes nodes no graph output needs", make_dead_code_elimination_pass));
  return r;
}

}  // namespace

PassOptions PassOptions::parse(const std::string& text) {
  PassOptions o;
  std::istringstream in(text);
  std::string tok;
  std::string pending;  // an option name waiting for its value
  while (in >> tok) {
    if (pending.empty()) {
      CB_CHECK(tok.size() > 1 && tok[0] == '-', "pass options '" << text << "': expected --NAME, got '" << tok << "'");
      std::string name = tok.substr(tok[1] == '-' ? 2 : 1);
      size_t eq = name.find('=');
      if (eq != std::string::npos)
        o.add(name.substr(0, eq), name.substr(eq + 1));
      else
        pending = name;
    } else {
      o.add(pending, tok);
      pending.clear();
    }
  }
  CB_CHECK(pending.empty(), "pass options '" << text << "': --" << pending << " has no value");
  return o;
}

bool PassOptions::has(const std::string& name) const {
  for (auto& [n, v] : items_)
    if (n == name) return true;
  return false;
}

std::string PassOptions::get(const std::string& name, const std::string& fallback) const {
  std::string value = fallback;
  for (auto& [n, v] : items_)
    if (n == name) value = v;
  return value;
}

std::vector<std::string> PassOptions::all(const std::string& name) const {
  std::vector<std::string> out;
  for (auto& [n, v] : items_)
    if (n == name) out.push_back(v);
  return out;
}

const std::vector<PassInfo>& pass_registry() {
  static const std::vector<PassInfo> registry = build_registry();
  return registry;
}

const PassInfo* find_pass(const std::string& name) {
  for (const PassInfo& p : pass_registry())
    if (p.name == name) return &p;
  return nullptr;
}

std::unique_ptr<Pass> make_pass(const std::string& name, const PassOptions& opts) {
  const PassInfo* info = find_pass(name);
  if (!info) {
    std::string names;
    for (const PassInfo& p : pass_registry()) names += (names.empty() ? "" : ", ") + p.name;
    throw Error("unknown pass '" + name + "' (passes: " + names + ")");
  }
  for (auto& [n, v] : opts.items()) {
    bool known = false;
    for (const std::string& o : info->options) known |= o == n;
    if (!known) {
      std::string names;
      for (const std::string& o : info->options) names += " --" + o;
      throw Error("pass " + name + " has no option --" + n +
                  (names.empty() ? std::string(" (it takes none)") : " (options:" + names + ")"));
    }
  }
  return info->make(opts);
}

std::unique_ptr<Pass> make_pass_from_text(const std::string& text) {
  std::istringstream in(text);
  std::string name;
  in >> name;
  std::string rest;
  std::getline(in, rest);
  return make_pass(name, PassOptions::parse(rest));
}

CodebookConfig codebook_config_from_pass_options(const PassOptions& o) {
  CodebookConfig cfg;
  std::vector<std::string> at = split_list(o.get("at", "mlp"));
  CB_CHECK(!at.empty(), "--at: no placement given");
  auto codes = per_placement(o.get("codes", "1000"), at.size(), "--codes");
  auto ks = per_placement(o.get("k", "8"), at.size(), "-k");
  auto groups = per_placement(o.get("groups", "1"), at.size(), "--groups");
  for (size_t i = 0; i < at.size(); ++i) {
    PlacementConfig pc;
    pc.placement = parse_placement(at[i]);
    pc.num_codes = parse_int(codes[i], "--codes");
    pc.k = parse_int(ks[i], "-k");
    pc.groups = groups[i] == "heads" ? kGroupsPerHead : parse_int(groups[i], "--groups");
    CB_CHECK(pc.groups == kGroupsPerHead || pc.groups >= 1, "--groups must be 'heads' or at least 1");
    cfg.placements.push_back(pc);
  }
  std::string layers = o.get("layers", "all");
  if (layers != "all")
    for (auto& l : split_list(layers)) cfg.layers.push_back(parse_int(l, "--layers"));
  cfg.metric = parse_metric(o.get("metric", "inner_product"));
  cfg.seed = uint64_t(parse_int(o.get("seed", "0"), "--seed"));
  return cfg;
}

InterventionSet interventions_from_pass_options(const PassOptions& o) {
  InterventionSet iv;
  auto each = [&](const char* opt, InterventionKind kind) {
    for (const std::string& t : o.all(opt)) iv.items.push_back(parse_intervention(kind, t));
  };
  each("ablate", InterventionKind::ablate);
  each("disable-topk", InterventionKind::disable_topk);
  each("disable-slot", InterventionKind::disable_slot);
  each("force", InterventionKind::force);
  iv.taps = o.all("tap");
  std::string mode = o.get("ablate-mode", "skip");
  CB_CHECK(mode == "skip" || mode == "zero", "--ablate-mode '" << mode << "': expected skip or zero");
  iv.zero_ablation = mode == "zero";
  return iv;
}

}  // namespace cb
