// Nonsense on the command line or in a training config is a clear error
// (exit 2, one "error: ..." line naming the option or config key), never exit
// 0 or a crash: every numeric option of every subcommand
// (tools/option_checks.h), thread counts, training-config values
// (train/train_config.cpp), resuming below a checkpoint's step, interventions
// past the sequence, next tokens of a model without logits, token ids past
// the vocabulary, writing into a missing folder, and nesting past the YAML
// reader's cap. docs/reliability.md lists the ranges.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "frontend/onnx_export.h"
#include "frontend/onnx_import.h"
#include "tests/cli_util.h"

namespace fs = std::filesystem;
using cb::test::file_bytes;
using cb::test::Result;
using cb::test::run_command;
using cb::test::run_tool;
using cb::test::temp_dir;

namespace {

const std::string kGpt2 = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";
const std::string kFsmConfig = std::string(CB_SOURCE_DIR) + "/configs/test_fsm.yaml";

// Exit code 2 (not a signal, not 0) and `message` in the one error line.
void expect_error(const std::string& args, const std::string& message) {
  SCOPED_TRACE(args);
  Result r = run_tool(args);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("error: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(message), std::string::npos) << "expected '" << message << "' in:\n" << r.out;
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// The options are checked as they are parsed, before any file is read, so
// the model and cache arguments need not exist.
TEST(CliOptions, EveryNumericOptionIsRangeChecked) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bench m --runs 0", "--runs: must be > 0, got 0"},
      {"bench m --warmup -1", "--warmup: must be >= 0, got -1"},
      {"bench m --shape 0x5", "bad shape '0x5'"},
      {"bench m --shape 4294967296x4294967296", "too many elements"},
      {"run m --tokens 1 --top -3", "--top: must be > 0, got -3"},
      {"run m --tokens 1 --top 0", "--top: must be > 0, got 0"},
      {"search c x --top -1", "--top: must be >= 0, got -1"},
      {"search c x --min-precision 1.5", "--min-precision: must be between 0 and 1, got 1.5"},
      {"search c x --min-precision nan", "--min-precision: must be a finite number"},
      {"search c x --topk-slots -2", "--topk-slots: must be >= 0, got -2"},
      {"code c s 1 --context -1", "--context: must be >= 0, got -1"},
      {"code c s 1 --max -2", "--max: must be >= -1, got -2"},
      {"code c s 1 --topk-slots 0", "--topk-slots: must be > 0, got 0"},
      {"code c s 1 --tokens -1", "--tokens: must be >= 0, got -1"},
      {"topics c --doc -1", "--doc: must be >= 0, got -1"},
      {"topics c --doc 0 --recall -0.5", "--recall: must be between 0 and 1, got -0.5"},
      {"topics c --doc 0 --max-chars -1", "--max-chars: must be >= 0, got -1"},
      {"serve c --port 70000", "--port: must be between 0 and 65535, got 70000"},
      {"serve c --max-body 0", "--max-body: must be > 0, got 0"},
      {"serve c --queue -1", "--queue: must be >= 0, got -1"},
      {"similar m s 1 -n -1", "-n: must be >= 0, got -1"},
      {"fsm-codes r --show -1", "--show: must be >= 0, got -1"},
      {"fsm-codes r --pairs -1", "--pairs: must be >= 0, got -1"},
      {"fsm-codes r --base 1", "--base: must be between 2 and 36, got 1"},
      {"eval m --samples 0", "--samples: must be > 0, got 0"},
      {"eval m --generate -1", "--generate: must be >= 0, got -1"},
      {"train --max-steps 0 -o d", "--max-steps: must be > 0, got 0"},
      {"train --stop-at -1 -o d", "--stop-at: must be > 0, got -1"},
      {"conformance d --timeout 0", "--timeout: must be > 0, got 0"},
      {"cache build m -o c --data tokfsm --block-size -1", "--block-size: must be >= 0, got -1"},
      {"cache build m -o c --data tokfsm --batch-size -1", "--batch-size: must be >= 0, got -1"},
      {"cache build m -o c --data tokfsm --max-tokens 0", "--max-tokens: must be > 0, or -1 for the default, got 0"},
      {"cache build m -o c --data tokfsm --index-memory-mb 0", "--index-memory-mb: must be between 1 and"},
      {"cache export c --format npz -o d --pad-id -1", "--pad-id: must be >= 0, got -1"},
  };
  for (const auto& [args, message] : cases) expect_error(args, message);
}

// --threads of every command that has one, and runtime.threads of the
// training config: -1 and tens of thousands used to be accepted, the latter
// crashing inside libgomp.
TEST(CliOptions, ThreadCountsAreBounded) {
  for (const std::string command :
       {"bench m", "run m --tokens 1", "search c x", "serve c", "cache build m -o c --data tokfsm", "fsm-codes r"}) {
    for (const char* n : {"-1", "100000"})
      expect_error(command + " --threads " + n, "--threads: must be between 1 and ");
  }
  // Commands whose default is not "all cores" refuse 0 too.
  expect_error("cache build m -o c --data tokfsm --threads 0", "--threads: must be between 1 and ");
  expect_error("fsm-codes r --threads 0", "--threads: must be between 1 and ");
  fs::path d = temp_dir("opt_threads");
  for (const char* n : {"-1", "0", "100000"}) {
    expect_error("train runtime.threads=" + std::string(n) + " -o " + (d / "run").string(),
                 "runtime.threads: must be between 1 and ");
    expect_error("eval m runtime.threads=" + std::string(n), "runtime.threads: must be between 1 and ");
  }
  EXPECT_FALSE(fs::exists(d / "run"));
  // In range works.
  Result ok = run_tool("run " + kGpt2 + " --tokens 1,2 --threads 2");
  EXPECT_EQ(ok.code, 0) << ok.out;
  fs::remove_all(d);
}

// oneDNN's OpenMP threads wait passively (tools/main.cpp): libgomp's spin
// count is 0, and a policy the user gave is kept. Under OMP_DISPLAY_ENV
// libgomp prints what it read when it loaded (the last print is the
// process that runs the command).
TEST(CliOptions, OpenMpWaitsPassively) {
  auto spin_count = [](const std::string& env) {
    Result r = run_command(env + " OMP_DISPLAY_ENV=verbose " + std::string(CB_CODEBOOK_BIN) + " --help");
    EXPECT_EQ(r.code, 0) << r.out;
    const size_t at = r.out.rfind("GOMP_SPINCOUNT = '");
    if (at == std::string::npos) return std::string("(not printed) ") + r.out;
    const size_t begin = at + std::string("GOMP_SPINCOUNT = '").size();
    return r.out.substr(begin, r.out.find('\'', begin) - begin);
  };
  EXPECT_EQ(spin_count("env -u OMP_WAIT_POLICY"), "0");
  EXPECT_EQ(spin_count("OMP_WAIT_POLICY=active"), "30000000000");
}

TEST(CliOptions, TrainingConfigValuesNameTheirKey) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"training_args.learning_rate=-1", "training_args.learning_rate: must be > 0, got -1"},
      {"training_args.learning_rate=0", "training_args.learning_rate: must be > 0, got 0"},
      {"training_args.per_device_train_batch_size=0", "training_args.per_device_train_batch_size: must be > 0"},
      {"training_args.per_device_eval_batch_size=-4", "training_args.per_device_eval_batch_size: must be > 0"},
      {"training_args.max_steps=-1", "training_args.max_steps: must be > 0, got -1"},
      {"training_args.warmup_steps=-5", "training_args.warmup_steps: must be >= 0, got -5"},
      {"training_args.eval_steps=-1", "training_args.eval_steps: must be >= 0, got -1"},
      {"training_args.save_steps=-1", "training_args.save_steps: must be >= 0, got -1"},
      {"training_args.save_total_limit=-1", "training_args.save_total_limit: must be >= 0, got -1"},
      {"training_args.max_eval_samples=0",
       "training_args.max_eval_samples: must be > 0, or -1 for the whole evaluation set, got 0"},
      {"training_args.adam_beta1=1", "training_args.adam_beta1: must be >= 0 and < 1, got 1"},
      {"training_args.adam_beta2=-0.1", "training_args.adam_beta2: must be >= 0 and < 1, got -0.1"},
      {"training_args.adam_epsilon=0", "training_args.adam_epsilon: must be > 0, got 0"},
      {"training_args.weight_decay=-0.1", "training_args.weight_decay: must be >= 0, got -0.1"},
      {"training_args.max_grad_norm=-1", "training_args.max_grad_norm: must be >= 0, got -1"},
      {"training_args.model_lr_factor=-1", "training_args.model_lr_factor: must be >= 0, got -1"},
      {"codebook_args.num_codes=0", "codebook_args.num_codes: must be > 0, got 0"},
      {"codebook_args.k_codebook=-1", "codebook_args.k_codebook: must be > 0, got -1"},
      {"codebook_args.num_codebooks=0",
       "codebook_args.num_codebooks: must be > 0, or -1 for one per attention head, got 0"},
      {"codebook_args.kmeans_init_examples=-1", "codebook_args.kmeans_init_examples: must be > 0, got -1"},
      {"codebook_args.replace_after_steps=-1", "codebook_args.replace_after_steps: must be >= 0, got -1"},
      {"codebook_args.replace_rho=-1", "codebook_args.replace_rho: must be >= 0, got -1"},
      {"dataset_args.seq_len=0", "dataset_args.seq_len: must be > 0, got 0"},
      {"dataset_args.validation_split_percentage=100",
       "dataset_args.validation_split_percentage: must be >= 0 and < 100, got 100"},
      {"fsm_args.num_states=0", "fsm_args.num_states: must be > 0, got 0"},
      {"fsm_args.representation_base=1", "fsm_args.representation_base: must be between 2 and 36, got 1"},
      {"fsm_args.max_eval_samples=-3", "fsm_args.max_eval_samples: must be > 0, got -3"},
      {"fsm_args.generate_samples=-1", "fsm_args.generate_samples: must be >= 0, got -1"},
  };
  fs::path d = temp_dir("opt_config");
  for (const auto& [override, message] : cases) {
    expect_error("train " + kFsmConfig + " " + override + " -o " + (d / "run").string(), message);
    EXPECT_FALSE(fs::exists(d / "run")) << override;
  }
  fs::remove_all(d);
}

