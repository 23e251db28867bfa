#include "passes/interventions.h"

#include <regex>
#include <sstream>

#include "ir/codebook.h"
#include "ir/verifier.h"
#include "passes/insert_codebooks.h"
#include "support/error.h"

namespace cb {

const char* intervention_option(InterventionKind k) {
  switch (k) {
    case InterventionKind::ablate: return "--ablate";
    case InterventionKind::disable_topk: return "--disable-topk";
    case InterventionKind::disable_slot: return "--disable-slot";
    case InterventionKind::force: return "--force";
  }
  return "?";
}

namespace {

const char* kind_name(InterventionKind k) { return intervention_option(k); }

}  // namespace

Intervention parse_intervention(InterventionKind kind, const std::string& text) {
  Intervention iv;
  iv.kind = kind;
  size_t colon = text.find(':');
  CB_CHECK(colon != std::string::npos, kind_name(kind)
                                           << " '" << text << "': expected SITE:VALUES, e.g. layer0.mlp:12,40");
  try {
    iv.site = parse_site(text.substr(0, colon));
  } catch (const Error& e) {
    CB_FAIL(kind_name(kind) << " '" << text << "': " << e.what());
  }
  CB_CHECK(iv.site.is_codebook_site(), kind_name(kind)
                                           << " '" << text << "': " << iv.site.site()
                                           << " is an activation without a codebook; it can only be tapped");
  std::string rest = text.substr(colon + 1);
  if (kind == InterventionKind::force) {
    size_t hash = rest.find('#');
    if (hash != std::string::npos) {
      auto slot = parse_int_list(rest.substr(hash + 1), "slot", text);
      CB_CHECK(slot.size() == 1, kind_name(kind) << " '" << text << "': one #SLOT expected");
      iv.has_slot = true;
      iv.slot = slot[0];
      rest = rest.substr(0, hash);
    }
  }
  size_t at = rest.find('@');
  if (at != std::string::npos) {
    CB_CHECK(kind != InterventionKind::disable_slot,
             "--disable-slot '" << text << "': slots are zeroed at every position; no @POSITIONS");
    std::string pos = rest.substr(at + 1);
    if (pos != "*") iv.positions = parse_int_list(pos, "position", text);
    rest = rest.substr(0, at);
  }
  const char* what = kind == InterventionKind::disable_topk   ? "count"
                     : kind == InterventionKind::disable_slot ? "slot"
                                                              : "code";
  static const std::string kStateOf = "state-of:";
  if (kind == InterventionKind::force && rest.compare(0, kStateOf.size(), kStateOf) == 0)
    iv.state_of = parse_int_list(rest.substr(kStateOf.size()), "token", text);
  else
    iv.values = parse_int_list(rest, what, text);
  if (kind == InterventionKind::disable_topk) {
    CB_CHECK(iv.values.size() == 1 && iv.values[0] >= 0,
             "--disable-topk '" << text << "': expected one non-negative count, e.g. layer0.mlp:2");
  }
  return iv;
}

int64_t num_layers_of(Graph& g) {
  auto it = g.metadata.find("codebook.num_layers");
  if (it != g.metadata.end()) return std::stoll(it->second);
  return int64_t(analyze_model(g).layers.size());
}

namespace {

// Marks `v` as a graph output named `name`, through an Identity when the
// value has another name.
void add_output(Graph& g, Value* v, const std::string& name) {
  for (Value* o : g.outputs)
    if (o->name == name) return;
  if (v->name != name) {
    CB_CHECK(!g.find_value(name), "cannot tap '" << name << "': a value of that name exists");
    Value* out = g.add_value(name, v->type);
    g.add_node("Identity", {v}, {out}, {}, name);
    v = out;
  }
  g.outputs.push_back(v);
}

// The codebook node's optional output i (1 = ids, 2 = scores), created if absent.
Value* codebook_output(Graph& g, Node& n, size_t i, const std::string& name) {
  if (n.outputs.size() <= i) n.outputs.resize(i + 1, nullptr);
  if (!n.outputs[i]) {
    Value* v = g.add_value(name);
    v->producer = &n;
    v->producer_output = int(i);
    n.outputs[i] = v;
  }
  return n.outputs[i];
}

// The value carrying `v` downstream: a codebook that reads `v` replaces it.
Value* flowing(const Graph& g, Value* v) {
  for (Node* n : codebook_nodes(g))
    if (n->inputs[0] == v) return n->outputs[0];
  return v;
}

// An activation that is no codebook site: the block input, input + attn,
// or the attention probabilities.
void tap_activation(Graph& g, const SiteRef& s, const LayerSites& l) {
  Value* v = nullptr;
  switch (s.point) {
    case SitePoint::input: v = flowing(g, l.input); break;
    case SitePoint::attn_pattern: v = l.softmax->outputs[0]; break;
    case SitePoint::resid_mid: {
      CB_CHECK(!l.parallel_residual, "--tap " << s.site() << ": layer " << s.layer
                                              << " has a parallel residual (attention and MLP both read the "
                                                 "block input), so there is no residual stream between them");
      Value* in = flowing(g, l.input);
      Value* attn = flowing(g, l.attn);
      for (const auto& n : g.nodes())
        if (n->op_type == "Add" && n->domain.empty() && n->inputs.size() == 2 &&
            ((n->inputs[0] == in && n->inputs[1] == attn) || (n->inputs[0] == attn && n->inputs[1] == in)))
          v = n->outputs[0];
      CB_CHECK(v, "--tap " << s.site() << ": no Add of the block input and the attention output found");
      break;
    }
    case SitePoint::placement: break;
  }
  add_output(g, v, s.site());
}

// layerL.qkv[q|k|v]: one of separate q, k, v projections (as `inspect` lists
// them); false when `text` is no such name.
bool tap_separate_qkv(Graph& g, const std::string& text) {
  static const std::regex part(R"(layer(-?\d+)\.qkv\[([qkv])\])");
  std::smatch m;
  if (!std::regex_match(text, m, part)) return false;
  SiteRef s = parse_site("layer" + std::string(m[1]) + ".qkv", num_layers_of(g));
  ModelAnatomy a = analyze_model(g);
  const LayerSites& l = a.layers[size_t(s.layer)];
  CB_CHECK(l.qkv.size() == 3, "--tap " << text << ": layer " << s.layer << " has one fused q, k, v projection; tap "
                                       << s.site() << " instead");
  add_output(g, l.qkv[std::string("qkv").find(std::string(m[2]))], s.site() + "[" + std::string(m[2]) + "]");
  return true;
}

void tap_site(Graph& g, const std::string& text) {
  if (tap_separate_qkv(g, text)) return;
  SiteRef s;
  try {
    s = parse_site(text, num_layers_of(g));  // negative layers resolved
  } catch (const Error& e) {
    CB_FAIL("--tap: " << e.what());
  }
  CB_CHECK(s.group == kAll, "--tap " << text << ": taps name a whole site, without [member]");
  std::string site = s.site();
  if (s.is_codebook_site())
    if (Node* n = find_codebook_node(g, site)) {
      add_output(g, n->inputs[0], site + ".input");
      add_output(g, codebook_output(g, *n, 1, site + ".ids"), site + ".ids");
      add_output(g, codebook_output(g, *n, 2, site + ".scores"), site + ".scores");
      add_output(g, n->outputs[0], site + ".output");
      return;
    }
  ModelAnatomy a = analyze_model(g);
  const LayerSites& l = a.layers[size_t(s.layer)];
  if (!s.is_codebook_site()) return tap_activation(g, s, l);
  // A site without a codebook: expose the activation a codebook there would read.
  std::vector<Value*> vs =
      s.placement == Placement::attn_plus_mlp ? std::vector<Value*>{l.attn, l.mlp} : site_values(l, s.placement);
  Value* v = vs.at(0);
  if (vs.size() > 1) {  // attn + mlp, or separate q, k, v as [q|k|v]
    bool sum = s.placement == Placement::attn_plus_mlp;
    v = g.add_value(site + ".input");
    std::map<std::string, AttrValue> attrs;
    if (!sum) attrs["axis"] = int64_t(-1);
    g.add_node(sum ? "Add" : "Concat", vs, {v}, attrs, site + ".tap");
  }
  add_output(g, v, site + ".input");
}

}  // namespace

std::vector<std::string> tap_all_codes(Graph& g, bool scores) {
  std::vector<std::string> sites;
  for (Node* n : codebook_nodes(g)) {
    std::string site = n->attr_string("site", n->name);
    add_output(g, codebook_output(g, *n, 1, site + ".ids"), site + ".ids");
    if (scores) add_output(g, codebook_output(g, *n, 2, site + ".scores"), site + ".scores");
    sites.push_back(site);
  }
  infer_types(g);
  return sites;
}

void apply_interventions(Graph& g, const InterventionSet& iv) {
  if (iv.empty()) return;
  std::vector<Node*> nodes = codebook_nodes(g);
  int64_t num_layers = -1;
  auto resolve = [&](SiteRef s) {
    if (num_layers < 0) num_layers = num_layers_of(g);
    CB_CHECK(s.layer >= -num_layers && s.layer < num_layers,
             "site " << s.name() << ": the model has layers 0.." << num_layers - 1);
    if (s.layer < 0) s.layer += num_layers;
    return s;
  };
  for (const Intervention& item : iv.items) {
    CB_CHECK(item.state_of.empty(), kind_name(item.kind) << " " << item.site.name()
                                                         << ":state-of: needs a run of the model on the tokens "
                                                            "(codebook run and export resolve it)");
    SiteRef s = resolve(item.site);
    Node* n = find_codebook_node(g, s.site());
    CB_CHECK(n, kind_name(item.kind) << " " << item.site.name() << ": site " << s.site()
                                     << " has no codebook (compile the model with --at " << placement_name(s.placement)
                                     << " first)");
    const Shape& codes = n->inputs[1]->type.shape;
    CodebookAttrs a = CodebookAttrs::from_node(*n);
    std::vector<int64_t> positions = item.positions.empty() ? std::vector<int64_t>{kAll} : item.positions;
    switch (item.kind) {
      case InterventionKind::ablate:
        for (int64_t p : positions)
          for (int64_t c : item.values) a.ablate.push_back({s.group, p, c});
        break;
      case InterventionKind::disable_topk:
        for (int64_t p : positions) a.disable_topk.push_back({s.group, p, item.values[0]});
        break;
      case InterventionKind::disable_slot:
        for (int64_t slot : item.values) a.force.push_back({s.group, kAll, slot, -1});
        break;
      case InterventionKind::force:
        for (int64_t p : positions)
          for (size_t i = 0; i < item.values.size(); ++i) {
            int64_t slot = item.has_slot ? item.slot + int64_t(i) : -1 - int64_t(i);
            a.force.push_back({s.group, p, slot, item.values[i]});
          }
        break;
    }
    // Check the records against G and K before touching the node.
    Node checked = *n;
    a.to_node(checked);
    CodebookAttrs::from_node(checked, codes.rank() == 3 ? codes.dims[0].value : -1,
                             codes.rank() == 3 ? codes.dims[1].value : -1);
    a.to_node(*n);
  }
  if (iv.zero_ablation)
    for (Node* n : nodes) {
      const Shape& codes = n->inputs[1]->type.shape;
      CodebookAttrs a = CodebookAttrs::from_node(*n);
      a.keep_k_codes = false;
      a.to_node(*n);
    }
  for (const std::string& list : iv.taps) {
    std::stringstream items(list);
    std::string t;
    while (std::getline(items, t, ',')) tap_site(g, t);
  }
  // Re-check every node against its codes (member, code and slot ranges).
  infer_types(g);
}

}  // namespace cb
