// codebook generate MODEL: continue a prompt token by token with a KV cache
// (tools/generate.h), greedy or sampled, with interventions at every
// position, streaming the new tokens to stdout; several prompts at once (a
// batch per prompt length, tools/generation.h), one line each.
#include <algorithm>
#include <boost/program_options.hpp>
#include <iomanip>
#include <iostream>
#include <optional>

#include "passes/kv_cache.h"
#include "support/error.h"
#include "support/input_file.h"
#include "support/threads.h"
#include "tools/codebook_options.h"
#include "tools/command.h"
#include "tools/device_option.h"
#include "tools/forced_codes.h"
#include "tools/generate.h"
#include "tools/generation.h"
#include "tools/model_io.h"
#include "tools/options.h"
#include "tools/precision_option.h"
#include "tools/text_io.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

// The tokenizer: required for --prompt; for text output unless --ids, and for --stop-at text.
std::optional<TokenText> tokenizer_of(const po::variables_map& vm, const std::string& model_arg, const Graph& g,
                                      bool stop_texts) {
  std::optional<std::string> given;
  if (vm.count("tokenizer")) given = vm["tokenizer"].as<std::string>();
  std::optional<std::string> spec = model_tokenizer(given, model_arg, g.metadata);
  const bool text_prompts = vm.count("prompt") || vm.count("prompts-file");
  if (text_prompts)
    CB_CHECK(spec, "--prompt: " << model_arg << " records no tokenizer; give --tokenizer DIR or use --tokens");
  if (!spec || (!text_prompts && vm.count("ids") && !stop_texts)) return std::nullopt;
  return TokenText::load(*spec);
}

