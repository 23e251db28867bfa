#include "passes/insert_codebooks.h"

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "ir/verifier.h"
#include "passes/canonicalize.h"
#include "passes/codebook_sites.h"
#include "support/error.h"
#include "support/json.h"
#include "support/rng.h"

namespace cb {

namespace {

Tensor filled(std::vector<int64_t> dims, float v) {
  Tensor t = Tensor::empty(DType::f32, std::move(dims));
  std::fill(t.data<float>(), t.data<float>() + t.numel(), v);
  return t;
}

// Every use of `from` now reads `to`, except the inputs of `keep`.
void redirect_uses(Graph& g, Value* from, Value* to, const std::set<const Node*>& keep) {
  for (auto& n : g.nodes()) {
    if (keep.count(n.get())) continue;
    for (auto& in : n->inputs)
      if (in == from) in = to;
  }
  for (auto& o : g.outputs)
    if (o == from) o = to;
}

class Inserter {
 public:
  Inserter(Graph& g, const CodebookConfig& cfg, const ModelAnatomy& a) : g_(g), cfg_(cfg), a_(a) {
    // Codebooks already in the graph: their site values now flow through them.
    for (Node* n : codebook_nodes(g)) {
      replaced_[n->inputs[0]] = n->outputs[0];
      if (auto [concat, split] = separate_qkv_codebook(g, *n); concat)
        for (size_t i = 0; i < 3; ++i) replaced_[concat->inputs[i]] = split->outputs[i];
    }
  }

  // The value now carrying what `v` carried (after earlier insertions).
  Value* current(Value* v) const {
    auto it = replaced_.find(v);
    return it == replaced_.end() ? v : current(it->second);
  }

  // Adds Codebook(x) and returns its output y (uses of x are not touched).
  Value* codebook(Value* x, const std::string& site, const PlacementConfig& pc, int64_t width) {
    CB_CHECK(!find_codebook_node(g_, site), "site " << site << " already has a codebook");
    int64_t G = pc.groups == kGroupsPerHead ? a_.num_heads : pc.groups;
    CB_CHECK(G > 0, site << ": --groups heads needs the number of heads, which is not static in this graph");
    if (pc.placement == Placement::qkv) G *= 3;
    CB_CHECK(width > 0 && width % G == 0,
             site << ": " << G << " group members do not divide the site's width " << width);
    CB_CHECK(pc.num_codes >= 1, site << ": --codes must be at least 1");
    CB_CHECK(pc.k >= 1 && pc.k <= pc.num_codes, site << ": k = " << pc.k << " must be in [1, " << pc.num_codes << "]");
    int64_t Dg = width / G;
    Tensor init = Tensor::empty(DType::f32, {G, pc.num_codes, Dg});
    Rng::for_name(cfg_.seed, site).fill_normal(init.data<float>(), init.numel());  // N(0, 1), per site
    Value* codes = g_.add_constant("codebook." + site + ".codes", std::move(init));
    Value* scale = g_.add_constant("codebook." + site + ".ln_scale", filled({G, Dg}, 1.f));
    Value* bias = g_.add_constant("codebook." + site + ".ln_bias", filled({G, Dg}, 0.f));
    Value* y = g_.add_value(site + ".output", x->type);
    CodebookAttrs attrs;
    attrs.k = pc.k;
    attrs.metric = cfg_.metric;
    Node* n = g_.add_node(kCodebookOp, {x, codes, scale, bias}, {y}, {{"site", site}}, site, kCodebookDomain);
    attrs.to_node(*n);
    inserted_.push_back({site, n, width, G, pc.num_codes, pc.k});
    return y;
  }

  // Quantises value v in place: its uses read the codebook's output.
  void at_value(Value* v, const std::string& site, const PlacementConfig& pc, int64_t width) {
    v = current(v);
    Value* y = codebook(v, site, pc, width);
    redirect_uses(g_, v, y, {y->producer});
    replaced_[v] = y;
  }

