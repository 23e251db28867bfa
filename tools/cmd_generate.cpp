// codebook generate MODEL: continue a prompt token by token with a KV cache
// (tools/generate.h), greedy or sampled, with interventions at every
// position, streaming the new tokens to stdout.
#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <optional>

#include "passes/kv_cache.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/codebook_options.h"
#include "tools/command.h"
#include "tools/forced_codes.h"
#include "tools/generate.h"
#include "tools/model_io.h"
#include "tools/options.h"
#include "tools/text_io.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

// The context of rotary models (no position table says it): GPT-NeoX's and
// Pythia's max_position_embeddings.
constexpr int64_t kRotaryContext = 2048;

// The tokenizer: required for --prompt; for text output unless --ids.
std::optional<TokenText> tokenizer_of(const po::variables_map& vm, const std::string& model_arg, const Graph& g) {
  std::optional<std::string> given;
  if (vm.count("tokenizer")) given = vm["tokenizer"].as<std::string>();
  std::optional<std::string> spec = model_tokenizer(given, model_arg, g.metadata);
  if (vm.count("prompt"))
    CB_CHECK(spec, "--prompt: " << model_arg << " records no tokenizer; give --tokenizer DIR or use --tokens");
  if (!spec || (!vm.count("prompt") && vm.count("ids"))) return std::nullopt;
  return TokenText::load(*spec);
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  po::options_description opts("usage: codebook generate MODEL (--prompt TEXT | --tokens IDS) [options]\n\noptions");
  opts.add_options()("prompt,p", po::value<std::string>(), "TEXT to continue, tokenised by the model's tokenizer")(
      "tokens,t", po::value<std::string>(), "comma-separated token ids to continue")(
      "tokenizer", po::value<std::string>(),
      "DIR (GPT-2 BPE) or tokfsm[:BASE]; default: the one the model or its training run records")(
      "max-new,n", po::value<int64_t>()->default_value(32),
      "how many tokens to generate (fewer when the context ends first)")(
      "temperature", po::value<double>()->default_value(0.0), "0: greedy (most likely token); > 0: sample")(
      "top-k", po::value<int64_t>()->default_value(0), "sample from the k most likely tokens only (0: all)")(
      "top-p", po::value<double>()->default_value(1.0),
      "sample from the smallest most-likely set with probability >= p (1: all)")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the sampler")(
      "ids", "print the new tokens as comma-separated ids instead of text")(
      "context", po::value<int64_t>(),
      "longest sequence (prompt + new tokens); default: the model's position table, 2048 for rotary models")(
      "backend,b", po::value<std::string>()->default_value("cpu"), "reference | cpu")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores)")(
      "profile", "print the time per op type over the whole generation to stderr");
  add_intervention_options(opts);
  add_pass_options(opts);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model",
                          "ONNX model file, Hugging Face folder, or a `codebook train` run or checkpoint folder", vm,
                          "Greedy by default; --temperature > 0 samples. Interventions act at every position; their "
                          "positions are absolute (prompt + generated), negative ones count from the end of each "
                          "call (docs/generation.md)."))
    return 0;
  CB_CHECK(vm.count("tokens") || vm.count("prompt"), "give the prompt with --prompt TEXT or --tokens IDS");
  CB_CHECK(!(vm.count("tokens") && vm.count("prompt")), "give --tokens or --prompt, not both");
  const int64_t max_new = vm["max-new"].as<int64_t>();
  CB_CHECK(max_new >= 0, "--max-new must be >= 0, got " << max_new);
  SamplingOptions sampling;
  sampling.temperature = vm["temperature"].as<double>();
  sampling.top_k = vm["top-k"].as<int64_t>();
  sampling.top_p = vm["top-p"].as<double>();
  sampling.seed = vm["seed"].as<uint64_t>();
  CB_CHECK(sampling.temperature > 0 || (vm["top-k"].defaulted() && vm["top-p"].defaulted()),
           "--top-k and --top-p choose among sampled tokens: give --temperature > 0 too");
  Sampler sampler(sampling);  // checks the values
  set_num_threads(vm["threads"].as<int>());
  PassOptionsScope pass_options(vm);

  const std::string model_arg = vm["model"].as<std::string>();
  const std::string model_path = resolve_model_path(model_arg);
  LoadedModel m = load_model(model_path);

  std::optional<TokenText> text = tokenizer_of(vm, model_arg, *m.graph);
  const bool as_ids = vm.count("ids") || !text;
  if (!vm.count("ids") && !text) std::cerr << "note: the model records no tokenizer; printing token ids\n";
  std::vector<int64_t> prompt = vm.count("tokens") ? parse_token_list(vm["tokens"].as<std::string>())
                                                   : text->encode(vm["prompt"].as<std::string>());
  CB_CHECK(!prompt.empty(), "--prompt: the text gives no tokens");
  {
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
  gopts.threads = vm["threads"].as<int>();
  gopts.profile = vm.count("profile") > 0;
  gopts.context = vm.count("context")                 ? vm["context"].as<int64_t>()
                  : position_table_rows(*m.graph) > 0 ? -1
                                                      : kRotaryContext;
  CB_CHECK(!vm.count("context") || gopts.context > 0, "--context must be > 0");
  const int64_t wanted = int64_t(prompt.size()) + max_new;
  gopts.initial_capacity = wanted;
  Generator gen(m.graph, gopts);
  CB_CHECK(int64_t(prompt.size()) <= gen.context(),
           "the prompt has " << prompt.size() << " tokens; the model's context is " << gen.context() << " tokens");

  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  const std::vector<float>* logits = &gen.prefill(prompt);
  auto t1 = Clock::now();
  // The sequence (prompt + new tokens) never exceeds the context.
  int64_t produced = 0;
  bool context_full = max_new > 0 && gen.length() >= gen.context();
  while (produced < max_new && !context_full) {
    const int64_t token = sampler.next(*logits);
    if (as_ids)
      std::cout << (produced ? "," : "") << token;
    else
      std::cout << text->token_bytes(token);
    std::cout.flush();
    ++produced;
    if (produced == max_new) break;
    context_full = gen.length() + 1 >= gen.context();
    if (!context_full) logits = &gen.step(token);
  }
  std::cout << "\n";
  if (context_full)
    std::cerr << "stopped after " << produced << " new tokens: the sequence reached the model's context of "
              << gen.context() << " tokens\n";
  auto t2 = Clock::now();
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::cerr << std::fixed << std::setprecision(1) << "prompt: " << prompt.size() << " tokens in " << prefill_s * 1e3
            << " ms; generated " << produced << " tokens in " << decode_s * 1e3 << " ms";
  if (produced > 1 && decode_s > 0)
    std::cerr << " (" << std::setprecision(2) << double(produced - 1) / decode_s << " tokens/s after the first)";
  std::cerr << "\n";
  if (gopts.profile) {
    const std::map<std::string, OpProfile> profile = gen.profile();
    std::vector<std::pair<std::string, OpProfile>> ops(profile.begin(), profile.end());
    std::sort(ops.begin(), ops.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
    std::cerr << "time per op type (all calls):\n";
    for (auto& [op, p] : ops)
      std::cerr << "  " << std::left << std::setw(24) << op << std::right << std::setw(10) << p.ms << " ms"
                << std::setw(8) << p.calls << " calls\n";
  }
  return 0;
}

}  // namespace cb::tools
