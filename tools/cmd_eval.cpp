// codebook eval MODEL [CONFIG.yaml] [group.key=value ...]: loss, perplexity,
// next-token accuracy and codebook metrics of a model on the evaluation set
// of a training config; for TokFSM also the transition accuracies. MODEL may
// be a checkpoint folder (its config and FSM are used), a `codebook train`
// output folder (its latest checkpoint), an ONNX file or a Hugging Face folder.
#include <boost/program_options.hpp>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <optional>

#include "backends/backend.h"
#include "passes/place_devices.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/command.h"
#include "tools/device_option.h"
#include "tools/model_io.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/train_report.h"
#include "train/checkpoint.h"
#include "train/codebook_removal.h"
#include "train/tokfsm_eval.h"
#include "train/train_config.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace cb::tools {

int cmd_eval(int argc, char** argv) {
  po::options_description opts("usage: codebook eval MODEL [CONFIG.yaml] [group.key=value ...] [options]\n\noptions");
  opts.add_options()("samples", po::value<int64_t>()->notifier(must_be_positive("--samples")),
                     "evaluation sequences (default: the config's)")(
      "generate", po::value<int64_t>()->notifier(must_be_non_negative("--generate")),
      "TokFSM: sequences to sample for the transition accuracy (default: the config's)")(
      "device", po::value<std::string>()->default_value("cpu"),
      "cpu | cuda: evaluate on the GPU where its kernels can (docs/cuda.md)")("json", "print only the JSON line");
  po::variables_map vm;
  if (!parse_command_line_list(argc, argv, opts, "args", "model, config file and overrides", vm,
                               "\nEvaluates MODEL on the evaluation set of a training config (the checkpoint's own\n"
                               "config when MODEL is a checkpoint). Docs: docs/training.md.\n"))
    return 0;
  std::vector<std::string> args;
  if (vm.count("args")) args = vm["args"].as<std::vector<std::string>>();
  CB_CHECK(!args.empty(), "missing MODEL");
  std::string model_arg = args[0];
  std::string file;
  std::vector<std::string> overrides;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i].find('=') != std::string::npos)
      overrides.push_back(args[i]);
    else {
      CB_CHECK(file.empty(), "two config files given: " << file << " and " << args[i]);
      file = args[i];
    }
  }

  // A checkpoint (or a training output folder) brings its config, FSM and model.
  std::string model_path = model_arg;
  Json config;
  int64_t step = 0;  // the checkpoint's: seeds the TokFSM samples as training's evaluation did
  std::error_code ec;
  bool is_run = fs::is_directory(model_arg, ec) &&
                (fs::exists(fs::path(model_arg) / "trainer_state.json") || !list_checkpoints(model_arg).empty());
  if (is_run) {
    CheckpointInfo ck = find_checkpoint(model_arg);
    CB_CHECK(file.empty(), "MODEL is a checkpoint with its own config; give overrides only");
    config = resolve_train_config(ck.trainer_state.at("config"), overrides);
    model_path = (fs::path(ck.dir) / "model.onnx").string();
    step = ck.step;
    if (fs::exists(fs::path(ck.dir) / "fsm.npy"))
      config["fsm_args"]["fsm_path"] = (fs::path(ck.dir) / "fsm.npy").string();
  } else {
    config = resolve_train_config(file, overrides);
  }
  if (vm.count("samples")) {
    config["fsm_args"]["max_eval_samples"] = vm["samples"].as<int64_t>();
    config["training_args"]["max_eval_samples"] = vm["samples"].as<int64_t>();
  }
  if (vm.count("generate")) config["fsm_args"]["generate_samples"] = vm["generate"].as<int64_t>();
  TrainRunConfig run = parse_train_config(config);
  set_num_threads(run.trainer.num_threads);
  auto backend = make_backend(run.backend);
  // The evaluation's own device (not the run's runtime.device: a run trained
  // on a GPU is evaluated on the CPU unless asked).
  auto device = make_device_backend(vm["device"].as<std::string>());
  // The vocabulary: the rows of the embedding input_ids indexes (what a token
  // id past it would overrun inside Gather), else the width of the logits.
  int64_t vocab = -1;
  {
    std::shared_ptr<Graph> model = load_model(model_path).graph;
    vocab = vocab_size(*model);
    if (vocab <= 0) vocab = logits_vocab_size(*model);
  }
  if (!is_run && file.empty() && run.dataset == DatasetKind::tokfsm && vocab > 0) {
    // The built-in defaults are TokFSM's: only a TokFSM model can use them.
    int64_t fsm_vocab = run.fsm.base + 1;
    CB_CHECK(vocab == fsm_vocab,
             model_path << " has a vocabulary of " << vocab << " tokens, not the TokFSM data's " << fsm_vocab
                        << " (the built-in defaults when no config is given): give the evaluation data as a config, "
                           "e.g. `codebook eval MODEL data.yaml` with dataset_args.kind: text, "
                           "dataset_args.tokenizer: DIR and dataset_args.train_files: [FILE] (its validation split "
                           "is evaluated), or as the same overrides (dataset_args.kind=text ...)");
  }
  RunData data = make_run_data(run, vocab);

  // One evaluation of a model over the evaluation set.
  auto evaluate = [&](std::shared_ptr<Graph> model, bool reconstructions, std::vector<CodebookOutputs>* codebooks) {
    StepGraphOptions go;
    go.codebook_reconstructions = reconstructions;
    StepGraph sg = build_eval_graph(std::move(model), go);
    CompileOptions co;
    co.num_threads = run.trainer.num_threads;
    if (device) {
      place_devices(*sg.graph, placement_target(*device));
      co.device_backend = device.get();
    }
    auto exe = Executable::compile(sg.graph, *backend, co);
    if (codebooks) *codebooks = sg.codebooks;
    return evaluate_step_graph(*exe, sg, sg.initial, *data.dataset, run.trainer.eval_batch_size,
                               run.trainer.max_eval_samples);
  };
  std::vector<CodebookOutputs> codebooks;
  EvalMetrics em = evaluate(load_model(model_path).graph, true, &codebooks);
  Json line = Json::Object{};
  line["eval_loss"] = em.loss;
  line["eval_accuracy"] = em.accuracy;
  if (std::isfinite(em.perplexity)) line["eval_perplexity"] = em.perplexity;
  line["eval_samples"] = em.samples;
  line["eval_tokens"] = em.tokens;
  // Faithfulness: the same data through the model without its codebooks
  // (bypassed: the clean baseline) and with their outputs zeroed (ablated).
  std::optional<EvalMetrics> bypassed, zeroed;
  if (!codebooks.empty()) {
    auto without_codebooks = [&](CodebookRemoval how) {
      std::shared_ptr<Graph> g = load_model(model_path).graph;
      remove_codebooks(*g, how);
      return evaluate(g, false, nullptr);
    };
    bypassed = without_codebooks(CodebookRemoval::bypass);
    zeroed = without_codebooks(CodebookRemoval::zero);
    line["eval_loss_bypassed"] = bypassed->loss;
    line["eval_accuracy_bypassed"] = bypassed->accuracy;
    line["eval_loss_increase"] = em.loss - bypassed->loss;
    line["eval_loss_zero_ablated"] = zeroed->loss;
    line["eval_accuracy_zero_ablated"] = zeroed->accuracy;
    double gap = zeroed->loss - bypassed->loss;
    if (gap != 0) line["eval_loss_recovered"] = (zeroed->loss - em.loss) / gap;
  }
  add_codebook_metrics(line, em.codebooks, codebooks, "eval_", false);
  for (auto& c : em.codebooks) {
    line["eval_MSE/" + c.site] = c.mse;
    line["eval_relative_MSE/" + c.site] = c.sq_norm > 0 ? c.sq_error / c.sq_norm : 0.0;
    line["eval_explained_variance/" + c.site] = c.sq_centered > 0 ? 1 - c.sq_error / c.sq_centered : 0.0;
  }
  if (data.fsm) {
    LanguageModel lm(load_model(model_path).graph, *backend, run.trainer.num_threads);
    FsmMetrics fm = evaluate_fsm(lm, *data.fsm, run.fsm_generate_samples, run.tokfsm.seq_len,
                                 fsm_sample_seed(run.tokfsm.eval_seed, step));
    add_fsm_metrics(line, fm, run.fsm_generate_samples > 0);
  }
  if (vm.count("json")) {
    std::cout << line.dump() << "\n";
    return 0;
  }
  std::cout << std::fixed << std::setprecision(4) << "model: " << model_path << "\ndata: " << data.dataset->describe()
            << "\nloss " << em.loss << ", perplexity " << em.perplexity << ", next-token accuracy " << em.accuracy
            << " (" << em.samples << " sequences, " << em.tokens << " tokens, " << std::setprecision(1) << em.seconds
            << " s)\n"
            << std::setprecision(4);
  if (bypassed) {
    std::cout << "without codebooks (each an identity): loss " << bypassed->loss << ", next-token accuracy "
              << bypassed->accuracy << "; the codebooks add " << std::showpos << em.loss - bypassed->loss
              << std::noshowpos << " to the loss\n"
              << "codebook outputs zeroed: loss " << zeroed->loss << ", next-token accuracy " << zeroed->accuracy;
    if (const Json* r = line.find("eval_loss_recovered"))
      std::cout << "; loss recovered (zeroed - with) / (zeroed - without) " << r->as_double();
    std::cout << "\n";
  }
  if (!em.codebooks.empty())
    std::cout << "per site, of the codebook's LayerNorm-ed input u and its output y: dead codes (fraction), MSE "
                 "(mean (u-y)^2 per component), relative MSE (|u-y|^2 / |u|^2), explained variance "
                 "(1 - |u-y|^2 / |u-mean u|^2)\n";
  for (auto& c : em.codebooks)
    std::cout << "  " << std::left << std::setw(26) << c.site << std::right << " dead " << c.dead_fraction << "  MSE "
              << c.mse << "  relative MSE " << line.at("eval_relative_MSE/" + c.site).as_double()
              << "  explained variance " << line.at("eval_explained_variance/" + c.site).as_double() << "\n";
  if (const Json* t = line.find("eval_transition_accuracy"))
    std::cout << "transition accuracy " << t->as_double() << ", first transition (sampled) "
              << line.at("eval_first_transition_accuracy").as_double() << "\n";
  if (const Json* f = line.find("eval_first_transition_accuracy_probs"))
    std::cout << "first-transition accuracy (next-state probabilities) " << f->as_double() << "\n";
  std::cout << line.dump() << "\n";
  return 0;
}

}  // namespace cb::tools