  void insert(const LayerSites& l, const PlacementConfig& pc) {
    std::string site = SiteRef{l.index, pc.placement}.site();
    int64_t width = site_width(a_, pc.placement);
    switch (pc.placement) {
      case Placement::qkv: {
        if (l.qkv.size() == 1) return at_value(l.qkv[0], site, pc, width);
        CB_CHECK(l.qkv.size() == 3, site << ": expected one fused or three separate projections");
        // Separate q, k, v: quantise their concatenation [q|k|v], then split it back.
        std::vector<Value*> qkv;
        for (Value* v : l.qkv) qkv.push_back(current(v));
        TensorType t = qkv[0]->type;
        if (t.shape.rank_known) t.shape.dims.back() = Dim::fixed(width);
        Value* cat = g_.add_value(site + ".input", t);
        Node* concat = g_.add_node("Concat", qkv, {cat}, {{"axis", int64_t(-1)}}, site + ".concat");
        Value* y = codebook(cat, site, pc, width);
        std::vector<Value*> parts;
        for (int i = 0; i < 3; ++i) parts.push_back(g_.add_value(site + ".split" + std::to_string(i), qkv[i]->type));
        g_.add_node("Split", {y}, parts, {{"axis", int64_t(-1)}, {"num_outputs", int64_t(3)}}, site + ".split");
        for (int i = 0; i < 3; ++i) {
          redirect_uses(g_, qkv[i], parts[i], {concat});
          replaced_[qkv[i]] = parts[i];
        }
        return;
      }
      case Placement::attn_plus_mlp: {
        // out = input + Codebook(attn + mlp): the block's total write is quantised.
        Value* a = current(l.attn);
        Value* m = current(l.mlp);
        Value* sum = g_.add_value(site + ".input", a->type);
        g_.add_node("Add", {a, m}, {sum}, {}, site + ".sum");
        Value* y = codebook(sum, site, pc, width);
        Value* out_old = current(l.output);
        Value* out = g_.add_value(site + ".block_output", out_old->type);
        g_.add_node("Add", {current(l.input), y}, {out}, {}, site + ".residual");
        redirect_uses(g_, out_old, out, {out->producer});
        replaced_[out_old] = out;
        return;
      }
      default: {
        std::vector<Value*> vs = site_values(l, pc.placement);
        CB_CHECK(vs.size() == 1 && vs[0], site << ": site not found in this graph");
        return at_value(vs[0], site, pc, width);
      }
    }
  }

  std::vector<InsertedCodebook> inserted_;

 private:
  Graph& g_;
  const CodebookConfig& cfg_;
  const ModelAnatomy& a_;
  std::map<Value*, Value*> replaced_;
};

// `{"k1": v1, "k2": v2}`, members in the given order, values already JSON
// text. Not Json::dump (sorted keys, no spaces): compiled models are compared
// byte for byte, so this text must stay as it was.
std::string json_object_in_order(std::initializer_list<std::pair<const char*, std::string>> members) {
  std::string out = "{";
  for (const auto& [key, value] : members) {
    if (out.size() > 1) out += ", ";
    out += Json(key).dump() + ": " + value;
  }
  return out + "}";
}

}  // namespace

std::string codebook_config_json(const Graph& g) {
  std::string codebooks;
  for (Node* n : codebook_nodes(g)) {
    SiteRef s = parse_site(n->attr_string("site", n->name));
    CodebookAttrs a = CodebookAttrs::from_node(*n);
    const Shape& codes = n->inputs[1]->type.shape;
    int64_t G = codes.dims[0].value, K = codes.dims[1].value, Dg = codes.dims[2].value;
    if (!codebooks.empty()) codebooks += ", ";
    codebooks += json_object_in_order({{"site", Json(s.site()).dump()},
                                       {"layer", Json(s.layer).dump()},
                                       {"placement", Json(placement_name(s.placement)).dump()},
                                       {"width", Json(G * Dg).dump()},
                                       {"groups", Json(G).dump()},
                                       {"num_codes", Json(K).dump()},
                                       {"k", Json(a.k).dump()},
                                       {"metric", Json(metric_name(a.metric)).dump()}});
  }
  return json_object_in_order({{"version", Json(1).dump()}, {"codebooks", "[" + codebooks + "]"}});
}

std::vector<Node*> codebook_nodes(const Graph& g) {
  std::vector<Node*> out;
  for (auto& n : g.nodes())
    if (is_codebook_node(*n)) out.push_back(n.get());
  return out;
}

Node* find_codebook_node(const Graph& g, const std::string& site) {
  for (Node* n : codebook_nodes(g))
    if (n->attr_string("site", n->name) == site) return n;
  return nullptr;
}

std::vector<InsertedCodebook> insert_codebooks(Graph& g, const CodebookConfig& cfg) {
  CB_CHECK(!cfg.placements.empty(), "no placement given (e.g. --at mlp)");
  ModelAnatomy a = analyze_model(g);  // a compiled model reads as its plain model
  int64_t L = int64_t(a.layers.size());
  std::set<int64_t> layers;
  if (cfg.layers.empty())
    for (int64_t i = 0; i < L; ++i) layers.insert(i);
  for (int64_t l : cfg.layers) {
    CB_CHECK(l >= -L && l < L, "layer " << l << " does not exist: the model has layers 0.." << L - 1);
    layers.insert(l < 0 ? l + L : l);
  }
  std::set<Placement> seen;
  for (auto& pc : cfg.placements)
    CB_CHECK(seen.insert(pc.placement).second, "placement " << placement_name(pc.placement) << " given twice");

  Inserter ins(g, cfg, a);
  for (const LayerSites& l : a.layers) {
    if (!layers.count(l.index)) continue;
    // Forward order within a block, whatever order the placements were given in.
    for (Placement p : kAllPlacements)
      for (auto& pc : cfg.placements)
        if (pc.placement == p) ins.insert(l, pc);
  }
  g.toposort();
  make_dead_code_elimination_pass()->run(g);  // e.g. the block output attn_plus_mlp replaced
  infer_types(g);
  g.metadata["codebook.config"] = codebook_config_json(g);
  g.metadata["codebook.num_layers"] = std::to_string(L);
  return ins.inserted_;
}

}  // namespace cb
