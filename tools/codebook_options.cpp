#include "tools/codebook_options.h"

#include <sstream>

#include "support/error.h"
#include "passes/codebook_sites.h"

namespace po = boost::program_options;

namespace cb::tools {

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

}  // namespace

// The insertion config from the compile options.
CodebookConfig codebook_config_from_options(const po::variables_map& vm) {
  CodebookConfig cfg;
  std::vector<std::string> at = split_list(vm["at"].as<std::string>());
  CB_CHECK(!at.empty(), "--at: no placement given");
  auto codes = per_placement(vm["codes"].as<std::string>(), at.size(), "--codes");
  auto ks = per_placement(vm["k"].as<std::string>(), at.size(), "-k");
  auto groups = per_placement(vm["groups"].as<std::string>(), at.size(), "--groups");
  for (size_t i = 0; i < at.size(); ++i) {
    PlacementConfig pc;
    pc.placement = parse_placement(at[i]);
    pc.num_codes = parse_int(codes[i], "--codes");
    pc.k = parse_int(ks[i], "-k");
    pc.groups = groups[i] == "heads" ? kGroupsPerHead : parse_int(groups[i], "--groups");
    CB_CHECK(pc.groups == kGroupsPerHead || pc.groups >= 1, "--groups must be 'heads' or at least 1");
    cfg.placements.push_back(pc);
  }
  std::string layers = vm["layers"].as<std::string>();
  if (layers != "all")
    for (auto& l : split_list(layers)) cfg.layers.push_back(parse_int(l, "--layers"));
  cfg.metric = parse_metric(vm["metric"].as<std::string>());
  cfg.seed = uint64_t(vm["seed"].as<int64_t>());
  return cfg;
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
  opts.add_options()(
      "ablate", many(), "SITE:CODES[@POSITIONS]: ablate codes, e.g. layer0.mlp:12,40@0,1 (repeatable)")(
      "ablate-mode", po::value<std::string>()->default_value("skip"),
      "skip: ablated codes give way to the next best; zero: their slots become -1 and add nothing")(
      "disable-topk", many(), "SITE:M[@POSITIONS]: ablate the M best codes (repeatable)")(
      "disable-slot", many(), "SITE:SLOTS: zero these slots at every position (repeatable)")(
      "force", many(), "SITE:CODES[@POSITIONS|@*][#SLOT]: force codes into slots, e.g. layer0.mlp:123@3#0 (repeatable)")(
      "tap", many(), "SITE: expose SITE.input/.ids/.scores/.output as outputs (repeatable)");
}

InterventionSet interventions_from_options(const po::variables_map& vm) {
  InterventionSet iv;
  auto each = [&](const char* opt, InterventionKind kind) {
    if (!vm.count(opt)) return;
    for (const std::string& t : vm[opt].as<std::vector<std::string>>()) iv.items.push_back(parse_intervention(kind, t));
  };
  each("ablate", InterventionKind::ablate);
  each("disable-topk", InterventionKind::disable_topk);
  each("disable-slot", InterventionKind::disable_slot);
  each("force", InterventionKind::force);
  if (vm.count("tap")) iv.taps = vm["tap"].as<std::vector<std::string>>();
  std::string mode = vm["ablate-mode"].as<std::string>();
  CB_CHECK(mode == "skip" || mode == "zero", "--ablate-mode '" << mode << "': expected skip or zero");
  iv.zero_ablation = mode == "zero";
  return iv;
}

}  // namespace cb::tools
