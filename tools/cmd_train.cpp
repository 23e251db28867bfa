// codebook train [CONFIG.yaml] [group.key=value ...] --output DIR: trains
// codebooks (and optionally the model) through the runtime (train/trainer.h),
// logging JSON lines, evaluating and checkpointing as the config says
// (train/train_config.h); --resume continues a run bit-identically.
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "support/error.h"
#include "tools/command.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/progress.h"
#include "tools/train_run.h"

namespace po = boost::program_options;

namespace cb::tools {

int cmd_train(int argc, char** argv) {
  po::options_description opts(
      "usage: codebook train [CONFIG.yaml] [group.key=value ...] --output DIR [options]\n\noptions");
  opts.add_options()("output,o", po::value<std::string>(), "folder for checkpoints, log.jsonl and the final model")(
      "max-steps", po::value<int64_t>()->notifier(must_be_positive("--max-steps")),
      "training steps (= training_args.max_steps)")(
      "stop-at", po::value<int64_t>()->notifier(must_be_positive("--stop-at")),
      "stop after this step with a checkpoint, as if interrupted (resume later)")(
      "resume", po::value<std::string>(), "continue from a checkpoint folder, or the latest checkpoint in a folder")(
      "progress", po::value<std::string>()->default_value("auto"),
      "progress bar on stderr: auto (when a terminal) | on | off")(
      "no-checkpoint", "write no checkpoint or final model (benchmarks, experiments)")(
      "profile", "print the time per op type of the training steps at the end")(
      "profile-nodes", "print the time per node (op, name, input shapes) of the training steps at the end")(
      "precision", po::value<std::string>(),
      "f32 | bf16 (= runtime.precision): bf16 matmuls with f32 accumulation, forward and backward, f32 master "
      "weights (needs AVX512_BF16; docs/precision.md)")(
      "device", po::value<std::string>(),
      "cpu | cuda (= runtime.device): run the step on the GPU where its kernels can, parameters and optimizer "
      "state kept there (docs/cuda.md#training)")("print-config", "print the resolved configuration as JSON and exit");
  add_pass_options(opts);
  po::variables_map vm;
  if (!parse_command_line_list(argc, argv, opts, "args", "config file and group.key=value overrides", vm,
                               "\nTrains the codebooks of a model (TokFSM from scratch by default) and writes\n"
                               "checkpoints to DIR/checkpoint-<step>/ (model.onnx, state.safetensors,\n"
                               "trainer_state.json). Built-in defaults: `codebook train --print-config`;\n"
                               "configs/ has ready-made ones. Docs: docs/training.md.\n"
                               "Under `mpirun -np N` the N processes share each batch (data-parallel; collective\n"
                               "deadline CODEBOOK_COLLECTIVE_TIMEOUT seconds, default 120): docs/scale.md.\n"))
    return 0;

  TrainRequest request;
  if (vm.count("args"))
    for (const std::string& a : vm["args"].as<std::vector<std::string>>()) {
      if (a.find('=') != std::string::npos)
        request.overrides.push_back(a);
      else {
        CB_CHECK(request.config_file.empty(), "two config files given: " << request.config_file << " and " << a);
        request.config_file = a;
      }
    }
  if (vm.count("max-steps"))
    request.overrides.push_back("training_args.max_steps=" + std::to_string(vm["max-steps"].as<int64_t>()));
  if (vm.count("precision")) request.overrides.push_back("runtime.precision=" + vm["precision"].as<std::string>());
  if (vm.count("device")) request.overrides.push_back("runtime.device=" + vm["device"].as<std::string>());
  if (vm.count("resume")) request.resume = vm["resume"].as<std::string>();
  if (vm.count("output")) request.output = vm["output"].as<std::string>();
  if (vm.count("stop-at")) request.stop_at = vm["stop-at"].as<int64_t>();
  request.checkpoints = !vm.count("no-checkpoint");
  request.profile_nodes = vm.count("profile-nodes") > 0;
  request.profile = vm.count("profile") > 0 || request.profile_nodes;
  if (vm.count("print-config")) {
    std::cout << resolve_request_config(request).dump(2) << "\n";
    return 0;
  }
  std::string progress = vm["progress"].as<std::string>();
  CB_CHECK(progress == "auto" || progress == "on" || progress == "off", "--progress must be auto, on or off");
  PassOptionsScope pass_options(vm);

  ProgressBar bar(progress == "on" || (progress == "auto" && isatty(2)));
  TrainEvents events;
  events.log = [&](const Json& line) {
    bar.clear();
    std::cout << line.dump() << "\n" << std::flush;
  };
  events.note = [&](const std::string& text) {
    bar.clear();
    std::cerr << text << "\n";
  };
  events.step = [&](int64_t s, int64_t max_steps, const StepMetrics& m, double eta) {
    char text[160];
    std::snprintf(text, sizeof text, "%lld/%lld loss %.4f acc %.3f %.0f tok/s ETA %s", (long long)s,
                  (long long)max_steps, m.loss, m.accuracy, double(m.tokens) / m.seconds, duration_str(eta).c_str());
    bar.update(double(s) / double(std::max<int64_t>(max_steps, 1)), text);
  };
  run_training(request, events);
  bar.clear();
  return 0;
}

}  // namespace cb::tools