// A tiny TokFSM run stopped at step 2 (checkpoint-2).
class CliResume : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("opt_resume");
    run_ = (dir_ / "run").string();
    Result r = run_tool("train " + kFsmConfig + " training_args.max_steps=4 training_args.save_steps=2 " +
                        "training_args.eval_steps=0 --stop-at 2 --output " + run_);
    ASSERT_EQ(r.code, 0) << r.out;
    ASSERT_TRUE(fs::exists(fs::path(run_) / "checkpoint-2" / "trainer_state.json")) << r.out;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static inline fs::path dir_;
  static inline std::string run_;
};

// Resuming with a max_steps (or --stop-at) at or below the checkpoint's step
// used to end "finished" or rewrite the checkpoint; it is an error that
// leaves the checkpoint as it was.
TEST_F(CliResume, MaxStepsBelowTheCheckpointIsAnError) {
  const fs::path state = fs::path(run_) / "checkpoint-2" / "trainer_state.json";
  const std::string before = file_bytes(state);
  expect_error("train --resume " + run_ + " --max-steps 1",
               "training_args.max_steps: 1 is below the step of the checkpoint");
  expect_error("train --resume " + run_ + " training_args.max_steps=1",
               "training_args.max_steps: 1 is below the step of the checkpoint");
  expect_error("train --resume " + run_ + " --stop-at 2", "--stop-at: 2 is not after the step of the checkpoint");
  expect_error("train --resume " + run_ + " --stop-at 1", "--stop-at: 1 is not after the step of the checkpoint");
  EXPECT_EQ(file_bytes(state), before);
  EXPECT_FALSE(fs::exists(fs::path(run_) / "checkpoint-1"));
  // Equal to the checkpoint's step is a finished run (nothing to do), not an error.
  Result same = run_tool("train --resume " + run_ + " --max-steps 2");
  EXPECT_EQ(same.code, 0) << same.out;
  EXPECT_EQ(file_bytes(state), before);
}

