#include "tools/forced_codes.h"

#include <map>

#include "backends/backend.h"
#include "ir/codebook.h"
#include "passes/insert_codebooks.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "support/json.h"
#include "tools/model_io.h"

namespace cb::tools {

namespace {

std::vector<int64_t> int_list(const Json& j, const std::string& what) {
  std::vector<int64_t> out;
  CB_CHECK(j.is_array() && j.size() > 0, what << ": expected a non-empty list of integers");
  for (const Json& v : j.as_array()) out.push_back(v.as_int());
  return out;
}

Intervention force_entry(const Json& e) {
  CB_CHECK(e.is_object(), "expected an object {\"site\": ..., \"codes\": [...]}");
  for (auto& [key, value] : e.as_object())
    CB_CHECK(key == "site" || key == "positions" || key == "codes" || key == "state_of" || key == "slot",
             "unknown key '" << key << "' (keys: site, positions, codes, state_of, slot)");
  Intervention iv;
  iv.kind = InterventionKind::force;
  iv.site = parse_site(e.at("site").as_string());
  CB_CHECK(iv.site.is_codebook_site(), iv.site.site() << " is an activation without a codebook");
  if (const Json* p = e.find("positions"); p && !(p->is_string() && p->as_string() == "*"))
    iv.positions = int_list(*p, "positions");
  const Json* codes = e.find("codes");
  const Json* state = e.find("state_of");
  CB_CHECK(bool(codes) != bool(state), "give either \"codes\" or \"state_of\"");
  if (codes) iv.values = int_list(*codes, "codes");
  if (state) iv.state_of = int_list(*state, "state_of");
  if (const Json* s = e.find("slot")) {
    iv.has_slot = true;
    iv.slot = s->as_int();
  }
  return iv;
}

}  // namespace

std::vector<Intervention> read_force_file(const std::string& path) {
  Json doc = json_read_file(path);
  const Json* list = doc.find("force");
  CB_CHECK(list && list->is_array(), "--force-file " << path << ": expected {\"force\": [entries...]}");
  std::vector<Intervention> out;
  for (size_t i = 0; i < list->size(); ++i) {
    try {
      out.push_back(force_entry(list->at(i)));
    } catch (const Error& e) {
      CB_FAIL("--force-file " << path << ": entry " << i << ": " << e.what());
    }
  }
  return out;
}

void resolve_state_of(InterventionSet& iv, const std::string& model_path, const std::string& backend, int threads) {
  std::map<std::vector<int64_t>, std::vector<std::string>> sites_of_tokens;
  for (const Intervention& it : iv.items)
    if (!it.state_of.empty()) sites_of_tokens[it.state_of].push_back(it.site.site());
  if (sites_of_tokens.empty()) return;
  // One run of the model without interventions per token list, tapping the ids.
  std::map<std::pair<std::vector<int64_t>, std::string>, Tensor> ids_at;
  auto be = make_backend(backend);
  CompileOptions co;
  co.num_threads = threads;
  for (auto& [tokens, sites] : sites_of_tokens) {
    std::shared_ptr<Graph> g = load_model(model_path).graph;
    int64_t layers = num_layers_of(*g);
    InterventionSet taps;
    std::vector<std::string> names;
    for (const std::string& s : sites) {
      names.push_back(parse_site(s, layers).site());
      CB_CHECK(find_codebook_node(*g, names.back()), "--force " << s << ":state-of: the site has no codebook");
      taps.taps.push_back(names.back());
    }
    apply_interventions(*g, taps);
    std::map<std::string, Tensor> inputs = lm_inputs(*g, tokens, 1, int64_t(tokens.size()));
    complete_lm_inputs(*g, inputs);
    auto exe = Executable::compile(g, *be, co);
    std::vector<Tensor> outs = exe->run(inputs);
    std::vector<std::string> out_names = exe->output_names();
    for (size_t i = 0; i < sites.size(); ++i)
      for (size_t o = 0; o < out_names.size(); ++o)
        if (out_names[o] == names[i] + ".ids") ids_at[{tokens, sites[i]}] = outs[o];
  }
  std::vector<Intervention> items;
  for (const Intervention& it : iv.items) {
    if (it.state_of.empty()) {
      items.push_back(it);
      continue;
    }
    const Tensor& ids = ids_at.at({it.state_of, it.site.site()});  // [1, T, G, k]
    int64_t T = ids.dim(1), G = ids.dim(2), k = ids.dim(3);
    CB_CHECK(it.site.group == kAll || (it.site.group >= 0 && it.site.group < G),
             "--force " << it.site.name() << ":state-of: member " << it.site.group << " out of range [0, " << G << ")");
    for (int64_t g = 0; g < G; ++g) {
      if (it.site.group != kAll && it.site.group != g) continue;
      Intervention one = it;
      one.state_of.clear();
      if (G > 1) one.site.group = g;
      const int64_t* p = ids.data<int64_t>() + ((T - 1) * G + g) * k;
      one.values.assign(p, p + k);
      items.push_back(one);
    }
  }
  iv.items = items;
}

}  // namespace cb::tools
