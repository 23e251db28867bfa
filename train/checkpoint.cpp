#include "train/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>

#include "frontend/onnx_export.h"
#include "frontend/safetensors.h"
#include "support/error.h"
#include "support/test_delay.h"

namespace fs = std::filesystem;

namespace cb {
namespace {

constexpr const char* kPrefix = "checkpoint-";
constexpr const char* kNew = ".tmp";            // being written
constexpr const char* kOld = ".old";            // replaced by a newer save of its step
constexpr const char* kRemoving = ".removing";  // past save_total_limit
constexpr const char* kSuperseded = ".superseded";

bool complete(const fs::path& dir) {
  return fs::exists(dir / "trainer_state.json") && fs::exists(dir / "state.safetensors") &&
         fs::exists(dir / "model.onnx");
}

// The step of "checkpoint-<digits><suffix>"; nullopt for other names.
std::optional<int64_t> step_of(const std::string& name, const std::string& suffix) {
  size_t prefix = std::string(kPrefix).size();
  if (name.size() <= prefix + suffix.size() || name.rfind(kPrefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  std::string num = name.substr(prefix, name.size() - prefix - suffix.size());
  if (num.size() > 18 || num.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::stoll(num);
}

fs::path with_suffix(const fs::path& dir, const char* suffix) { return fs::path(dir.string() + suffix); }

void remove_dir(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  CB_CHECK(!ec, "cannot remove " << dir.string() << ": " << ec.message());
}

void rename_dir(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  CB_CHECK(!ec, "cannot rename " << from.string() << " to " << to.string() << ": " << ec.message());
}

// Removes a checkpoint so that no half-removed folder keeps its name.
void remove_checkpoint(const fs::path& dir) {
  fs::path removing = with_suffix(dir, kRemoving);
  remove_dir(removing);
  rename_dir(dir, removing);
  remove_dir(removing);
}

}  // namespace

std::vector<CheckpointInfo> list_checkpoints(const std::string& output_dir) {
  std::vector<CheckpointInfo> out;
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return out;
  for (auto& e : fs::directory_iterator(output_dir)) {
    std::optional<int64_t> step = step_of(e.path().filename().string(), "");  // skips *.tmp, *.old, ...
    if (!step || !e.is_directory() || !complete(e.path())) continue;
    out.push_back({e.path().string(), *step, Json()});
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.step < b.step; });
  return out;
}

std::string save_checkpoint(const std::string& output_dir, const Trainer& trainer, const Json& trainer_state,
                            const Fsm* fsm, int64_t save_total_limit) {
  fs::create_directories(output_dir);
  fs::path final_dir = fs::path(output_dir) / (kPrefix + std::to_string(trainer.step()));
  fs::path tmp = with_suffix(final_dir, kNew), old = with_suffix(final_dir, kOld);
  remove_dir(tmp);
  fs::create_directories(tmp);

  NamedTensors tensors(trainer.state().begin(), trainer.state().end());
  safetensors_write((tmp / "state.safetensors").string(), tensors, {{"format", "codebook-trainer-state"}});
  test_write_delay();
  std::shared_ptr<Graph> model = trainer.trained_model();
  ExportOptions eo;
  eo.external_data_threshold = 1 << 20;
  export_onnx(*model, (tmp / "model.onnx").string(), eo);
  if (fsm) fsm->save((tmp / "fsm.npy").string());
  test_write_delay();
  json_write_file((tmp / "trainer_state.json").string(), trainer_state);  // last: marks it complete
  test_write_delay();

  // Replace an older checkpoint of the same step (a resumed run saving again)
  // without a moment in which neither exists under a name recovery knows.
  if (fs::exists(final_dir)) {
    remove_dir(old);
    rename_dir(final_dir, old);
    test_write_delay();
    rename_dir(tmp, final_dir);
    test_write_delay();
    remove_dir(old);
  } else {
    rename_dir(tmp, final_dir);
  }

  if (save_total_limit > 0) {
    auto all = list_checkpoints(output_dir);
    for (size_t i = 0; i + size_t(save_total_limit) < all.size(); ++i) remove_checkpoint(all[i].dir);
  }
  return final_dir.string();
}

std::vector<std::string> recover_checkpoints(const std::string& output_dir) {
  std::vector<std::string> report;
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return report;
  struct Copies {
    bool real = false, fresh = false, old = false;
  };
  std::map<int64_t, Copies> steps;
  std::vector<fs::path> removing;
  for (auto& e : fs::directory_iterator(output_dir)) {
    if (!e.is_directory()) continue;
    std::string name = e.path().filename().string();
    if (auto s = step_of(name, ""))
      steps[*s].real = true;
    else if (auto s = step_of(name, kNew))
      steps[*s].fresh = true;
    else if (auto s = step_of(name, kOld))
      steps[*s].old = true;
    else if (step_of(name, kRemoving))
      removing.push_back(e.path());
  }
  for (auto& dir : removing) remove_dir(dir);
  for (auto& [step, c] : steps) {
    fs::path real = fs::path(output_dir) / (kPrefix + std::to_string(step));
    fs::path fresh = with_suffix(real, kNew), old = with_suffix(real, kOld);
    if (!(c.real && complete(real))) {
      for (auto [copy, exists, what] : {std::tuple{fresh, c.fresh, "its interrupted save"},
                                        std::tuple{old, c.old, "the copy its interrupted save had moved aside"}}) {
        if (!exists || !complete(copy)) continue;
        if (c.real) remove_dir(real);
        rename_dir(copy, real);
        report.push_back("recovered " + real.string() + " from " + what + " (" + copy.filename().string() + ")");
        c.real = true;
        break;
      }
    }
    if (c.fresh) remove_dir(fresh);
    if (c.old) remove_dir(old);
  }
  return report;
}

std::vector<std::string> supersede_checkpoints_after(const std::string& output_dir, int64_t step) {
  std::vector<std::string> report;
  for (const CheckpointInfo& c : list_checkpoints(output_dir)) {
    if (c.step <= step) continue;
    fs::path aside = with_suffix(c.dir, kSuperseded);
    remove_dir(aside);
    rename_dir(c.dir, aside);
    report.push_back("moved " + c.dir + " (later than step " + std::to_string(step) + ") aside to " +
                     aside.filename().string());
  }
  return report;
}

std::string run_folder_of(const std::string& resume_path) {
  fs::path p = fs::path(resume_path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "dir/"
  std::error_code ec;
  if (step_of(p.filename().string(), "") || fs::exists(p / "trainer_state.json", ec)) {
    fs::path parent = p.parent_path();
    return parent.empty() ? "." : parent.string();
  }
  return p.string();
}

CheckpointInfo find_checkpoint(const std::string& path) {
  std::error_code ec;
  CB_CHECK(fs::is_directory(path, ec), "--resume " << path << ": no such folder");
  CheckpointInfo info;
  if (fs::exists(fs::path(path) / "trainer_state.json")) {
    CB_CHECK(complete(path), "--resume " << path << ": the checkpoint is incomplete (needs trainer_state.json, "
                                         << "state.safetensors and model.onnx)");
    info.dir = path;
  } else {
    auto all = list_checkpoints(path);
    CB_CHECK(!all.empty(), "--resume " << path << ": no checkpoint-<step> folder in it");
    info.dir = all.back().dir;
  }
  info.trainer_state = json_read_file((fs::path(info.dir) / "trainer_state.json").string());
  info.step = info.trainer_state.at("step").as_int();
  return info;
}

void load_checkpoint(const CheckpointInfo& ckpt, Trainer& trainer) {
  auto f = SafetensorsFile::open((fs::path(ckpt.dir) / "state.safetensors").string());
  std::map<std::string, Tensor> state;
  for (auto& e : f->entries()) state[e.name] = f->tensor(e.name);
  trainer.load_state(state, ckpt.step);
}

}  // namespace cb