// A codebook model of the tiny GPT-2 (2 layers, codebooks at mlp).
class CliRunChecks : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("opt_run");
    cb_ = (dir_ / "cb.onnx").string();
    Result c = run_tool("compile " + kGpt2 + " -o " + cb_ + " --at mlp --codes 16 -k 2");
    ASSERT_EQ(c.code, 0) << c.out;
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static inline fs::path dir_;
  static inline std::string cb_;
};

// An ablation or force at a position past the sequence used to do nothing, silently.
TEST_F(CliRunChecks, InterventionPastTheSequenceIsAnError) {
  const std::string run = "run " + cb_ + " --tokens 5,17,300 ";
  expect_error(run + "--ablate layer0.mlp:1@5", "--ablate layer0.mlp:1@5: position 5 is past the sequence of 3 tokens");
  expect_error(run + "--ablate layer0.mlp:1@0,3", "position 3 is past the sequence of 3 tokens");
  expect_error(run + "--force layer1.mlp:3@-4", "--force layer1.mlp:3@-4: position -4 is past the sequence of 3");
  expect_error(run + "--disable-topk layer0.mlp:1@7", "--disable-topk layer0.mlp:1@7: position 7 is past");
  for (const char* inside : {"--ablate layer0.mlp:1@2", "--force layer1.mlp:3@-3", "--ablate layer0.mlp:1"}) {
    Result r = run_tool(run + inside);
    EXPECT_EQ(r.code, 0) << inside << "\n" << r.out;
  }
}

