// `codebook train` and `codebook eval` end to end on the small TokFSM config
// (configs/test_fsm.yaml): the loss falls, checkpoints are complete, a run
// stopped and resumed ends bit-identical to an uninterrupted one, the trained
// model works with the other tools, and bad input is a clear error.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <thread>

#include "support/json.h"
#include "tests/cli_util.h"

namespace cb {
namespace {

namespace fs = std::filesystem;
using test::file_bytes;
using test::run_tool;
using test::temp_dir;

const std::string kConfig = std::string(CB_SOURCE_DIR) + "/configs/test_fsm.yaml";

TEST(CliTrain, LossFallsAndCheckpointsAreComplete) {
  fs::path dir = temp_dir("train_basic") / "run";
  auto r = run_tool("train " + kConfig + " --output " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<Json> lines = test::jsonl_lines(dir / "log.jsonl");
  std::vector<double> losses;
  bool eval_seen = false;
  for (auto& l : lines) {
    if (l.find("loss")) losses.push_back(l.at("loss").as_double());
    if (l.find("eval_loss")) {
      eval_seen = true;
      EXPECT_TRUE(l.find("eval_transition_accuracy")) << l.dump();
      EXPECT_TRUE(l.find("eval_dead_code_fraction")) << l.dump();
    }
  }
  ASSERT_GE(losses.size(), 3u);
  EXPECT_LT(losses.back(), losses.front() - 0.2) << "the loss did not fall";
  EXPECT_TRUE(eval_seen);
  for (const char* f : {"model.onnx", "state.safetensors", "trainer_state.json", "fsm.npy"})
    EXPECT_TRUE(fs::exists(dir / "checkpoint-40" / f)) << f;
  EXPECT_TRUE(fs::exists(dir / "checkpoint-20"));
  EXPECT_TRUE(fs::exists(dir / "model.onnx"));
  // Dead-code replacement ran (replace_after_steps: 2 in the config).
  bool replaced = false;
  for (auto& l : lines)
    if (const Json* v = l.find("replaced_codes")) replaced |= v->as_int() > 0;
  EXPECT_TRUE(replaced);

  // The trained model is an ordinary compiled model.
  auto run = run_tool("run " + (dir / "model.onnx").string() + " --tokens 2,0,1,1,0 --show-codes layer0.mlp");
  EXPECT_EQ(run.code, 0) << run.out;
  auto ev = run_tool("eval " + dir.string() + " --json");
  ASSERT_EQ(ev.code, 0) << ev.out;
  Json e = json_parse(ev.out.substr(ev.out.find('{')));
  EXPECT_LT(e.at("eval_loss").as_double(), losses.front());
  EXPECT_GE(e.at("eval_transition_accuracy").as_double(), 0.0);

  // What the codes mean: purity per site, and steering. With b ending in a's
  // digit and every codebook forced, everything the position holds besides
  // its token comes from the forced codes, so the model must behave exactly
  // as in state b (JSD 0), while a and b themselves differ.
  auto codes = run_tool("fsm-codes " + dir.string() + " --site layer0.mlp --threads 1");
  ASSERT_EQ(codes.code, 0) << codes.out;
  EXPECT_NE(codes.out.find("layer1.attn_preproj    purity"), std::string::npos) << codes.out;
  size_t row = codes.out.find("all codebooks        same last digit");
  ASSERT_NE(row, std::string::npos) << codes.out;
  std::istringstream fields(codes.out.substr(row + std::string("all codebooks        same last digit").size()));
  double jsd_clean = -1, jsd_forced = -1;
  fields >> jsd_clean >> jsd_forced;
  EXPECT_GT(jsd_clean, 0.001) << codes.out;
  EXPECT_LT(jsd_forced, 1e-6) << codes.out;
}

TEST(CliTrain, ResumeIsBitIdentical) {
  fs::path root = temp_dir("train_resume");
  auto full = run_tool("train " + kConfig + " --output " + (root / "full").string());
  ASSERT_EQ(full.code, 0) << full.out;
  auto first = run_tool("train " + kConfig + " --stop-at 13 --output " + (root / "parts").string());
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_TRUE(fs::exists(root / "parts" / "checkpoint-13"));
  EXPECT_FALSE(fs::exists(root / "parts" / "model.onnx"));
  auto second = run_tool("train --resume " + (root / "parts").string());
  ASSERT_EQ(second.code, 0) << second.out;
  for (const char* f : {"state.safetensors", "model.onnx"})
    EXPECT_TRUE(file_bytes(root / "full" / "checkpoint-40" / f) == file_bytes(root / "parts" / "checkpoint-40" / f))
        << f << " differs after resuming";
  // The logged losses after the resume point match too.
  auto a = test::jsonl_lines(root / "full" / "log.jsonl"), b = test::jsonl_lines(root / "parts" / "log.jsonl");
  auto last_loss = [](const std::vector<Json>& ls) {
    for (auto it = ls.rbegin(); it != ls.rend(); ++it)
      if (it->find("loss")) return it->at("loss").as_double();
    return -1.0;
  };
  EXPECT_EQ(last_loss(a), last_loss(b));
}

// codebook_args.insert_after_steps: the model trains alone, then gets its
// codebooks (k-means-initialised); stopping before, at and after the
// insertion and resuming ends bit-identical to the uninterrupted run.
TEST(CliTrain, CodebooksInsertedMidRunResumeBitIdentical) {
  fs::path root = temp_dir("train_insert");
  std::string staged = kConfig +
                       " codebook_args.insert_after_steps=10 codebook_args.kmeans_init=true"
                       " codebook_args.kmeans_init_examples=16";
  auto full = run_tool("train " + staged + " --output " + (root / "full").string());
  ASSERT_EQ(full.code, 0) << full.out;
  EXPECT_NE(full.out.find("step 10: codebooks inserted"), std::string::npos) << full.out;
  // Steps 1..10 log no codebook metrics, later steps do.
  for (auto& l : test::jsonl_lines(root / "full" / "log.jsonl"))
    if (const Json* step = l.find("step"); step && l.find("loss"))
      EXPECT_EQ(l.find("MSE") != nullptr, step->as_int() > 10) << l.dump();
  std::string parts = (root / "parts").string();
  for (const std::string& leg : {"train " + staged + " --stop-at 10 --output " + parts,
                                 "train --resume " + parts + " --stop-at 11", "train --resume " + parts}) {
    auto r = run_tool(leg);
    ASSERT_EQ(r.code, 0) << leg << "\n" << r.out;
  }
  for (const char* f : {"state.safetensors", "model.onnx"})
    EXPECT_TRUE(file_bytes(root / "full" / "checkpoint-40" / f) == file_bytes(root / "parts" / "checkpoint-40" / f))
        << f << " differs after resuming";
  auto codes =
      run_tool("run " + (root / "full" / "model.onnx").string() + " --tokens 2,0,1,1,0 --show-codes layer0.mlp");
  EXPECT_EQ(codes.code, 0) << codes.out;
  auto bad = run_tool("train " + kConfig + " codebook_args.insert_after_steps=40 --output " + (root / "bad").string());
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("insert_after_steps"), std::string::npos) << bad.out;
}

// A text dataset end to end: JSONL documents, the GPT-2 byte-level BPE of
// ../shared/data/gpt2-bpe, a small GPT-2 built from scratch with codebooks.
TEST(CliTrain, TextDatasetTrains) {
  fs::path dir = temp_dir("train_text");
  fs::create_directories(dir);
  {
    std::ofstream corpus(dir / "corpus.jsonl");
    const char* sentences[] = {"The cat sat on the mat.", "A dog ran in the park.", "The sun is warm today.",
                               "Birds sing in the morning."};
    for (int i = 0; i < 200; ++i)
      corpus << "{\"text\": \"" << sentences[i % 4] << " " << sentences[(i / 4) % 4] << "\"}\n";
    std::ofstream config(dir / "text.yaml");
    config << "model_config_args:\n  model_type: gpt2\n  vocab_size: 50257\n  n_embd: 32\n  n_layer: 2\n"
              "  n_head: 2\n  n_positions: 32\n"
              "codebook_args:\n  codebook_at: [mlp]\n  codebook_type: [vanilla]\n  num_codebooks: [1]\n"
              "  k_codebook: [2]\n  num_codes: 32\n"
              "dataset_args:\n  kind: text\n  seq_len: 32\n  train_files: ["
           << (dir / "corpus.jsonl").string() << "]\n  tokenizer: " << CB_SOURCE_DIR
           << "/../shared/data/gpt2-bpe\n  validation_split_percentage: 10\n"
              "training_args:\n  per_device_train_batch_size: 4\n  per_device_eval_batch_size: 8\n"
              "  learning_rate: 1.0e-2\n  max_steps: 30\n  logging_steps: 10\n  eval_steps: 30\n"
              "  save_steps: 30\nruntime:\n  threads: 1\n";
  }
  auto r = run_tool("train " + (dir / "text.yaml").string() + " --output " + (dir / "run").string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::vector<double> losses;
  bool eval_seen = false;
  for (auto& l : test::jsonl_lines(dir / "run" / "log.jsonl")) {
    if (l.find("loss")) losses.push_back(l.at("loss").as_double());
    if (const Json* e = l.find("eval_loss")) eval_seen = std::isfinite(e->as_double());
  }
  ASSERT_GE(losses.size(), 3u);
  EXPECT_LT(losses.back(), losses.front() - 1.0) << "the loss did not fall";
  EXPECT_TRUE(eval_seen);
  EXPECT_TRUE(fs::exists(dir / "run" / "model.onnx"));
}

TEST(CliTrain, BadInputIsAClearError) {
  fs::path dir = temp_dir("train_bad");
  auto r = run_tool("train " + kConfig + " training_args.learnin_rate=1 --output " + (dir / "a").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("unknown key 'training_args.learnin_rate'"), std::string::npos) << r.out;
  r = run_tool("train " + kConfig + " codebook_args.codebook_at=[nowhere,mlp] --output " + (dir / "a").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("nowhere"), std::string::npos) << r.out;
  r = run_tool("train " + kConfig + " training_args.max_steps=2 training_args.save_steps=1 --output " +
               (dir / "b").string());
  ASSERT_EQ(r.code, 0) << r.out;
  // A folder that holds a run is never overwritten by a new one.
  r = run_tool("train " + kConfig + " --output " + (dir / "b").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--resume"), std::string::npos) << r.out;
  r = run_tool("train --resume " + (dir / "nothing").string());
  EXPECT_EQ(r.code, 2);
  r = run_tool("train " + kConfig + " dataset_args.kind=text --output " + (dir / "c").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("train_files"), std::string::npos) << r.out;
}

// The steps of a log's training lines, in order.
std::vector<int64_t> loss_steps(const fs::path& log) {
  std::vector<int64_t> steps;
  for (auto& l : test::jsonl_lines(log))
    if (l.find("loss")) steps.push_back(l.at("step").as_int());
  return steps;
}

// The log's training lines are of increasing steps (none logged twice), up to `last`.
void expect_each_step_logged_once(const fs::path& log, int64_t last) {
  std::vector<int64_t> steps = loss_steps(log);
  ASSERT_FALSE(steps.empty());
  for (size_t i = 1; i < steps.size(); ++i) EXPECT_GT(steps[i], steps[i - 1]) << "step " << steps[i] << " logged twice";
  EXPECT_EQ(steps.back(), last);
}

// A run folder holds one run at a time (run.lock) and only runs (run.json):
// a user's files are never replaced, a second run is refused naming the
// first, and a run killed mid-way resumes with a log that repeats no step.
TEST(CliTrain, RunFolderIsLockedAndKeptToRuns) {
  fs::path root = temp_dir("train_folder");
  fs::path user = root / "mine";
  fs::create_directories(user);
  { std::ofstream(user / "model.onnx") << "my model"; }
  { std::ofstream(user / "log.jsonl") << "my notes\n"; }
  auto r = run_tool("train " + kConfig + " --output " + user.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("not a training run's"), std::string::npos) << r.out;
  EXPECT_EQ(file_bytes(user / "model.onnx"), "my model");
  EXPECT_EQ(file_bytes(user / "log.jsonl"), "my notes\n");

  // A slow run (a checkpoint every step, each save paused) in the background.
  fs::path run = root / "run";
  auto bg = test::run_command("CB_TEST_WRITE_DELAY_MS=300 " + std::string(CB_CODEBOOK_BIN) + " train " + kConfig +
                              " training_args.save_steps=1 training_args.logging_steps=1 --progress off --output " +
                              run.string() + " >/dev/null 2>&1 & echo $!");
  ASSERT_EQ(bg.code, 0) << bg.out;
  pid_t pid = pid_t(std::stol(bg.out));
  auto holder = [&] { return file_bytes(run / "run.lock"); };
  for (int i = 0; i < 400 && holder() != std::to_string(pid) + "\n"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (holder() != std::to_string(pid) + "\n") ::kill(pid, SIGKILL);
  ASSERT_EQ(holder(), std::to_string(pid) + "\n");
  for (const std::string& second :
       {"train " + kConfig + " --output " + run.string(), "train --resume " + run.string()}) {
    r = run_tool(second);
    EXPECT_EQ(r.code, 2) << second << "\n" << r.out;
    EXPECT_NE(r.out.find("in use by process " + std::to_string(pid)), std::string::npos) << r.out;
  }
  // Killed after its second checkpoint, most likely inside a save (where it
  // spends most of its time), after logging the step being saved.
  bool saved = false;
  for (int i = 0; i < 800 && !saved; ++i) {
    saved = fs::exists(run / "checkpoint-2" / "trainer_state.json");
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(saved) << "no checkpoint-2 after 40 s";
  for (int i = 0; i < 200 && ::kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  r = run_tool("train --resume " + run.string());
  ASSERT_EQ(r.code, 0) << r.out;
  expect_each_step_logged_once(run / "log.jsonl", 40);
}

// Resuming from an older checkpoint: the later ones move aside (the one
// resumed from stays), the log is cut back to its step, and the redone
// steps save the same checkpoint again.
TEST(CliTrain, ResumingFromAnOlderCheckpointKeepsOneTimeline) {
  fs::path dir = temp_dir("train_older") / "run";
  auto r =
      run_tool("train " + kConfig +
               " training_args.save_steps=10 training_args.save_total_limit=5 --stop-at 30 --output " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(loss_steps(dir / "log.jsonl").back(), 30);
  r = run_tool("train --resume " + (dir / "checkpoint-10").string() + " --stop-at 20");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("aside to checkpoint-30.superseded"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir / "checkpoint-10" / "state.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "checkpoint-30.superseded"));
  EXPECT_FALSE(fs::exists(dir / "checkpoint-30"));
  EXPECT_TRUE(file_bytes(dir / "checkpoint-20" / "state.safetensors") ==
              file_bytes(dir / "checkpoint-20.superseded" / "state.safetensors"));
  expect_each_step_logged_once(dir / "log.jsonl", 20);
}

// A kill between moving a re-saved checkpoint's old copy aside and renaming
// the new one in leaves checkpoint-N.tmp only: resume recovers it.
TEST(CliTrain, ResumeRecoversAnInterruptedSave) {
  fs::path dir = temp_dir("train_recover") / "run";
  auto r =
      run_tool("train " + kConfig + " training_args.max_steps=4 training_args.save_steps=2 --output " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::string state = file_bytes(dir / "checkpoint-4" / "state.safetensors");
  fs::rename(dir / "checkpoint-4", dir / "checkpoint-4.tmp");
  r = run_tool("train --resume " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("recovered"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("is finished (step 4 of 4)"), std::string::npos) << r.out;
  EXPECT_TRUE(file_bytes(dir / "checkpoint-4" / "state.safetensors") == state);
  EXPECT_FALSE(fs::exists(dir / "checkpoint-4.tmp"));
}

}  // namespace
}  // namespace cb
