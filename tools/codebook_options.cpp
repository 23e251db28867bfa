#include "tools/codebook_options.h"

#include "passes/pass_registry.h"
#include "support/error.h"

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
      "SITE:CODES[@POSITIONS|@*][#SLOT]: force codes into slots, e.g. layer0.mlp:123@3#0 (repeatable)")(
      "tap", many(), "SITE: expose SITE.input/.ids/.scores/.output as outputs (repeatable)");
}

InterventionSet interventions_from_options(const po::variables_map& vm) {
  PassOptions o;
  for (const char* name : {"ablate", "disable-topk", "disable-slot", "force", "tap"})
    if (vm.count(name))
      for (const std::string& v : vm[name].as<std::vector<std::string>>()) o.add(name, v);
  o.add("ablate-mode", vm["ablate-mode"].as<std::string>());
  return interventions_from_pass_options(o);
}

}  // namespace cb::tools
