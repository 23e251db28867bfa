#include "tools/train_run.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "backends/backend.h"
#include "frontend/onnx_export.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/device_option.h"
#include "tools/precision_option.h"
#include "tools/train_report.h"
#include "train/collective.h"
#include "train/run_folder.h"
#include "train/run_trainer.h"
#include "train/tokfsm_eval.h"
#include "train/train_config.h"

namespace fs = std::filesystem;

namespace cb::tools {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

Json resolve_request_config(const TrainRequest& r, std::optional<CheckpointInfo>* resume) {
  if (!r.resume.empty()) {
    CB_CHECK(r.config_file.empty() && r.config.is_null(),
             "--resume takes the configuration from the checkpoint; give overrides only");
    CheckpointInfo ckpt = find_checkpoint(r.resume);
    Json config = resolve_train_config(ckpt.trainer_state.at("config"), r.overrides);
    if (resume) *resume = std::move(ckpt);
    return config;
  }
  CB_CHECK(r.config_file.empty() || r.config.is_null(), "give a config file or a config mapping, not both");
  if (!r.config.is_null()) return resolve_user_train_config(r.config, "config", r.overrides);
  return resolve_train_config(r.config_file, r.overrides);
}

TrainOutcome run_training(const TrainRequest& request, const TrainEvents& events) {
  // Under mpirun every rank runs this function (docs/scale.md); rank 0 alone
  // owns the run folder: it reports, logs and writes checkpoints and the model.
  Collective& ranks = world_collective();
  const bool root = ranks.is_root();
  auto note = [&](const std::string& s) {
    if (root && events.note) events.note(s);
  };
  std::string out_dir = !request.output.empty()   ? request.output
                        : !request.resume.empty() ? run_folder_of(request.resume)
                                                  : "";
  // The run folder, locked for the whole run (train/run_folder.h): a resumed
  // run claims it before reading its checkpoints (and repairs an interrupted
  // save first), a new one once its configuration is known to be good.
  std::unique_ptr<RunFolder> folder;
  auto claim = [&](bool create) {
    if (!root) return;
    std::string option = !request.output.empty() ? "--output " + out_dir : "--resume: the run folder " + out_dir;
    folder = std::make_unique<RunFolder>(out_dir, create, option);
    for (const std::string& line : recover_checkpoints(out_dir)) note(line);
  };
  if (!request.resume.empty()) {
    claim(!request.output.empty());
    // The others read the checkpoint once rank 0 has repaired the folder.
    ranks.barrier("the run folder's recovery");
  }
  std::optional<CheckpointInfo> resume;
  Json config = resolve_request_config(request, &resume);
  TrainRunConfig run = parse_train_config(config);
  TrainOutcome outcome;
  outcome.max_steps = run.max_steps;
  CB_CHECK(!out_dir.empty(), "give the output folder with --output DIR");
  outcome.output = out_dir;
  // The device before the run folder is claimed: without a GPU, nothing is written.
  std::unique_ptr<Backend> device;
  try {
    device = make_device_backend(run.device);
  } catch (const Error& e) {
    CB_FAIL("runtime.device: " << e.what());
  }
  CB_CHECK(!device || run.trainer.precision == Precision::f32,
           "runtime.device cuda trains in f32 (runtime.precision bf16 multiplies on the CPU's bf16 kernels)");
  if (resume) {
    // A smaller max_steps (or --stop-at) would rewrite the checkpoint as if it ended the run.
    CB_CHECK(run.max_steps >= resume->step,
             "training_args.max_steps: " << run.max_steps << " is below the step of the checkpoint " << resume->dir
                                         << " (" << resume->step << "); to continue, give at least that many");
    CB_CHECK(!request.stop_at || *request.stop_at > resume->step,
             "--stop-at: " << *request.stop_at << " is not after the step of the checkpoint " << resume->dir << " ("
                           << resume->step << ")");
  }
  if (resume && resume->step >= run.max_steps) {
    // Nothing to do: no evaluation, checkpoint or export is written again.
    std::ostringstream o;
    o << "the run in " << out_dir << " is finished (step " << resume->step << " of " << run.max_steps
      << "); nothing changed. To train further, resume with a larger training_args.max_steps=N";
    note(o.str());
    outcome.step = resume->step;
    if (const Json* h = resume->trainer_state.find("log_history")) outcome.history = *h;
    return outcome;
  }
  if (!root) {
    // Rank 0 alone writes to the run folder.
  } else if (!resume) {
    claim(true);
    CB_CHECK(list_checkpoints(out_dir).empty(), out_dir << " already holds checkpoints: continue it with --resume "
                                                        << out_dir << ", or choose another --output");
    if (restart_log(*folder)) note("a new run in " + out_dir + " (it held no checkpoint): log.jsonl starts over");
  } else {
    // One timeline per folder: what was saved or logged after the step resumed
    // from belongs to the run being redone (docs/training.md, "The run folder").
    for (const std::string& line : supersede_checkpoints_after(out_dir, resume->step)) note(line);
    const Json* logged = resume->trainer_state.find("log_history");
    if (size_t cut = cut_log(*folder, resume->step, logged ? *logged : Json(Json::Array{})))
      note("log.jsonl: cut " + std::to_string(cut) + " line" + (cut == 1 ? "" : "s") + " logged after step " +
           std::to_string(resume->step));
  }
  // runtime.threads is per machine: its ranks share them.
  if (ranks.distributed()) run.trainer.num_threads = std::max(1, run.trainer.num_threads / ranks.local_size());
  set_num_threads(run.trainer.num_threads);

  check_precision_supported(run.trainer.precision, run.backend, "cpu", "runtime.precision:");
  auto backend = make_backend(run.backend);
  RunData data = make_run_data(run, model_vocab_size(run));
  TrainerOptions topts = run.trainer;
  topts.device_backend = device.get();
  topts.profile = request.profile;
  topts.profile_nodes = request.profile_nodes;
  topts.collective = &ranks;
  auto t_setup = Clock::now();
  std::unique_ptr<Trainer> trainer = make_run_trainer(run, data, topts, *backend, resume ? resume->step : 0);
  if (run.kmeans_init && !resume && run.insert_codebooks_after == 0) {
    std::ostringstream o;
    o << "k-means initialisation and compilation: " << std::fixed << std::setprecision(1) << seconds_since(t_setup)
      << " s";
    note(o.str());
  }
  Json history = Json(Json::Array{});
  if (resume) {
    load_checkpoint(*resume, *trainer);
    if (const Json* h = resume->trainer_state.find("log_history")) history = *h;
    note("resumed from " + resume->dir + " at step " + std::to_string(trainer->step()));
  }
  auto header = [&] {
    std::ostringstream o;
    print_run_header(o, run, *trainer, *data.dataset);
    std::string s = o.str();
    if (!s.empty() && s.back() == '\n') s.pop_back();
    note(s);
  };
  header();
  if (ranks.distributed()) {
    std::ostringstream o;
    o << "data-parallel: " << ranks.size() << " ranks, " << run.trainer.batch_size / ranks.size()
      << " rows of each batch of " << run.trainer.batch_size << " per rank, " << run.trainer.num_threads
      << " thread(s) each";
    note(o.str());
  }

  std::ofstream log;
  if (root) log.open(folder->log_path(), std::ios::app);
  auto emit = [&](const Json& line) {
    history.as_array().push_back(line);
    if (!root) return;
    log << line.dump() << "\n" << std::flush;
    if (events.log) events.log(line);
  };
  auto save = [&] {
    if (!request.checkpoints || !root) return;
    Json state = Json::Object{};
    state["step"] = trainer->step();
    state["config"] = config;
    state["log_history"] = history;
    note("saved " + save_checkpoint(out_dir, *trainer, state, data.fsm.get(), run.save_total_limit));
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
      line["eval_fsm_seconds"] = seconds_since(t0);
    }
    emit(line);
  };

