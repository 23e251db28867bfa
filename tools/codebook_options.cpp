#include "tools/codebook_options.h"

#include <algorithm>
#include <sstream>

#include "ir/codebook.h"
#include "passes/pass_registry.h"
#include "support/error.h"
#include "tools/forced_codes.h"

namespace po = boost::program_options;

namespace cb::tools {

// The insertion config from the compile options (parsed as the
// insert-codebooks pass options: passes/pass_registry.h).
CodebookConfig codebook_config_from_options(const po::variables_map& vm) {
  PassOptions o;
  for (const char* name : {"at", "codes", "k", "groups", "layers", "metric"}) o.add(name, vm[name].as<std::string>());
  o.add("seed", std::to_string(vm["seed"].as<int64_t>()));
  return codebook_config_from_pass_options(o);
}

void add_codebook_options(po::options_description& opts) {
  opts.add_options()(
      "at", po::value<std::string>()->default_value("mlp"),
      "placements, comma-separated: attn_preproj, attn, mlp, mlp_mid, qkv, transformer_block, attn_plus_mlp")(
      "layers", po::value<std::string>()->default_value("all"), "all, or layer indices like 0,2,-1")(
      "codes", po::value<std::string>()->default_value("1000"), "codes per codebook (one, or one per placement)")(
      "k,k", po::value<std::string>()->default_value("8"), "codes selected per token (one, or one per placement)")(
      "groups", po::value<std::string>()->default_value("1"),
      "codebooks per site: N, or 'heads' for one per attention head (one, or one per placement)")(
      "metric", po::value<std::string>()->default_value("inner_product"), "inner_product | euclidean")(
      "seed", po::value<int64_t>()->default_value(0), "seed of the codebooks' N(0,1) initialisation");
}

void add_intervention_options(po::options_description& opts) {
  auto many = [] { return po::value<std::vector<std::string>>()->composing(); };
  opts.add_options()("ablate", many(), "SITE:CODES[@POSITIONS]: ablate codes, e.g. layer0.mlp:12,40@0,1 (repeatable)")(
      "ablate-mode", po::value<std::string>()->default_value("skip"),
      "skip: ablated codes give way to the next best; zero: their slots become -1 and add nothing")(
      "disable-topk", many(), "SITE:M[@POSITIONS]: ablate the M best codes (repeatable)")(
      "disable-slot", many(), "SITE:SLOTS: zero these slots at every position (repeatable)")(
      "force", many(),
      "SITE:CODES[@POSITIONS|@*][#SLOT]: force codes into slots, e.g. layer0.mlp:123@3#0; CODES may be "
      "state-of:TOKENS, the codes SITE selects at the last of TOKENS (repeatable)")(
      "force-file", many(),
      "FILE.json: forces listed in a file, {\"force\": [{\"site\", \"positions\", \"codes\"}...]}")(
      "tap", many(),
      "SITE[,SITE...]: expose SITE.input/.ids/.scores/.output as outputs; layerL.input, layerL.resid_mid, "
      "layerL.attn_pattern as themselves (repeatable)");
}

InterventionSet interventions_from_options(const po::variables_map& vm) {
  PassOptions o;
  for (const char* name : {"ablate", "disable-topk", "disable-slot", "force", "tap"})
    if (vm.count(name))
      for (const std::string& v : vm[name].as<std::vector<std::string>>()) o.add(name, v);
  o.add("ablate-mode", vm["ablate-mode"].as<std::string>());
  InterventionSet iv = interventions_from_pass_options(o);
  if (vm.count("force-file"))
    for (const std::string& path : vm["force-file"].as<std::vector<std::string>>())
      for (Intervention& it : read_force_file(path)) iv.items.push_back(it);
  return iv;
}

std::vector<SiteRef> shown_sites(Graph& g, const std::vector<std::string>& values) {
  std::vector<SiteRef> out;
  int64_t layers = -1;
  for (const std::string& value : values) {
    std::stringstream items(value);
    std::string text;
    while (std::getline(items, text, ',')) {
      if (text == "all") {
        std::vector<Node*> nodes = codebook_nodes(g);
        CB_CHECK(!nodes.empty(), "--show-codes all: the model has no codebooks (compile it first)");
        for (Node* n : nodes) out.push_back(parse_site(n->attr_string("site", n->name)));
        continue;
      }
      if (layers < 0) layers = num_layers_of(g);
      SiteRef s;
      try {
        s = parse_site(text, layers);
      } catch (const Error& e) {
        CB_FAIL("--show-codes: " << e.what());
      }
      CB_CHECK(s.is_codebook_site(),
               "--show-codes " << text << ": " << s.site() << " is an activation without codes; use --tap " << text);
      Node* n = find_codebook_node(g, s.site());
      CB_CHECK(n, "--show-codes " << text << ": " << s.site() << " has no codebook (compile the model with --at "
                                  << placement_name(s.placement) << " first)");
      int64_t G = n->inputs[1]->type.shape.dims[0].value;
      CB_CHECK(s.group == kAll || (s.group >= 0 && s.group < G),
               "--show-codes " << text << ": member " << s.group << " out of range; " << s.site() << " has " << G
                               << (G == 1 ? " codebook" : " codebooks"));
      out.push_back(s);
    }
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> shown_codes(const std::vector<SiteRef>& sites,
                                                        const std::vector<std::string>& names,
                                                        const std::vector<Tensor>& outs) {
  std::vector<std::pair<std::string, Tensor>> result;
  for (const SiteRef& s : sites) {
    size_t i = size_t(std::find(names.begin(), names.end(), s.site() + ".ids") - names.begin());
    CB_CHECK(i < outs.size(), "--show-codes " << s.name() << ": no ids output");
    const Tensor& ids = outs[i];
    if (s.group == kAll) {
      result.push_back({s.name(), ids});
      continue;
    }
    int64_t B = ids.dim(0), T = ids.dim(1), G = ids.dim(2), k = ids.dim(3);
    Tensor member = Tensor::empty(DType::i64, {B, T, 1, k});
    for (int64_t bt = 0; bt < B * T; ++bt)
      std::copy_n(ids.data<int64_t>() + (bt * G + s.group) * k, k, member.data<int64_t>() + bt * k);
    result.push_back({s.name(), member});
  }
  return result;
}

}  // namespace cb::tools
