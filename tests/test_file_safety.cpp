// No lost or mixed-up files (docs/reliability.md, "Files and crashes"):
// external data paired with its model by a content hash, stale temporary
// files of killed processes removed, run folders locked and kept to runs,
// checkpoints recovered after a kill inside a save, the log cut on resume.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "frontend/onnx_export.h"
#include "frontend/onnx_import.h"
#include "support/content_hash.h"
#include "support/error.h"
#include "support/file_io.h"
#include "support/folder_lock.h"
#include "train/checkpoint.h"
#include "train/run_folder.h"

namespace cb {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("cb_file_safety_" + name + "_" + std::to_string(getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write(const fs::path& p, const std::string& bytes) { std::ofstream(p, std::ios::binary) << bytes; }

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// y = x + w with a 64-float weight (256 bytes: external above 100 bytes).
std::shared_ptr<Graph> add_model(float w_value) {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape::of({64})});
  Value* w = g->add_constant("w", Tensor::from_vector(std::vector<float>(64, w_value), {64}));
  Value* y = g->add_value("y", {DType::f32, Shape::of({64})});
  g->add_node("Add", {x, w}, {y});
  g->outputs.push_back(y);
  return g;
}

float weight_of(const std::string& model) {
  auto g = import_onnx(model);
  return g->find_value("w")->constant->data<float>()[0];
}

std::vector<std::string> data_files(const fs::path& dir) {
  std::vector<std::string> out;
  for (const std::string& n : names_in(dir))
    if (n.size() > 5 && n.compare(n.size() - 5, 5, ".data") == 0) out.push_back(n);
  return out;
}

TEST(ContentHash, DiffersForDifferentBytesAndLengths) {
  std::string a(1000, 'a'), b = a;
  b[517] = 'b';
  EXPECT_EQ(content_hash_hex(a.data(), a.size()), content_hash_hex(a.data(), a.size()));
  EXPECT_NE(content_hash_hex(a.data(), a.size()), content_hash_hex(b.data(), b.size()));
  EXPECT_NE(content_hash_hex(a.data(), 999), content_hash_hex(a.data(), 1000));
  EXPECT_NE(content_hash64("", 0), content_hash64("\0", 1));
  EXPECT_EQ(content_hash_hex(a.data(), 3).size(), 16u);
}

TEST(ExternalData, ModelAndDataAreAlwaysAPair) {
  TempDir dir("pair");
  std::string model = (dir.path / "m.onnx").string();
  ExportOptions eo;
  eo.external_data_threshold = 100;
  write(dir.path / "m.onnx.data", "a data file of the name before content hashes");
  export_onnx(*add_model(1.0f), model, eo);
  std::vector<std::string> first = data_files(dir.path);
  ASSERT_EQ(first.size(), 1u) << "the old-style m.onnx.data is removed, one hashed file written";
  ASSERT_TRUE(external_data_hash(first[0])) << first[0];
  EXPECT_EQ(weight_of(model), 1.0f);

  // A kill after the new data file was written but before the model was
  // renamed into place: the old model still reads its own data.
  std::string old_model = read(model);
  export_onnx(*add_model(2.0f), model, eo);
  std::vector<std::string> second = data_files(dir.path);
  ASSERT_EQ(second.size(), 1u) << "the first export's data file is removed";
  EXPECT_NE(second[0], first[0]);
  write(model, old_model);                                 // as if killed before the model's rename
  write(dir.path / first[0], read(dir.path / second[0]));  // worst case: wrong bytes under the old name
  try {
    weight_of(model);
    ADD_FAILURE() << "a model with another export's data loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not match the model"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(first[0]), std::string::npos) << e.what();
  }
  fs::remove(dir.path / first[0]);
  // A fresh export heals the folder: one model, one data file, the new weights.
  export_onnx(*add_model(3.0f), model, eo);
  EXPECT_EQ(data_files(dir.path).size(), 1u);
  EXPECT_EQ(weight_of(model), 3.0f);
  // Written without external data: no data file stays behind.
  export_onnx(*add_model(4.0f), model, {});
  EXPECT_TRUE(data_files(dir.path).empty());
  EXPECT_EQ(weight_of(model), 4.0f);
}

TEST(WriteFileAtomic, RemovesTemporaryFilesOfDeadProcessesOnly) {
  TempDir dir("stale");
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);  // now a pid of no process (reused only after the pid space wraps)
  fs::path target = dir.path / "f.json";
  std::string dead = atomic_temp_name(target.string(), child), live = atomic_temp_name(target.string(), getppid());
  write(dead, "left by a killed process");
  write(live, "being written by a live process");
  write(dir.path / "f.json.tmp.notapid", "not ours");
  write_file_atomic(target.string(), "new");
  EXPECT_EQ(read(target), "new");
  EXPECT_FALSE(fs::exists(dead));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(dir.path / "f.json.tmp.notapid"));
}

TEST(FolderLock, ASecondHolderIsRefusedNamingTheFirst) {
  TempDir dir("lock");
  std::string file = (dir.path / "run.lock").string();
  {
    FolderLock first(file, "the folder");
    try {
      FolderLock second(file, "the folder");  // another open file: flock refuses it as it would another process
      ADD_FAILURE() << "locked twice";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("in use by process " + std::to_string(getpid())), std::string::npos)
          << e.what();
    }
  }
  FolderLock again(file, "the folder");  // released with the first
}

