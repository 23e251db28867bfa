// codebook run MODEL: run a model on .npy inputs or token ids and write its outputs.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "frontend/npy.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/codebook_options.h"
#include "tools/command.h"
#include "tools/forced_codes.h"
#include "tools/intervention_checks.h"
#include "tools/model_io.h"
#include "tools/next_token.h"
#include "tools/options.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

struct TokenProb {
  int64_t token;
  double p;
};

std::vector<TokenProb> top_next(const Tensor& logits, int k) {
  std::vector<double> p = next_token_probs(logits, 0);
  std::vector<TokenProb> out;
  for (int64_t t : top_tokens(p, k)) out.push_back({t, p[size_t(t)]});
  return out;
}

void print_top(const std::string& what, const std::vector<TokenProb>& top) {
  std::cout << "top " << top.size() << " next tokens" << what << ":\n";
  for (auto& t : top)
    std::cout << "  " << std::setw(8) << t.token << "  p " << std::fixed << std::setprecision(4) << t.p << "\n";
}

std::string json_top(const std::vector<TokenProb>& top) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < top.size(); ++i)
    o << (i ? ", " : "") << "{\"token\": " << top[i].token << ", \"p\": " << std::setprecision(6) << top[i].p << "}";
  return o.str() + "]";
}

// ids [batch, seq, G, k] of row 0 as text lines, or as a JSON list [seq][G][k].
void print_codes(const std::string& site, const Tensor& ids, const std::vector<int64_t>& tokens) {
  int64_t T = ids.dim(1), G = ids.dim(2), k = ids.dim(3);
  std::cout << "codes at " << site << " (" << G << (G == 1 ? " codebook" : " codebooks") << ", k = " << k << "):\n";
  for (int64_t t = 0; t < T; ++t) {
    std::cout << "  pos " << std::setw(3) << t;
    if (t < int64_t(tokens.size())) std::cout << "  token " << std::setw(6) << tokens[size_t(t)];
    for (int64_t g = 0; g < G; ++g) {
      std::cout << (G > 1 ? "  [" + std::to_string(g) + "]" : " ");
      for (int64_t j = 0; j < k; ++j) std::cout << " " << ids.data<int64_t>()[(t * G + g) * k + j];
    }
    std::cout << "\n";
  }
}

std::string json_codes(const Tensor& ids) {
  int64_t T = ids.dim(1), G = ids.dim(2), k = ids.dim(3);
  std::ostringstream o;
  o << "[";
  for (int64_t t = 0; t < T; ++t) {
    o << (t ? ", [" : "[");
    for (int64_t g = 0; g < G; ++g) {
      o << (g ? ", [" : "[");
      for (int64_t j = 0; j < k; ++j) o << (j ? ", " : "") << ids.data<int64_t>()[(t * G + g) * k + j];
      o << "]";
    }
    o << "]";
  }
  return o.str() + "]";
}

}  // namespace