// The prompts: each --tokens, or each --prompt and line of --prompts-file.
std::vector<std::vector<int64_t>> prompts_of(const po::variables_map& vm, const std::optional<TokenText>& text) {
  std::vector<std::vector<int64_t>> prompts;
  if (vm.count("tokens"))
    for (const std::string& ids : vm["tokens"].as<std::vector<std::string>>()) prompts.push_back(parse_token_list(ids));
  auto add_text = [&](const std::string& t, const std::string& where) {
    prompts.push_back(text->encode(t));
    CB_CHECK(!prompts.back().empty(), where << ": the text gives no tokens");
  };
  if (vm.count("prompt"))
    for (const std::string& t : vm["prompt"].as<std::vector<std::string>>()) add_text(t, "--prompt");
  if (vm.count("prompts-file")) {
    const std::string path = vm["prompts-file"].as<std::string>();
    const std::string all = read_input_file(path, "--prompts-file");
    size_t line = 0, at = 0;
    while (at < all.size()) {
      size_t end = all.find('\n', at);
      if (end == std::string::npos) end = all.size();
      ++line;
      std::string t = all.substr(at, end - at);
      if (!t.empty() && t.back() == '\r') t.pop_back();
      if (!t.empty()) add_text(t, path + ":" + std::to_string(line));
      at = end + 1;
    }
    CB_CHECK(!prompts.empty(), "--prompts-file " << path << ": no prompts (one per line)");
  }
  return prompts;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  po::options_description opts("usage: codebook generate MODEL (--prompt TEXT | --tokens IDS) [options]\n\noptions");
  opts.add_options()("prompt,p", po::value<std::vector<std::string>>()->composing(),
                     "TEXT to continue, tokenised by the model's tokenizer (repeatable: one line out each)")(
      "tokens,t", po::value<std::vector<std::string>>()->composing(),
      "comma-separated token ids to continue (repeatable)")(
      "prompts-file", po::value<std::string>(), "FILE of prompts, one per line (text; empty lines skipped)")(
      "tokenizer", po::value<std::string>(),
      "DIR (GPT-2 BPE) or tokfsm[:BASE]; default: the one the model or its training run records")(
      "max-new,n", po::value<int64_t>()->default_value(32),
      "how many tokens to generate (fewer when the context ends first)")(
      "temperature", po::value<double>()->default_value(0.0), "0: greedy (most likely token); > 0: sample")(
      "top-k", po::value<int64_t>()->default_value(0), "sample from the k most likely tokens only (0: all)")(
      "top-p", po::value<double>()->default_value(1.0),
      "sample from the smallest most-likely set with probability >= p (1: all)")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the sampler (prompt i: seed + i)")(
      "stop-at", po::value<std::vector<std::string>>()->composing(),
      "stop when the new tokens end with these ids (e.g. an EOS id) or their text contains this text "
      "(text:TEXT for text of digits and commas); repeatable")(
      "ignore-eos", "do not stop at the model's end-of-sequence id (its Hugging Face config's eos_token_id)")(
      "ids", "print the new tokens as comma-separated ids instead of text")(
      "context", po::value<int64_t>(),
      "longest sequence (prompt + new tokens); default: the model's position table, 2048 for rotary models")(
      "backend,b", po::value<std::string>()->default_value("cpu"), "reference | cpu")(
      "device", po::value<std::string>()->default_value("cpu"),
      "cpu | cuda: run the model on the GPU where its kernels can (docs/cuda.md)")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores)")(
      "profile", "print the time per op type over the whole generation to stderr")(
      "profile-nodes", "print the time per node (op, name, input shapes of its first call) instead");
  add_precision_option(opts);
  add_intervention_options(opts);
  add_pass_options(opts);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model",
                          "ONNX model file, Hugging Face folder, or a `codebook train` run or checkpoint folder", vm,
                          "Greedy by default; --temperature > 0 samples. Interventions act at every position; their "
                          "positions are absolute (prompt + generated), negative ones count from the end of each "
                          "call (docs/generation.md)."))
    return 0;
  const bool text_prompts = vm.count("prompt") || vm.count("prompts-file");
  CB_CHECK(vm.count("tokens") || text_prompts, "give the prompt with --prompt TEXT or --tokens IDS");
  CB_CHECK(!(vm.count("tokens") && text_prompts), "give --tokens or --prompt/--prompts-file, not both");
  const int64_t max_new = vm["max-new"].as<int64_t>();
  CB_CHECK(max_new >= 0, "--max-new must be >= 0, got " << max_new);
  SamplingOptions sampling;
  sampling.temperature = vm["temperature"].as<double>();
  sampling.top_k = vm["top-k"].as<int64_t>();
  sampling.top_p = vm["top-p"].as<double>();
  sampling.seed = vm["seed"].as<uint64_t>();
  CB_CHECK(sampling.temperature > 0 || (vm["top-k"].defaulted() && vm["top-p"].defaulted()),
           "--top-k and --top-p choose among sampled tokens: give --temperature > 0 too");
  Sampler check_sampling(sampling);  // checks the values
  StopConditions stop;
  if (vm.count("stop-at"))
    for (const std::string& v : vm["stop-at"].as<std::vector<std::string>>()) stop.add(v);
  set_num_threads(vm["threads"].as<int>());
  PassOptionsScope pass_options(vm);

  const std::string model_arg = vm["model"].as<std::string>();
  const std::string model_path = resolve_model_path(model_arg);
  LoadedModel m = load_model(model_path);
  const Precision precision = precision_option(vm, *m.graph, vm["backend"].as<std::string>());
  auto device = make_device_backend(vm["device"].as<std::string>());

  std::optional<TokenText> text = tokenizer_of(vm, model_arg, *m.graph, !stop.texts.empty());
  const bool as_ids = vm.count("ids") || !text;
  if (!vm.count("ids") && !text) std::cerr << "note: the model records no tokenizer; printing token ids\n";
  CB_CHECK(stop.texts.empty() || text, "--stop-at " << escape_bytes(stop.texts.empty() ? "" : stop.texts[0])
                                                    << ": text needs a tokenizer; give --tokenizer DIR or token ids");
  if (!vm.count("ignore-eos"))
    for (int64_t eos : model_eos_ids(m.graph->metadata)) stop.sequences.push_back({eos});
  const std::vector<std::vector<int64_t>> prompts = prompts_of(vm, text);
  for (const std::vector<int64_t>& prompt : prompts) {
    std::map<std::string, Tensor> check{
        {"input_ids", Tensor::from_vector<int64_t>(prompt, {1, int64_t(prompt.size())})}};
    complete_lm_inputs(*m.graph, check);  // token ids against the vocabulary
  }

  InterventionSet iv = interventions_from_options(vm);
  resolve_state_of(iv, model_path, vm["backend"].as<std::string>(), vm["threads"].as<int>());
  InterventionsPass interventions(iv);
  PassManager().run(interventions, *m.graph);

  GeneratorOptions gopts;
  gopts.backend = vm["backend"].as<std::string>();
  gopts.device_backend = device.get();
  gopts.threads = vm["threads"].as<int>();
  gopts.precision = precision;
  gopts.profile_nodes = vm.count("profile-nodes") > 0;
  gopts.profile = vm.count("profile") > 0 || gopts.profile_nodes;
  gopts.context = vm.count("context") ? vm["context"].as<int64_t>() : default_generation_context(*m.graph);
  CB_CHECK(!vm.count("context") || gopts.context > 0, "--context must be > 0");
  int64_t longest = 0;
  for (const std::vector<int64_t>& p : prompts) longest = std::max(longest, int64_t(p.size()));
  gopts.initial_capacity = longest + max_new;
  Generator gen(m.graph, gopts);
  for (const std::vector<int64_t>& p : prompts)
    CB_CHECK(int64_t(p.size()) <= gen.context(),
             "the prompt has " << p.size() << " tokens; the model's context is " << gen.context() << " tokens");

  GenerationRequest request;
  request.prompts = prompts;
  request.max_new = max_new;
  request.sampling = sampling;
  request.stop = stop;
  request.text = text ? &*text : nullptr;
  // One prompt streams its tokens as they come; several print a line each at the end.
  const bool stream = prompts.size() == 1;
  auto shown = [&](int64_t token) { return as_ids ? std::to_string(token) : text->token_bytes(token); };
  bool first = true;
  GenerationStats st;
  std::vector<Continuation> done = generate_continuations(
      gen, request,
      [&](size_t, int64_t token) {
        if (!stream) return;
        std::cout << (as_ids && !first ? "," : "") << shown(token);
        std::cout.flush();
        first = false;
      },
      &st);
  if (stream) std::cout << "\n";
  int64_t firsts = 0;  // prompts that got a token: the first comes from the prefill
  for (size_t i = 0; i < done.size(); ++i) {
    const Continuation& c = done[i];
    firsts += !c.ids.empty();
    if (!stream) {
      std::string line;
      for (int64_t t : c.ids) line += (as_ids && !line.empty() ? "," : "") + shown(t);
      std::cout << (as_ids ? line : escape_bytes(line)) << "\n";
    }
    const std::string which = stream ? "" : "prompt " + std::to_string(i) + ": ";
    if (c.stop == "context")
      std::cerr << which << "stopped after " << c.ids.size()
                << " new tokens: the sequence reached the model's context of " << gen.context() << " tokens\n";
    else if (c.stop != "max-new")
      std::cerr << which << "stopped after " << c.ids.size() << " new tokens: " << c.stop << "\n";
  }
  std::cerr << std::fixed << std::setprecision(1);
  if (stream)
    std::cerr << "prompt: " << prompts[0].size() << " tokens in " << st.prefill_s * 1e3 << " ms";
  else
    std::cerr << "prompts: " << prompts.size() << " in " << st.batches << (st.batches == 1 ? " batch" : " batches")
              << " (one per length), prefilled in " << st.prefill_s * 1e3 << " ms";
  std::cerr << "; generated " << st.new_tokens << " tokens in " << st.decode_s * 1e3 << " ms";
  if (st.new_tokens > firsts && st.decode_s > 0)
    std::cerr << " (" << std::setprecision(2) << double(st.new_tokens - firsts) / st.decode_s
              << " tokens/s after the first)";
  std::cerr << "\n";
  if (gopts.profile) {
    const std::map<std::string, OpProfile> profile = gen.profile();
    std::vector<std::pair<std::string, OpProfile>> ops(profile.begin(), profile.end());
    std::sort(ops.begin(), ops.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
    std::cerr << "time per " << (gopts.profile_nodes ? "node" : "op type") << " (all calls):\n";
    for (auto& [op, p] : ops)
      std::cerr << "  " << std::left << std::setw(24) << op << std::right << std::setw(10) << p.ms << " ms"
                << std::setw(8) << p.calls << " calls" << (p.inputs.empty() ? "" : "  " + p.inputs) << "\n";
  }
  return 0;
}

}  // namespace cb::tools
