// codebook run MODEL: run a model on .npy inputs, token ids or text, and show
// or write its outputs.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "frontend/npy.h"
#include "passes/inference_pipeline.h"
#include "passes/last_position_logits.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/code_scores.h"
#include "tools/codebook_options.h"
#include "tools/command.h"
#include "tools/device_option.h"
#include "tools/forced_codes.h"
#include "tools/intervention_checks.h"
#include "tools/model_io.h"
#include "tools/next_token.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/precision_option.h"
#include "tools/text_io.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

// Token strings when a tokenizer is known; ids alone otherwise.
struct Strings {
  const TokenText* text = nullptr;
  std::string shown(int64_t id) const { return text ? text->shown(id) : ""; }
  std::string json(int64_t id) const { return text ? text->json(id) : "null"; }
};

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

// Probabilities to 4 significant digits, so the small ones of a 50k vocabulary are not all 0.0000.
void print_top(const std::string& what, const std::vector<TokenProb>& top, const Strings& s) {
  std::cout << "top " << top.size() << " next tokens" << what << ": (p to 4 significant digits)\n";
  for (auto& t : top) {
    std::ostringstream p;
    p << std::setprecision(4) << t.p;
    std::cout << "  " << std::setw(8) << t.token << "  p ";
    if (s.text)
      std::cout << std::left << std::setw(10) << p.str() << std::right << "  " << s.shown(t.token) << "\n";
    else
      std::cout << p.str() << "\n";
  }
}

std::string json_top(const std::vector<TokenProb>& top, const Strings& s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < top.size(); ++i)
    o << (i ? ", " : "") << "{\"token\": " << top[i].token << ", \"text\": " << s.json(top[i].token)
      << ", \"p\": " << std::setprecision(6) << top[i].p << "}";
  return o.str() + "]";
}

// The codes of one position: "12 40", or "[0] 1 2  [1] 3 4" for a group;
// with `sc`, each code's score (and cosine) beside it.
std::string codes_at(const Tensor& ids, int64_t t, const CodeScores* sc = nullptr) {
  int64_t G = ids.dim(2), k = ids.dim(3);
  std::ostringstream o;
  for (int64_t g = 0; g < G; ++g) {
    if (G > 1) o << (g ? "  [" : "[") << g << "]";
    for (int64_t j = 0; j < k; ++j) {
      o << (G > 1 || j ? " " : "") << ids.data<int64_t>()[(t * G + g) * k + j];
      if (sc) o << " " << score_text(*sc, t, g, j);
    }
  }
  return o.str();
}

