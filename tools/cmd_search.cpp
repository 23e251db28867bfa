// codebook search CACHE REGEX: the codes that fire on the tokens a regex picks
// out of a code cache's text (tools/cache/code_search.h; docs/cache.md
// "Search"), optionally beside the best single MLP neuron at the same recall
// (--neurons; tools/cache/neuron_baseline.h).
#include <boost/program_options.hpp>
#include <cstdio>
#include <iomanip>
#include <iostream>

#include "support/error.h"
#include "support/json.h"
#include "tools/cache/code_cache.h"
#include "tools/cache/code_search.h"
#include "tools/cache/neuron_baseline.h"
#include "tools/command.h"
#include "tools/option_checks.h"
#include "tools/options.h"

namespace po = boost::program_options;

namespace cb::tools {

int cmd_search(int argc, char** argv) {
  po::options_description opts("usage: codebook search CACHE REGEX [options]\n\noptions");
  opts.add_options()("site", po::value<std::string>(),
                     "search one site (layer0.mlp) or member (layer1.attn_preproj[2])")(
      "top", po::value<int64_t>()->default_value(8)->notifier(must_be_non_negative("--top")),
      "codes kept per codebook (by precision) before the threshold")(
      "min-precision", po::value<double>()->default_value(0.5)->notifier(must_be_in_range(0.0, 1.0, "--min-precision")),
      "keep codes with at least this precision")("sort", po::value<std::string>()->default_value("precision"),
                                                 "precision | recall | acts")(
      "topk-slots", po::value<int64_t>()->default_value(0)->notifier(must_be_non_negative("--topk-slots")),
      "count a code only in its first k slots (default: all)")(
      "parity", po::value<std::string>(), "odd | even: keep matches whose group starts at an odd/even byte offset")(
      "neurons", "also the best single MLP neuron at each code's recall (runs the cache's model)")(
      "threads", po::value<int>()->default_value(0)->notifier(must_be_thread_count("--threads", true)),
      "threads (default: all cores)")("json", "print one JSON object");
  po::variables_map vm;
  if (!parse_command_line_list(argc, argv, opts, "args", "CACHE REGEX", vm,
                               "\nEvery non-overlapping match of REGEX (RE2 syntax) in every document of the cache\n"
                               "picks one token: the one holding the first byte of capture group 1 (of the\n"
                               "whole match when the pattern has no group), e.g. 'New (York)'. For every\n"
                               "codebook, recall = matched tokens a code fires on / matched tokens (kept if\n"
                               "> 0.01), precision = those / the code's activations; the --top most precise\n"
                               "codes per codebook with precision >= --min-precision are listed.\n"))
    return 0;
  std::vector<std::string> args =
      vm.count("args") ? vm["args"].as<std::vector<std::string>>() : std::vector<std::string>{};
  if (args.size() != 2) throw po::error("expected CACHE REGEX (got " + std::to_string(args.size()) + " arguments)");
  cache::SearchOptions o;
  if (vm.count("site")) o.site = vm["site"].as<std::string>();
  o.top = vm["top"].as<int64_t>();
  o.min_precision = vm["min-precision"].as<double>();
  o.sort = cache::parse_search_sort(vm["sort"].as<std::string>());
  o.topk_slots = vm["topk-slots"].as<int64_t>();
  o.threads = vm["threads"].as<int>();
  if (vm.count("parity")) {
    std::string p = vm["parity"].as<std::string>();
    CB_CHECK(p == "odd" || p == "even", "--parity '" << p << "': expected odd or even");
    o.parity = p == "odd" ? 1 : 0;
  }
  bool json = vm.count("json") > 0;

  cache::CodeCache c = cache::CodeCache::open(args[0]);
  cache::SearchResult r = cache::search(c, args[1], o);
  std::vector<cache::NeuronMatch> neurons;
  double beat = 0;
  if (vm.count("neurons") && !r.codes.empty()) {
    if (!json)
      std::cerr << "neuron baseline: running " << c.manifest().model.at("file").as_string() << " over the cache's "
                << c.manifest().rows << " rows, twice\n";
    std::vector<int64_t> targets;  // ⌊recall·m⌋ = the code's hits
    for (auto& cm : r.codes) targets.push_back(cm.hits);
    neurons = cache::best_neurons(c, r.positions, targets, o.threads);
    int64_t wins = 0;
    for (size_t i = 0; i < r.codes.size(); ++i) wins += r.codes[i].precision > neurons[i].precision;
    beat = double(wins) / double(r.codes.size());
  }

  if (json) {
    Json j = Json::Object{};
    j["matches"] = int64_t(r.positions.size());
    Json::Array codes;
    for (size_t i = 0; i < r.codes.size(); ++i) {
      const cache::CodeMatch& cm = r.codes[i];
      Json e = cm.to_json();
      if (!neurons.empty()) {
        e["neuron"]["layer"] = neurons[i].layer;
        e["neuron"]["unit"] = neurons[i].unit;
        e["neuron"]["precision"] = neurons[i].precision;
      }
      codes.push_back(std::move(e));
    }
    j["codes"] = Json(std::move(codes));
    if (!neurons.empty()) j["codes_beating_neurons"] = beat;
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::cout << r.positions.size() << " matches\n";
  if (r.codes.empty()) {
    std::cout << "no code with recall > 0.01 and precision >= " << o.min_precision << "\n";
    return 0;
  }
  std::cout << std::left << std::setw(28) << "site" << std::right << std::setw(7) << "code" << std::setw(11)
            << "precision" << std::setw(9) << "recall" << std::setw(13) << "activations";
  if (!neurons.empty()) std::cout << "   best neuron (layer.unit: precision)";
  std::cout << "\n" << std::fixed;
  for (size_t i = 0; i < r.codes.size(); ++i) {
    const cache::CodeMatch& cm = r.codes[i];
    std::cout << std::left << std::setw(28) << cm.member_name() << std::right << std::setw(7) << cm.code
              << std::setprecision(3) << std::setw(11) << cm.precision << std::setw(9) << cm.recall << std::setw(13)
              << cm.activations;
    if (!neurons.empty())
      std::cout << "   layer" << neurons[i].layer << "." << neurons[i].unit << ": " << neurons[i].precision;
    std::cout << "\n";
  }
  if (!neurons.empty())
    std::cout << std::setprecision(2) << "codes more precise than their best neuron: " << beat * 100 << "%\n";
  return 0;
}

}  // namespace cb::tools