  int64_t stop = run.max_steps;
  if (request.stop_at) stop = std::min(stop, *request.stop_at);
  LogWindow window;
  auto t_start = Clock::now();
  int64_t first_step = trainer->step(), resumed_at = first_step, profiled_from = first_step;
  while (trainer->step() < stop) {
    if (codebooks_due(run, *trainer)) {
      auto t0 = Clock::now();
      trainer = trainer_with_codebooks(run, data, topts, *backend, *trainer);
      first_step = profiled_from = trainer->step();  // the profile is the new trainer's
      std::ostringstream o;
      o << "step " << trainer->step() << ": codebooks inserted into the trained model"
        << (run.kmeans_init ? ", k-means-initialised from its activations" : "") << " (" << std::fixed
        << std::setprecision(1) << seconds_since(t0) << " s)";
      note(o.str());
      header();
    }
    StepMetrics m = trainer->train_step();
    window.add(m);
    int64_t s = trainer->step();
    // The profile leaves out a trainer's first step (first touch of its
    // buffers, weights packed, primitives made) when more steps follow.
    if (topts.profile && s == first_step + 1 && s < stop) {
      trainer->clear_train_profile();
      profiled_from = s;
    }
    double elapsed = seconds_since(t_start);
    double per_step = elapsed / double(s - resumed_at);
    if (s % run.logging_steps == 0 || s == 1 || s == run.max_steps) {
      Json line = train_log_line(s, window, *trainer);
      line["elapsed_seconds"] = elapsed;
      emit(line);
      window = LogWindow();
    }
    if (run.eval_steps > 0 && s % run.eval_steps == 0 && s != run.max_steps) evaluate();
    if (run.save_steps > 0 && s % run.save_steps == 0 && s != run.max_steps && s != stop) save();
    if (events.step && root) events.step(s, run.max_steps, m, per_step * double(run.max_steps - s));
  }
  if (topts.profile) {
    std::vector<std::pair<double, std::string>> ops;
    double total = 0;
    std::map<std::string, OpProfile> profile = trainer->train_profile();
    for (auto& [op, p] : profile) {
      ops.push_back({p.ms, op});
      total += p.ms;
    }
    std::sort(ops.rbegin(), ops.rend());
    int64_t steps = std::max<int64_t>(1, trainer->step() - profiled_from);
    std::ostringstream o;
    o << "time per training step by " << (topts.profile_nodes ? "node" : "op type") << " (" << steps << " steps"
      << (profiled_from > first_step ? " after the first" : "") << ", " << std::fixed << std::setprecision(1)
      << total / double(steps) << " ms per step):";
    for (auto& [ms, op] : ops)
      o << "\n  " << std::setw(10) << ms / double(steps) << " ms  " << std::setw(5) << std::setprecision(1)
        << 100.0 * ms / total << "%  " << op << " (" << profile.at(op).calls / steps << " calls)"
        << (profile.at(op).inputs.empty() ? "" : " " + profile.at(op).inputs);
    if (ranks.distributed())
      o << "\n  rank 0 also spent " << std::setprecision(1) << 1e3 * trainer->collective_seconds() / double(steps)
        << " ms per step in collectives (gradients, metrics, usage counts, replacement rows)";
    note(o.str());
  }
  if (trainer->step() == run.max_steps && run.eval_steps > 0) evaluate();
  // The final model goes in before the final checkpoint: a run killed in
  // between resumes from the checkpoint before and writes both again (after
  // the final checkpoint, --resume has nothing left to do).
  std::string model_path = (fs::path(out_dir) / "model.onnx").string();
  bool finished = trainer->step() == run.max_steps && request.checkpoints;
  if (finished && root) {
    ExportOptions eo;
    eo.external_data_threshold = 1 << 20;
    export_onnx(*trainer->trained_model(), model_path, eo);
    if (data.fsm) data.fsm->save((fs::path(out_dir) / "fsm.npy").string());
  }
  save();
  outcome.step = trainer->step();
  if (finished) {
    note("trained model: " + model_path);
    outcome.model_path = model_path;
  } else if (trainer->step() < run.max_steps) {
    note("stopped at step " + std::to_string(trainer->step()) + " of " + std::to_string(run.max_steps) +
         "; continue with: codebook train --resume " + out_dir);
  }
  outcome.history = std::move(history);
  return outcome;
}

}  // namespace cb::tools
