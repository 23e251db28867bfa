// codebook train [CONFIG.yaml] [group.key=value ...] --output DIR: trains
// codebooks (and optionally the model) through the runtime (train/trainer.h),
// logging JSON lines, evaluating and checkpointing as the config says
// (train/train_config.h); --resume continues a run bit-identically.
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "backends/backend.h"
#include "frontend/onnx_export.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/progress.h"
#include "tools/train_report.h"
#include "train/checkpoint.h"
#include "train/run_folder.h"
#include "train/run_trainer.h"
#include "train/tokfsm_eval.h"
#include "train/train_config.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace cb::tools {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

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
      "print-config", "print the resolved configuration as JSON and exit");
  add_pass_options(opts);
  po::variables_map vm;
  if (!parse_command_line_list(argc, argv, opts, "args", "config file and group.key=value overrides", vm,
                               "\nTrains the codebooks of a model (TokFSM from scratch by default) and writes\n"
                               "checkpoints to DIR/checkpoint-<step>/ (model.onnx, state.safetensors,\n"
                               "trainer_state.json). Built-in defaults: `codebook train --print-config`;\n"
                               "configs/ has ready-made ones. Docs: docs/training.md.\n"))
    return 0;

  std::string file;
  std::vector<std::string> overrides;
  if (vm.count("args"))
    for (const std::string& a : vm["args"].as<std::vector<std::string>>()) {
      if (a.find('=') != std::string::npos)
        overrides.push_back(a);
      else {
        CB_CHECK(file.empty(), "two config files given: " << file << " and " << a);
        file = a;
      }
    }
  if (vm.count("max-steps"))
    overrides.push_back("training_args.max_steps=" + std::to_string(vm["max-steps"].as<int64_t>()));

  bool print_only = vm.count("print-config") > 0;
  std::string out_dir = vm.count("output")   ? vm["output"].as<std::string>()
                        : vm.count("resume") ? run_folder_of(vm["resume"].as<std::string>())
                                             : "";
  // The run folder, locked for the whole run (train/run_folder.h): a resumed
  // run claims it before reading its checkpoints (and repairs an interrupted
  // save first), a new one once its configuration is known to be good.
  std::unique_ptr<RunFolder> folder;
  auto claim = [&](bool create) {
    std::string option = vm.count("output") ? "--output " + out_dir : "--resume: the run folder " + out_dir;
    folder = std::make_unique<RunFolder>(out_dir, create, option);
    for (const std::string& line : recover_checkpoints(out_dir)) std::cerr << line << "\n";
  };
  std::optional<CheckpointInfo> resume;
  Json config;
  if (vm.count("resume")) {
    CB_CHECK(file.empty(), "--resume takes the configuration from the checkpoint; give overrides only");
    if (!print_only) claim(vm.count("output") > 0);
    resume = find_checkpoint(vm["resume"].as<std::string>());
    config = resolve_train_config(resume->trainer_state.at("config"), overrides);
  } else {
    config = resolve_train_config(file, overrides);
  }
  if (print_only) {
    std::cout << config.dump(2) << "\n";
    return 0;
  }
  PassOptionsScope pass_options(vm);
  TrainRunConfig run = parse_train_config(config);
  CB_CHECK(!out_dir.empty(), "give the output folder with --output DIR");
  if (resume) {
    // A smaller max_steps (or --stop-at) would rewrite the checkpoint as if it ended the run.
    CB_CHECK(run.max_steps >= resume->step,
             "training_args.max_steps: " << run.max_steps << " is below the step of the checkpoint " << resume->dir
                                         << " (" << resume->step << "); to continue, give at least that many");
    CB_CHECK(!vm.count("stop-at") || vm["stop-at"].as<int64_t>() > resume->step,
             "--stop-at: " << vm["stop-at"].as<int64_t>() << " is not after the step of the checkpoint " << resume->dir
                           << " (" << resume->step << ")");
  }
  if (resume && resume->step >= run.max_steps) {
    // Nothing to do: no evaluation, checkpoint or export is written again.
    std::cerr << "the run in " << out_dir << " is finished (step " << resume->step << " of " << run.max_steps
              << "); nothing changed. To train further, resume with a larger training_args.max_steps=N\n";
    return 0;
  }
  if (!resume) {
    claim(true);
    CB_CHECK(list_checkpoints(out_dir).empty(), out_dir << " already holds checkpoints: continue it with --resume "
                                                        << out_dir << ", or choose another --output");
    if (restart_log(*folder))
      std::cerr << "a new run in " << out_dir << " (it held no checkpoint): log.jsonl starts over\n";
  } else {
    // One timeline per folder: what was saved or logged after the step resumed
    // from belongs to the run being redone (docs/training.md, "The run folder").
    for (const std::string& line : supersede_checkpoints_after(out_dir, resume->step)) std::cerr << line << "\n";
    const Json* logged = resume->trainer_state.find("log_history");
    if (size_t cut = cut_log(*folder, resume->step, logged ? *logged : Json(Json::Array{})))
      std::cerr << "log.jsonl: cut " << cut << " line" << (cut == 1 ? "" : "s") << " logged after step " << resume->step
                << "\n";
  }
  set_num_threads(run.trainer.num_threads);

  auto backend = make_backend(run.backend);
  RunData data = make_run_data(run, model_vocab_size(run));
  TrainerOptions topts = run.trainer;
  topts.profile = vm.count("profile") > 0;
  auto t_setup = Clock::now();
  std::unique_ptr<Trainer> trainer = make_run_trainer(run, data, topts, *backend, resume ? resume->step : 0);
  if (run.kmeans_init && !resume && run.insert_codebooks_after == 0)
    std::cerr << "k-means initialisation and compilation: " << std::fixed << std::setprecision(1)
              << std::chrono::duration<double>(Clock::now() - t_setup).count() << " s\n";
  Json history = Json(Json::Array{});
  if (resume) {
    load_checkpoint(*resume, *trainer);
    if (const Json* h = resume->trainer_state.find("log_history")) history = *h;
    std::cerr << "resumed from " << resume->dir << " at step " << trainer->step() << "\n";
  }
  print_run_header(std::cerr, run, *trainer, *data.dataset);

  std::string progress = vm["progress"].as<std::string>();
  CB_CHECK(progress == "auto" || progress == "on" || progress == "off", "--progress must be auto, on or off");
  ProgressBar bar(progress == "on" || (progress == "auto" && isatty(2)));
  std::ofstream log(folder->log_path(), std::ios::app);
  auto emit = [&](const Json& line) {
    bar.clear();
    std::cout << line.dump() << "\n" << std::flush;
    log << line.dump() << "\n" << std::flush;
    history.as_array().push_back(line);
  };
  bool checkpoints = !vm.count("no-checkpoint");
  auto save = [&] {
    if (!checkpoints) return;
    Json state = Json::Object{};
    state["step"] = trainer->step();
    state["config"] = config;
    state["log_history"] = history;
    std::string dir = save_checkpoint(out_dir, *trainer, state, data.fsm.get(), run.save_total_limit);
    bar.clear();
    std::cerr << "saved " << dir << "\n";
  };
  auto evaluate = [&] {
    EvalMetrics em = trainer->evaluate();
    Json line = eval_log_line(em, *trainer);
    if (data.fsm) {
      auto t0 = Clock::now();
      LanguageModel lm(trainer->trained_model(), *backend, run.trainer.num_threads);
      FsmMetrics fm = evaluate_fsm(lm, *data.fsm, run.fsm_generate_samples, run.tokfsm.seq_len,
                                   fsm_sample_seed(run.tokfsm.eval_seed, trainer->step()));
      add_fsm_metrics(line, fm, run.fsm_generate_samples > 0);
      line["eval_fsm_seconds"] = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    emit(line);
  };

  int64_t stop = run.max_steps;
  if (vm.count("stop-at")) stop = std::min(stop, vm["stop-at"].as<int64_t>());
  LogWindow window;
  auto t_start = Clock::now();
  int64_t first_step = trainer->step(), resumed_at = first_step;
  while (trainer->step() < stop) {
    if (codebooks_due(run, *trainer)) {
      auto t0 = Clock::now();
      trainer = trainer_with_codebooks(run, data, topts, *backend, *trainer);
      first_step = trainer->step();  // the profile is the new trainer's
      bar.clear();
      std::cerr << "step " << trainer->step() << ": codebooks inserted into the trained model"
                << (run.kmeans_init ? ", k-means-initialised from its activations" : "") << " (" << std::fixed
                << std::setprecision(1) << std::chrono::duration<double>(Clock::now() - t0).count() << " s)\n";
      print_run_header(std::cerr, run, *trainer, *data.dataset);
    }
    StepMetrics m = trainer->train_step();
    window.add(m);
    int64_t s = trainer->step();
    double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
    double per_step = elapsed / double(s - resumed_at);
    if (s % run.logging_steps == 0 || s == 1 || s == run.max_steps) {
      Json line = train_log_line(s, window, *trainer);
      line["elapsed_seconds"] = elapsed;
      emit(line);
      window = LogWindow();
    }
    if (run.eval_steps > 0 && s % run.eval_steps == 0 && s != run.max_steps) evaluate();
    if (run.save_steps > 0 && s % run.save_steps == 0 && s != run.max_steps && s != stop) save();
    char text[160];
    std::snprintf(text, sizeof text, "%lld/%lld loss %.4f acc %.3f %.0f tok/s ETA %s", (long long)s,
                  (long long)run.max_steps, m.loss, m.accuracy, double(m.tokens) / m.seconds,
                  duration_str(per_step * double(run.max_steps - s)).c_str());
    bar.update(double(s) / double(std::max<int64_t>(run.max_steps, 1)), text);
  }
  bar.clear();
  if (topts.profile) {
    std::vector<std::pair<double, std::string>> ops;
    double total = 0;
    for (auto& [op, p] : trainer->train_profile()) {
      ops.push_back({p.ms, op});
      total += p.ms;
    }
    std::sort(ops.rbegin(), ops.rend());
    int64_t steps = std::max<int64_t>(1, trainer->step() - first_step);
    std::cerr << "time per training step by op type (" << steps << " steps, " << std::fixed << std::setprecision(1)
              << total / double(steps) << " ms per step):\n";
    for (auto& [ms, op] : ops)
      std::cerr << "  " << std::setw(10) << ms / double(steps) << " ms  " << std::setw(5) << std::setprecision(1)
                << 100.0 * ms / total << "%  " << op << " (" << trainer->train_profile().at(op).calls / steps
                << " calls)\n";
  }
  if (trainer->step() == run.max_steps && run.eval_steps > 0) evaluate();
  // The final model goes in before the final checkpoint: a run killed in
  // between resumes from the checkpoint before and writes both again (after
  // the final checkpoint, --resume has nothing left to do).
  std::string model_path = (fs::path(out_dir) / "model.onnx").string();
  bool finished = trainer->step() == run.max_steps && checkpoints;
  if (finished) {
    ExportOptions eo;
    eo.external_data_threshold = 1 << 20;
    export_onnx(*trainer->trained_model(), model_path, eo);
    if (data.fsm) data.fsm->save((fs::path(out_dir) / "fsm.npy").string());
  }
  save();
  if (finished) {
    std::cerr << "trained model: " << model_path << "\n";
  } else if (trainer->step() < run.max_steps) {
    std::cerr << "stopped at step " << trainer->step() << " of " << run.max_steps
              << "; continue with: codebook train --resume " << out_dir << "\n";
  }
  return 0;
}

}  // namespace cb::tools