int cmd_run(int argc, char** argv) {
  po::options_description opts("usage: codebook run MODEL [options]\n\noptions");
  opts.add_options()(
      "input,i", po::value<std::vector<std::string>>()->composing(),
      "NAME=FILE.npy (repeatable); with input_ids given, a missing attention_mask or position_ids is filled in")(
      "tokens,t", po::value<std::string>(),
      "comma-separated token ids for input_ids (batch 1); fills attention_mask and position_ids")(
      "output-dir,o", po::value<std::string>(), "write every output as DIR/<name>.npy")(
      "backend,b", po::value<std::string>()->default_value("cpu"), "reference | cpu")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores)")(
      "top", po::value<int>()->default_value(5), "how many next tokens to show with --tokens")(
      "show-codes", po::value<std::vector<std::string>>()->composing(),
      "SITE[,SITE...] or all: print the code ids chosen at each position (repeatable)")(
      "compare", "also run without interventions; show both next-token lists and their Jensen-Shannon divergence")(
      "json", "print the next tokens, codes and divergence as one JSON object");
  add_intervention_options(opts);
  add_pass_options(opts);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "ONNX model file", vm)) return 0;
  CB_CHECK(vm.count("input") || vm.count("tokens"), "give the model's inputs with --input NAME=FILE.npy or --tokens");
  set_num_threads(vm["threads"].as<int>());
  PassOptionsScope pass_options(vm);

  std::string model_path = vm["model"].as<std::string>();
  LoadedModel m = load_model(model_path);
  InterventionSet iv = interventions_from_options(vm);
  resolve_state_of(iv, model_path, vm["backend"].as<std::string>(), vm["threads"].as<int>());
  std::vector<SiteRef> show = shown_sites(
      *m.graph, vm.count("show-codes") ? vm["show-codes"].as<std::vector<std::string>>() : std::vector<std::string>{});
  for (auto& site : show) iv.taps.push_back(site.site());
  InterventionsPass interventions(iv);
  PassManager().run(interventions, *m.graph);
  const Graph& g = *m.graph;

  std::map<std::string, Tensor> inputs;
  std::vector<int64_t> tokens;
  if (vm.count("tokens")) {
    tokens = parse_token_list(vm["tokens"].as<std::string>());
    inputs = lm_inputs(g, tokens, 1, int64_t(tokens.size()));
  }
  if (vm.count("input")) {
    for (const std::string& spec : vm["input"].as<std::vector<std::string>>()) {
      size_t eq = spec.find('=');
      CB_CHECK(eq != std::string::npos && eq > 0, "--input '" << spec << "': expected NAME=FILE.npy");
      inputs[spec.substr(0, eq)] = npy_read(spec.substr(eq + 1));
    }
  }
  complete_lm_inputs(g, inputs);
  auto backend = make_backend(vm["backend"].as<std::string>());
  CompileOptions copts;
  copts.num_threads = vm["threads"].as<int>();
  auto run = [&](std::shared_ptr<Graph> graph, std::vector<std::string>& names) {
    auto exe = Executable::compile(graph, *backend, copts);
    names = exe->output_names();
    return exe->run(inputs);
  };
  std::vector<std::string> names;
  std::vector<Tensor> outs = run(m.graph, names);
  auto output = [&](const std::vector<std::string>& ns, const std::vector<Tensor>& ts, const std::string& name) {
    for (size_t i = 0; i < ns.size(); ++i)
      if (ns[i] == name) return &ts[i];
    return (const Tensor*)nullptr;
  };
  // The logits: the output named so, or the only rank-3 float output.
  auto logits_of = [&](const std::vector<std::string>& ns, const std::vector<Tensor>& ts) -> const Tensor* {
    if (const Tensor* t = output(ns, ts, "logits")) return t;
    return ts.size() >= 1 && ts[0].rank() == 3 && dtype_is_float(ts[0].dtype()) ? &ts[0] : nullptr;
  };
  const Tensor* logits = logits_of(names, outs);
  // The code ids of each --show-codes site (checked before anything is printed).
  std::vector<std::pair<std::string, Tensor>> shown_ids = shown_codes(show, names, outs);
  std::vector<std::pair<std::string, const Tensor*>> shown;
  for (auto& [site, ids] : shown_ids) shown.push_back({site, &ids});

  // The clean run for --compare: the same model without interventions.
  std::vector<std::string> clean_names;
  std::vector<Tensor> clean_outs;
  const Tensor* clean_logits = nullptr;
  if (vm.count("compare")) CB_CHECK(logits, "--compare needs a model with a logits output");
  if (vm.count("compare") || needs_clean_ids(iv)) {  // the checks below read its ids
    std::shared_ptr<Graph> clean = load_model(model_path).graph;
    tap_intervened_sites(*clean, iv);
    clean_outs = run(clean, clean_names);
    if (vm.count("compare")) clean_logits = logits_of(clean_names, clean_outs);
  }
  std::map<std::string, const Tensor*> clean_by_name;
  for (size_t i = 0; i < clean_names.size(); ++i) clean_by_name[clean_names[i]] = &clean_outs[i];
  if (!iv.items.empty())
    warn_ineffective_interventions(iv, num_layers_of(*m.graph),
                                   inputs.count("input_ids") ? inputs.at("input_ids").dim(1) : -1, clean_by_name,
                                   std::cerr);

  if (vm.count("output-dir")) {
    std::string dir = vm["output-dir"].as<std::string>();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    CB_CHECK(!ec, "cannot create output directory '" << dir << "': " << ec.message());
    for (size_t i = 0; i < outs.size(); ++i) {
      std::string path = dir + "/" + file_safe(names[i]) + ".npy";
      npy_write(path, outs[i]);
      if (!vm.count("json"))
        std::cout << "wrote " << path << " (" << dtype_name(outs[i].dtype()) << dims_str(outs[i].dims()) << ")\n";
    }
  }

  int top = vm["top"].as<int>();
  bool want_next = logits && (vm.count("tokens") || vm.count("compare"));
  if (vm.count("json")) {
    std::ostringstream o;
    o << "{\"tokens\": [";
    for (size_t i = 0; i < tokens.size(); ++i) o << (i ? ", " : "") << tokens[i];
    o << "]";
    if (want_next) o << ", \"next\": " << json_top(top_next(*logits, top));
    if (clean_logits) {
      o << ", \"clean_next\": " << json_top(top_next(*clean_logits, top));
      o << ", \"jsd\": " << std::setprecision(9) << jensen_shannon_batchmean(*clean_logits, *logits);
    }
    o << ", \"codes\": {";
    for (size_t i = 0; i < shown.size(); ++i)
      o << (i ? ", " : "") << "\"" << shown[i].first << "\": " << json_codes(*shown[i].second);
    std::cout << o.str() << "}}\n";
    return 0;
  }
  for (auto& [site, ids] : shown) print_codes(site, *ids, tokens);
  if (want_next) {
    if (clean_logits) {
      print_top(" without interventions", top_next(*clean_logits, top));
      print_top(" with interventions", top_next(*logits, top));
      std::cout << "Jensen-Shannon divergence at the last position: " << std::setprecision(6)
                << jensen_shannon_batchmean(*clean_logits, *logits) << "\n";
    } else {
      print_top("", top_next(*logits, top));
    }
  }
  if (!vm.count("output-dir") && !want_next && show.empty())
    for (size_t i = 0; i < outs.size(); ++i) std::cout << names[i] << ": " << outs[i].str() << "\n";
  return 0;
}

}  // namespace cb::tools
