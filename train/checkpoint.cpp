#include "train/checkpoint.h"

#include <algorithm>
#include <filesystem>

#include "frontend/onnx_export.h"
#include "frontend/safetensors.h"
#include "support/error.h"

namespace fs = std::filesystem;

namespace cb {
namespace {

constexpr const char* kPrefix = "checkpoint-";

bool complete(const fs::path& dir) {
  return fs::exists(dir / "trainer_state.json") && fs::exists(dir / "state.safetensors") &&
         fs::exists(dir / "model.onnx");
}

}  // namespace

std::vector<CheckpointInfo> list_checkpoints(const std::string& output_dir) {
  std::vector<CheckpointInfo> out;
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return out;
  for (auto& e : fs::directory_iterator(output_dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || !e.is_directory()) continue;
    std::string num = name.substr(std::string(kPrefix).size());
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;  // skips *.tmp
    if (!complete(e.path())) continue;
    out.push_back({e.path().string(), std::stoll(num), Json()});
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.step < b.step; });
  return out;
}

std::string save_checkpoint(const std::string& output_dir, const Trainer& trainer, const Json& trainer_state,
                            const Fsm* fsm, int64_t save_total_limit) {
  fs::create_directories(output_dir);
  std::string name = kPrefix + std::to_string(trainer.step());
  fs::path final_dir = fs::path(output_dir) / name;
  fs::path tmp = fs::path(output_dir) / (name + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);

  NamedTensors tensors(trainer.state().begin(), trainer.state().end());
  safetensors_write((tmp / "state.safetensors").string(), tensors, {{"format", "codebook-trainer-state"}});
  std::shared_ptr<Graph> model = trainer.trained_model();
  ExportOptions eo;
  eo.external_data_threshold = 1 << 20;
  export_onnx(*model, (tmp / "model.onnx").string(), eo);
  if (fsm) fsm->save((tmp / "fsm.npy").string());
  json_write_file((tmp / "trainer_state.json").string(), trainer_state);

  // Replace an older checkpoint of the same step (a resumed run saving again).
  if (fs::exists(final_dir)) fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);

  if (save_total_limit > 0) {
    auto all = list_checkpoints(output_dir);
    for (size_t i = 0; i + size_t(save_total_limit) < all.size(); ++i) fs::remove_all(all[i].dir);
  }
  return final_dir.string();
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