TEST(RunFolder, TakesOnlyNewEmptyOrRunFolders) {
  TempDir dir("run_folder");
  fs::path user = dir.path / "mine";
  fs::create_directories(user);
  write(user / "model.onnx", "my model");
  try {
    RunFolder f(user.string(), true, "--output " + user.string());
    ADD_FAILURE() << "a user's folder taken for a run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'model.onnx'"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read(user / "model.onnx"), "my model");
  EXPECT_EQ(names_in(user), std::vector<std::string>{"model.onnx"});

  fs::path fresh = dir.path / "new" / "run";
  EXPECT_THROW(RunFolder(fresh.string(), false, "--resume"), Error);
  {
    RunFolder f(fresh.string(), true, "--output run");
    EXPECT_TRUE(fs::exists(fresh / "run.json"));
    EXPECT_THROW(RunFolder(fresh.string(), true, "--output run"), Error) << "locked while the first lives";
  }
  write(fresh / "log.jsonl", "{\"step\": 1}\n");
  RunFolder again(fresh.string(), true, "--output run");  // a run folder of ours
  EXPECT_TRUE(restart_log(again));
  EXPECT_EQ(read(fresh / "log.jsonl"), "");
}

TEST(RunFolder, ResumeCutsTheLogBackToTheCheckpoint) {
  TempDir dir("cut_log");
  RunFolder f(dir.path.string(), true, "--output");
  std::string kept = "{\"loss\": 1, \"step\": 10}\n{\"step\": 20, \"loss\": 0.5}\n{\"eval_loss\": 0.4, \"step\": 20}\n";
  write(f.log_path(), kept + "{\"loss\": 0.3, \"step\": 30}\n{\"step\": 20, \"loss\": 0.5}\n{\"loss\": 0.2, \"st");
  EXPECT_EQ(cut_log(f, 20, Json(Json::Array{})), 3u);
  EXPECT_EQ(read(f.log_path()), kept);
  EXPECT_EQ(cut_log(f, 20, Json(Json::Array{})), 0u);
  EXPECT_EQ(read(f.log_path()), kept);
  // Resumed into a folder without a log: the checkpoint's history.
  fs::remove(f.log_path());
  Json history = Json::Array{json_parse("{\"step\": 10}")};
  cut_log(f, 10, history);
  EXPECT_EQ(read(f.log_path()), "{\"step\":10}\n");
}

void fake_checkpoint(const fs::path& dir, const std::string& tag, bool complete = true) {
  fs::create_directories(dir);
  write(dir / "state.safetensors", tag);
  write(dir / "model.onnx", tag);
  if (complete) write(dir / "trainer_state.json", "{\"step\": 1}");
}

TEST(Checkpoints, RecoveryRestoresWhatAKilledSaveLeft) {
  TempDir dir("recover");
  fs::path d = dir.path;
  // Killed between renaming the old checkpoint-5 aside and the new one in.
  fake_checkpoint(d / "checkpoint-5.old", "old 5");
  fake_checkpoint(d / "checkpoint-5.tmp", "new 5");
  // Killed while writing a re-save of step 6, after moving nothing yet... and
  // an older tool's half-removed checkpoint-6 beside its aside copy.
  fake_checkpoint(d / "checkpoint-6.old", "old 6");
  fake_checkpoint(d / "checkpoint-6.tmp", "half 6", false);
  fake_checkpoint(d / "checkpoint-6", "broken 6", false);
  // A complete checkpoint-7 with leftovers of a save that never swapped.
  fake_checkpoint(d / "checkpoint-7", "7");
  fake_checkpoint(d / "checkpoint-7.tmp", "unswapped 7");
  fake_checkpoint(d / "checkpoint-3.removing", "3", false);
  // Killed inside the first save of step 8: nothing to recover.
  fake_checkpoint(d / "checkpoint-8.tmp", "half 8", false);
  EXPECT_EQ(list_checkpoints(d.string()).size(), 1u) << "before recovery only checkpoint-7 is complete";

  std::vector<std::string> report = recover_checkpoints(d.string());
  EXPECT_EQ(report.size(), 2u);
  EXPECT_EQ(names_in(d), (std::vector<std::string>{"checkpoint-5", "checkpoint-6", "checkpoint-7"}));
  EXPECT_EQ(read(d / "checkpoint-5" / "model.onnx"), "new 5");
  EXPECT_EQ(read(d / "checkpoint-6" / "model.onnx"), "old 6");
  EXPECT_EQ(read(d / "checkpoint-7" / "model.onnx"), "7");
  EXPECT_EQ(list_checkpoints(d.string()).size(), 3u);
  EXPECT_TRUE(recover_checkpoints(d.string()).empty()) << "nothing left to repair";

  // Resuming from step 5: the later checkpoints move aside, 5 stays.
  report = supersede_checkpoints_after(d.string(), 5);
  EXPECT_EQ(report.size(), 2u);
  EXPECT_EQ(names_in(d),
            (std::vector<std::string>{"checkpoint-5", "checkpoint-6.superseded", "checkpoint-7.superseded"}));
  EXPECT_EQ(find_checkpoint(d.string()).dir, (d / "checkpoint-5").string());
}

TEST(Checkpoints, RunFolderOfAResumePath) {
  TempDir dir("run_folder_of");
  EXPECT_EQ(run_folder_of((dir.path / "checkpoint-40").string()), dir.path.string());  // even when missing
  EXPECT_EQ(run_folder_of((dir.path / "checkpoint-40/").string()), dir.path.string());
  EXPECT_EQ(run_folder_of(dir.path.string()), dir.path.string());
  fake_checkpoint(dir.path / "best", "b");
  EXPECT_EQ(run_folder_of((dir.path / "best").string()), dir.path.string());
}

}  // namespace
}  // namespace cb