// ids [batch, seq, G, k] of row 0 as text lines; with `clean`, the codes
// without interventions first, then the intervened ones, '*' where they differ;
// with `sc`, the scores of `ids` (the intervened run's) beside them.
void print_codes(const std::string& site, const Tensor& ids, const Tensor* clean, const std::vector<int64_t>& tokens,
                 const Strings& s, const CodeScores* sc) {
  int64_t T = ids.dim(1), G = ids.dim(2), k = ids.dim(3);
  std::cout << "codes at " << site << " (" << G << (G == 1 ? " codebook" : " codebooks") << ", k = " << k << ")"
            << (clean ? ", without | with interventions" : "") << ":\n";
  if (sc) std::cout << "  " << scores_label(*sc) << (clean ? "; scores of the run with interventions" : "") << "\n";
  std::vector<std::string> shown;
  size_t width = 0;
  for (int64_t t = 0; t < T && t < int64_t(tokens.size()); ++t) {
    shown.push_back(s.shown(tokens[size_t(t)]));
    width = std::max(width, shown.back().size());
  }
  for (int64_t t = 0; t < T; ++t) {
    std::cout << "  pos " << std::setw(3) << t;
    if (t < int64_t(tokens.size())) {
      std::cout << "  token " << std::setw(6) << tokens[size_t(t)];
      if (s.text) std::cout << " " << std::left << std::setw(int(width)) << shown[size_t(t)] << std::right;
    }
    std::string now = codes_at(ids, t, sc);
    if (clean) {
      std::string before = codes_at(*clean, t);
      std::cout << "  " << before << " | " << now << (before != codes_at(ids, t) ? "  *" : "") << "\n";
    } else {
      std::cout << "  " << now << "\n";
    }
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

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The graph's output names.
std::vector<std::string> output_names(const Graph& g) {
  std::vector<std::string> out;
  for (const Value* v : g.outputs) out.push_back(v->name);
  return out;
}

}  // namespace

int cmd_run(int argc, char** argv) {
  po::options_description opts("usage: codebook run MODEL [options]\n\noptions");
  opts.add_options()(
      "input,i", po::value<std::vector<std::string>>()->composing(),
      "NAME=FILE.npy (repeatable); with input_ids given, a missing attention_mask or position_ids is filled in")(
      "tokens,t", po::value<std::string>(),
      "comma-separated token ids for input_ids (batch 1); fills attention_mask and position_ids")(
      "prompt,p", po::value<std::string>(),
      "TEXT: like --tokens, tokenised by the model's tokenizer (TokFSM: <|endoftext|> then one token per digit)")(
      "tokenizer", po::value<std::string>(),
      "DIR (GPT-2 BPE: tokenizer.json or vocab.json + merges.txt) or tokfsm[:BASE]; default: the one the model "
      "or its training run records")(
      "output-dir,o", po::value<std::string>(),
      "write outputs as DIR/<name>.npy: those of --outputs, else the --tap outputs, else all")(
      "outputs", po::value<std::string>(), "NAME,NAME,...: the outputs to write or print (e.g. logits,layer0.mlp.ids)")(
      "backend,b", po::value<std::string>()->default_value("cpu"), "reference | cpu")(
      "device", po::value<std::string>()->default_value("cpu"),
      "cpu | cuda: the nodes the GPU supports run there, the rest on --backend (docs/cuda.md)")(
      "threads", po::value<int>()->default_value(0)->notifier(must_be_thread_count("--threads", true)),
      "threads (0 = all cores)")("top", po::value<int>()->default_value(5)->notifier(must_be_positive("--top")),
                                 "how many next tokens to show with --tokens or --prompt")(
      "show-codes", po::value<std::vector<std::string>>()->composing(),
      "SITE[,SITE...] or all: print the code ids chosen at each position (repeatable)")(
      "scores",
      "with --show-codes: each code's score beside it (u·C/‖C‖, u the LayerNorm'd input) and its cosine "
      "similarity (inner_product sites)")(
      "compare",
      "also run without interventions; show both next-token lists, the codes of --show-codes side by side, and "
      "their Jensen-Shannon divergence in bits")(
      "json", "print the tokens, next tokens, codes and divergence as one JSON object");
  add_precision_option(opts);
  add_intervention_options(opts);
  add_pass_options(opts);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "ONNX model file, or a `codebook train` run or checkpoint folder",
                          vm))
    return 0;
  CB_CHECK(vm.count("input") || vm.count("tokens") || vm.count("prompt"),
           "give the model's inputs with --input NAME=FILE.npy, --tokens or --prompt");
  CB_CHECK(!(vm.count("tokens") && vm.count("prompt")), "give --tokens or --prompt, not both");
  CB_CHECK(!vm.count("scores") || vm.count("show-codes"), "--scores: give the sites with --show-codes SITE");
  set_num_threads(vm["threads"].as<int>());
  PassOptionsScope pass_options(vm);

  const std::string model_arg = vm["model"].as<std::string>();
  const std::string model_path = resolve_model_path(model_arg);
  LoadedModel m = load_model(model_path);
  const Precision precision =
      precision_option(vm, *m.graph, vm["backend"].as<std::string>(), vm["device"].as<std::string>());

  // The tokenizer: needed for --prompt; otherwise only to show token strings.
  std::optional<TokenText> text;
  {
    std::optional<std::string> spec = model_tokenizer(
        vm.count("tokenizer") ? std::optional<std::string>(vm["tokenizer"].as<std::string>()) : std::nullopt, model_arg,
        m.graph->metadata);
    if (vm.count("prompt")) {
      CB_CHECK(spec, "--prompt: " << model_arg
                                  << " records no tokenizer; give --tokenizer DIR (e.g. ../shared/data/gpt2-bpe) or "
                                     "--tokenizer tokfsm, or use --tokens");
      text = TokenText::load(*spec);
    } else if (spec) {
      try {
        text = TokenText::load(*spec);
      } catch (const Error& e) {
        if (vm.count("tokenizer")) throw;
        std::cerr << "note: token strings not shown: " << e.what() << "\n";
      }
    }
  }
  Strings strings{text ? &*text : nullptr};

  // Interventions and --tap first, so their outputs are known, then the taps of --show-codes.
  const std::vector<std::string> model_outputs = output_names(*m.graph);
  InterventionSet iv = interventions_from_options(vm);
  resolve_state_of(iv, model_path, vm["backend"].as<std::string>(), vm["threads"].as<int>());
  InterventionsPass interventions(iv);
  PassManager().run(interventions, *m.graph);
  std::vector<std::string> tap_outputs;
  for (const std::string& n : output_names(*m.graph))
    if (std::find(model_outputs.begin(), model_outputs.end(), n) == model_outputs.end()) tap_outputs.push_back(n);
  std::vector<SiteRef> show = shown_sites(
      *m.graph, vm.count("show-codes") ? vm["show-codes"].as<std::vector<std::string>>() : std::vector<std::string>{});
  // The taps of --show-codes (tapping a site --tap already tapped changes nothing).
  InterventionSet show_taps;
  for (const SiteRef& s : show) show_taps.taps.push_back(s.site());
  InterventionsPass show_pass(show_taps);
  PassManager().run(show_pass, *m.graph);

  // Only the next token's logits are shown: the LM head runs on the last
  // position only (a model without a readout the anatomy finds keeps all).
  if ((vm.count("tokens") || vm.count("prompt")) && !vm.count("input") && !vm.count("output-dir") &&
      !vm.count("outputs") && !vm.count("compare")) {
    LastPositionLogitsPass last;
    try {
      PassManager().run(last, *m.graph);
    } catch (const Error&) {
    }
  }
  const Graph& g = *m.graph;

  std::map<std::string, Tensor> inputs;
  std::vector<int64_t> tokens;
  if (vm.count("tokens") || vm.count("prompt")) {
    tokens = vm.count("tokens") ? parse_token_list(vm["tokens"].as<std::string>())
                                : text->encode(vm["prompt"].as<std::string>());
    CB_CHECK(!tokens.empty(), "--prompt: the text gives no tokens");
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
  // An intervention at a position past the sequence would silently change nothing.
  if (inputs.count("input_ids") && inputs.at("input_ids").rank() == 2)
    check_intervention_positions(iv, inputs.at("input_ids").dim(1));

  // What --output-dir writes (and what is printed when nothing else is): --outputs, else the taps, else all.
  std::vector<std::string> all_outputs = output_names(g);
  std::vector<std::string> selected;
  if (vm.count("outputs")) {
    selected = split_commas(vm["outputs"].as<std::string>());
    CB_CHECK(!selected.empty(), "--outputs: no output names given; the outputs are: " << joined(all_outputs));
    for (const std::string& n : selected)
      CB_CHECK(std::find(all_outputs.begin(), all_outputs.end(), n) != all_outputs.end(),
               "--outputs: no output '" << n << "'; the outputs are: " << joined(all_outputs));
  } else {
    selected = tap_outputs.empty() ? all_outputs : tap_outputs;
  }

  auto backend = make_backend(vm["backend"].as<std::string>());
  auto device = make_device_backend(vm["device"].as<std::string>());
  CompileOptions copts;
  copts.num_threads = vm["threads"].as<int>();
  auto run = [&](std::shared_ptr<Graph> graph, std::vector<std::string>& names) {
    auto exe = Executable::compile(placed_inference_graph(graph, device.get(), copts, precision), *backend, copts);
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
  // The logits: the output named so, else a first output that is a rank-3
  // float tensor over the vocabulary (not a hidden state of another width).
  const int64_t vocab = vocab_size(g);
  auto logits_of = [&](const std::vector<std::string>& ns, const std::vector<Tensor>& ts) -> const Tensor* {
    if (const Tensor* t = output(ns, ts, "logits")) return t;
    bool over_vocab =
        !ts.empty() && ts[0].rank() == 3 && dtype_is_float(ts[0].dtype()) && vocab > 0 && ts[0].dim(2) == vocab;
    return over_vocab ? &ts[0] : nullptr;
  };
  const Tensor* logits = logits_of(names, outs);
  if (!logits && !tokens.empty()) {
    // Next tokens come from logits only: say so rather than print something else.
    const char* given = vm.count("tokens") ? "--tokens" : "--prompt";
    CB_CHECK(vm["top"].defaulted(), "--top: " << model_arg << " has no logits output (its outputs: "
                                              << joined(all_outputs) << "), so there are no next tokens to show");
    CB_CHECK(vm.count("output-dir") || vm.count("outputs") || !show.empty() || !tap_outputs.empty(),
             given << ": " << model_arg << " has no logits output (its outputs: " << joined(all_outputs)
                   << "), so there are no next tokens to show; print outputs with --outputs NAME,... or write them "
                      "with --output-dir DIR");
  }
  // The code ids of each --show-codes site (checked before anything is printed).
  std::vector<std::pair<std::string, Tensor>> shown_ids = shown_codes(show, names, outs);
  std::vector<std::pair<std::string, const Tensor*>> shown;
  for (auto& [site, ids] : shown_ids) shown.push_back({site, &ids});
  std::vector<CodeScores> shown_scores;  // --scores: of this run (the one with interventions)
  if (vm.count("scores"))
    for (const SiteRef& s : show) shown_scores.push_back(code_scores(g, s, names, outs));

  // The clean run for --compare: the same model without interventions, with the --show-codes taps.
  std::vector<std::string> clean_names;
  std::vector<Tensor> clean_outs;
  const Tensor* clean_logits = nullptr;
  std::vector<std::pair<std::string, Tensor>> clean_shown_ids;
  std::vector<const Tensor*> clean_codes;
  if (vm.count("compare")) CB_CHECK(logits, "--compare needs a model with a logits output");
  if (vm.count("compare") || needs_clean_ids(iv)) {  // the intervention checks below read its ids too
    std::shared_ptr<Graph> clean = load_model(model_path).graph;
    InterventionsPass clean_pass(show_taps);
    PassManager().run(clean_pass, *clean);
    tap_intervened_sites(*clean, iv);
    clean_outs = run(clean, clean_names);
    if (vm.count("compare")) {
      clean_logits = logits_of(clean_names, clean_outs);
      clean_shown_ids = shown_codes(show, clean_names, clean_outs);
      for (auto& [site, ids] : clean_shown_ids) clean_codes.push_back(&ids);
    }
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
    for (const std::string& name : selected) {
      const Tensor* t = output(names, outs, name);
      std::string path = dir + "/" + file_safe(name) + ".npy";
      npy_write(path, *t);
      if (!vm.count("json"))
        std::cout << "wrote " << path << " (" << dtype_name(t->dtype()) << dims_str(t->dims()) << ")\n";
    }
  }

  int top = vm["top"].as<int>();
  bool want_next = logits && (!tokens.empty() || vm.count("compare"));
  std::vector<double> jsd;
  if (clean_logits) jsd = jensen_shannon_per_position(*clean_logits, *logits);
  if (vm.count("json")) {
    std::ostringstream o;
    o << "{\"tokens\": [";
    for (size_t i = 0; i < tokens.size(); ++i) o << (i ? ", " : "") << tokens[i];
    o << "]";
    if (text) {
      o << ", \"token_texts\": [";
      for (size_t i = 0; i < tokens.size(); ++i) o << (i ? ", " : "") << strings.json(tokens[i]);
      o << "]";
    }
    if (want_next) o << ", \"next\": " << json_top(top_next(*logits, top), strings);
    if (clean_logits) {
      o << ", \"clean_next\": " << json_top(top_next(*clean_logits, top), strings);
      o << ", \"jsd\": " << std::setprecision(9) << jsd.back() << ", \"jsd_unit\": \"bits\", \"jsd_per_position\": [";
      for (size_t i = 0; i < jsd.size(); ++i) o << (i ? ", " : "") << jsd[i];
      o << "]";
    }
    o << ", \"codes\": {";
    for (size_t i = 0; i < shown.size(); ++i)
      o << (i ? ", " : "") << "\"" << shown[i].first << "\": " << json_codes(*shown[i].second);
    o << "}";
    if (clean_logits) {
      o << ", \"clean_codes\": {";
      for (size_t i = 0; i < shown.size(); ++i)
        o << (i ? ", " : "") << "\"" << shown[i].first << "\": " << json_codes(*clean_codes[i]);
      o << "}";
    }
    if (!shown_scores.empty()) {
      o << ", \"scores\": {";
      for (size_t i = 0; i < shown.size(); ++i)
        o << (i ? ", " : "") << "\"" << shown[i].first << "\": " << json_scores(shown_scores[i]);
      o << "}, \"cosines\": {";
      for (size_t i = 0; i < shown.size(); ++i)
        o << (i ? ", " : "") << "\"" << shown[i].first << "\": " << json_cosines(shown_scores[i]);
      o << "}";
    }
    std::cout << o.str() << "}\n";
    return 0;
  }
  for (size_t i = 0; i < shown.size(); ++i)
    print_codes(shown[i].first, *shown[i].second, clean_logits ? clean_codes[i] : nullptr, tokens, strings,
                shown_scores.empty() ? nullptr : &shown_scores[i]);
  if (want_next) {
    if (clean_logits) {
      print_top(" without interventions", top_next(*clean_logits, top), strings);
      print_top(" with interventions", top_next(*logits, top), strings);
      std::cout << "Jensen-Shannon divergence at the last position: " << std::setprecision(6) << jsd.back()
                << " bits\n";
    } else {
      print_top("", top_next(*logits, top), strings);
    }
  }
  if (!vm.count("output-dir") && !want_next && show.empty())
    for (const std::string& name : selected) std::cout << name << ": " << output(names, outs, name)->str() << "\n";
  return 0;
}

}  // namespace cb::tools