// --tokens on a model whose output is a hidden state used to print "next
// tokens" from it.
TEST_F(CliRunChecks, NextTokensNeedLogits) {
  std::shared_ptr<cb::Graph> g = cb::import_onnx(kGpt2);
  ASSERT_EQ(g->outputs.size(), 1u);
  cb::Node* head = g->outputs[0]->producer;  // the lm_head MatMul (or Gemm)
  ASSERT_TRUE(head);
  g->outputs = {head->inputs[0]};  // its input: the final hidden state [B, T, D]
  const std::string hidden_model = (dir_ / "hidden.onnx").string();
  cb::export_onnx(*g, hidden_model);
  const std::string name = g->outputs[0]->name;

  expect_error("run " + hidden_model + " --tokens 5,17,300", "has no logits output (its outputs: " + name + ")");
  expect_error("run " + hidden_model + " --tokens 5,17,300 --outputs " + name + " --top 3",
               "--top: " + hidden_model + " has no logits output");
  // Asking for the hidden state itself is fine.
  Result shown = run_tool("run " + hidden_model + " --tokens 5,17,300 --outputs " + name);
  EXPECT_EQ(shown.code, 0) << shown.out;
  EXPECT_EQ(shown.out.find("next tokens"), std::string::npos) << shown.out;
  Result written = run_tool("run " + hidden_model + " --tokens 5,17,300 --output-dir " + (dir_ / "out").string());
  EXPECT_EQ(written.code, 0) << written.out;
  // A model with logits still shows them.
  Result logits = run_tool("run " + kGpt2 + " --tokens 5,17,300 --top 3");
  EXPECT_EQ(logits.code, 0) << logits.out;
  EXPECT_NE(logits.out.find("top 3 next tokens"), std::string::npos) << logits.out;
}

// -o into a folder that does not exist, or "into" a file, says why.
TEST_F(CliRunChecks, WritingIntoAMissingFolderSaysWhy) {
  const fs::path missing = dir_ / "no_such_folder";
  expect_error(
      "compile " + kGpt2 + " -o " + (missing / "x.onnx").string(),
      "cannot write '" + (missing / "x.onnx").string() + "': folder '" + missing.string() + "' does not exist");
  const fs::path file = dir_ / "a_file";
  std::ofstream(file) << "x";
  expect_error("export " + kGpt2 + " -o " + (file / "x.onnx").string(), "'" + file.string() + "' is not a folder");
  expect_error("run " + kGpt2 + " --tokens 1,2 --output-dir " + file.string(), file.string());
  if (geteuid() != 0) {  // root writes into read-only folders
    const fs::path ro = dir_ / "read_only";
    fs::create_directories(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    expect_error("compile " + kGpt2 + " -o " + (ro / "x.onnx").string(), "Permission denied");
    fs::permissions(ro, fs::perms::owner_all);
  }
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

// Token ids the model cannot embed are refused before anything runs, naming
// the position (run) or both vocabularies (eval, train: the tokenizer's ids
// against the model's), not an index error deep inside Gather.
TEST(CliOptions, TokenIdsPastTheVocabularyAreRefusedUpFront) {
  fs::path d = temp_dir("opt_vocab");
  std::ofstream(d / "text.txt") << "The cat sat on the mat.\nAnother line of text here.\n";
  expect_error("run " + kGpt2 + " --tokens 1,2,600", "token id 600 at position 2 is out of range for the vocabulary");
  const std::string text_data = "dataset_args.kind=text dataset_args.tokenizer=" + std::string(CB_SOURCE_DIR) +
                                "/../shared/data/gpt2-bpe 'dataset_args.train_files=[" + (d / "text.txt").string() +
                                "]' dataset_args.seq_len=4";
  if (fs::exists(std::string(CB_SOURCE_DIR) + "/../shared/data/gpt2-bpe/vocab.json")) {
    const std::string both = "has 50257 token ids but the model's vocabulary has 500";
    expect_error("eval " + kGpt2 + " " + text_data, both);
    expect_error("train model_args.model_name_or_path=" + kGpt2 + " " + text_data + " -o " + (d / "run").string(),
                 both);
    EXPECT_FALSE(fs::exists(d / "run" / "checkpoint-1"));
  }
  fs::remove_all(d);
}

// Nesting past 512 levels in a config file (flow '[', flow '{', block
// mappings) or an override (its value or its key path) is an error, not a
// stack overflow.
TEST(CliOptions, DeepYamlIsAnError) {
  fs::path d = temp_dir("opt_yaml");
  const int n = 20000;
  std::string block;
  for (int i = 0; i < 600; ++i) block += std::string(size_t(i), ' ') + "a:\n";
  const std::vector<std::string> files = {
      "a: " + repeat("[", n) + repeat("]", n) + "\n",
      "a: " + repeat("{a: ", n) + "1" + repeat("}", n) + "\n",
      block,
  };
  for (size_t i = 0; i < files.size(); ++i) {
    fs::path f = d / ("deep" + std::to_string(i) + ".yaml");
    std::ofstream(f) << files[i];
    expect_error("train " + f.string() + " --print-config", "nesting deeper than 512 levels");
  }
  expect_error("train --print-config 'training_args.x=" + repeat("[", n) + "'", "nesting deeper than 512 levels");
  expect_error("train --print-config 'training_args.x=" + repeat("{a: ", n) + "'", "nesting deeper than 512 levels");
  expect_error("train --print-config model_config_args." + repeat("a.", 5000) + "b=1",
               "key path deeper than 512 levels");
  fs::remove_all(d);
}

}  // namespace
