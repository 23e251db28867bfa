// Faithfulness and consistency of `codebook train` / `codebook eval` on the
// small TokFSM config (configs/test_fsm.yaml): eval reports the loss without
// codebooks and with them zeroed, per-site relative MSE and explained
// variance; per-layer aggregates have the definition of a site's number; the
// training log shows dead codes before replacement and f32 values without
// noise; train's final evaluation and eval of its checkpoint sample the same
// sequences; a finished run is not resumed; vocabularies are checked; the
// per-placement lists follow codebook_at; unknown keys get a suggestion.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "support/json.h"
#include "tests/cli_util.h"

namespace cb {
namespace {

namespace fs = std::filesystem;
using test::file_bytes;
using test::run_tool;
using test::temp_dir;

const std::string kConfig = std::string(CB_SOURCE_DIR) + "/configs/test_fsm.yaml";

// The last line of the tool's output (eval --json prints one JSON line).
Json last_json(const std::string& out) {
  size_t end = out.find_last_not_of('\n');
  size_t start = out.rfind('\n', end);
  return json_parse(out.substr(start == std::string::npos ? 0 : start + 1, end + 1));
}

// One trained run shared by the tests (2 heads: attention members are 8
// wide, the MLP's 16, so per-vector sums of different widths would show).
const fs::path& trained_run() {
  static fs::path dir = [] {
    fs::path d = temp_dir("faithful") / "run";
    auto r = run_tool("train " + kConfig + " model_config_args.num_attention_heads=2 --output " + d.string());
    EXPECT_EQ(r.code, 0) << r.out;
    return d;
  }();
  return dir;
}

TEST(CliFaithful, EvalReportsLossWithoutCodebooksAndRecovered) {
  auto r = run_tool("eval " + trained_run().string() + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  Json e = last_json(r.out);
  double with = e.at("eval_loss").as_double(), without = e.at("eval_loss_bypassed").as_double();
  double zeroed = e.at("eval_loss_zero_ablated").as_double();
  EXPECT_NEAR(e.at("eval_loss_increase").as_double(), with - without, 1e-12);
  EXPECT_NEAR(e.at("eval_loss_recovered").as_double(), (zeroed - with) / (zeroed - without), 1e-12);
  // Zeroing or bypassing the codebooks changes the model. (Whether zeroing
  // costs more than it does here depends on the few training steps: the
  // release and sanitizer builds train this tiny model to different points.)
  EXPECT_NE(zeroed, with);
  EXPECT_NE(without, with);
  for (const char* key : {"eval_accuracy_bypassed", "eval_accuracy_zero_ablated"}) {
    EXPECT_GE(e.at(key).as_double(), 0.0) << key;
    EXPECT_LE(e.at(key).as_double(), 1.0) << key;
  }
  for (const char* site : {"layer0.mlp", "layer1.attn_preproj"}) {
    double rel = e.at(std::string("eval_relative_MSE/") + site).as_double();
    double ev = e.at(std::string("eval_explained_variance/") + site).as_double();
    EXPECT_GT(rel, 0.0) << site;
    EXPECT_LT(rel, 1.0) << site;
    EXPECT_LE(ev, 1.0) << site;
  }
  // The text output says what each number is.
  r = run_tool("eval " + trained_run().string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("without codebooks (each an identity): loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("relative MSE (|u-y|^2 / |u|^2)"), std::string::npos) << r.out;
}

TEST(CliFaithful, LayerAggregatesWeightSitesByWidth) {
  // eval_MSE/layerL is the mean squared error per component over the layer's
  // codebook components: both sites here are 16 wide (2 x 8 and 1 x 16), so
  // it is the plain mean of the per-site values, which the former per-member
  // sums (8-wide attention sums beside a 16-wide MLP sum) were not.
  auto r = run_tool("eval " + trained_run().string() + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  Json e = last_json(r.out);
  for (int layer = 0; layer < 2; ++layer) {
    std::string l = "layer" + std::to_string(layer);
    double attn = e.at("eval_MSE/" + l + ".attn_preproj").as_double(), mlp = e.at("eval_MSE/" + l + ".mlp").as_double();
    EXPECT_NEAR(e.at("eval_MSE/" + l).as_double(), (attn + mlp) / 2, 1e-9 * (attn + mlp)) << l;
  }
}

TEST(CliFaithful, LogShowsDeadCodesBeforeReplacementAndF32Numbers) {
  std::vector<Json> lines = test::jsonl_lines(trained_run() / "log.jsonl");
  bool replaced_seen = false;
  for (const Json& l : lines) {
    const Json* replaced = l.find("replaced_codes");
    if (!replaced || replaced->as_int() == 0) continue;
    replaced_seen = true;
    // Codes were replaced, so some were dead before it, whatever the window's fraction says.
    const Json* before = l.find("dead_code_fraction_before_replacement");
    ASSERT_TRUE(before) << l.dump();
    EXPECT_GT(before->as_double(), 0.0) << l.dump();
    EXPECT_TRUE(l.find("dead_code_fraction_before_replacement/layer1")) << l.dump();
  }
  EXPECT_TRUE(replaced_seen);
  // learning_rate 1.0e-2 is logged as the f32 it is, without double noise.
  std::string log = file_bytes(trained_run() / "log.jsonl");
  EXPECT_NE(log.find("\"learning_rate\":0.01,"), std::string::npos) << log.substr(0, 400);
  EXPECT_EQ(log.find("0.009999999"), std::string::npos);
}

TEST(CliFaithful, TrainFinalEvalAndEvalDrawTheSameSamples) {
  Json final_eval;
  for (const Json& l : test::jsonl_lines(trained_run() / "log.jsonl"))
    if (l.find("eval_transition_accuracy")) final_eval = l;
  ASSERT_TRUE(final_eval.is_object());
  auto r = run_tool("eval " + trained_run().string() + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  Json e = last_json(r.out);
  for (const char* key : {"eval_loss", "eval_accuracy", "eval_transition_accuracy", "eval_first_transition_accuracy",
                          "eval_first_transition_accuracy_probs"})
    EXPECT_EQ(e.at(key).as_double(), final_eval.at(key).as_double()) << key;
}

TEST(CliFaithful, ResumingAFinishedRunChangesNothing) {
  fs::path dir = temp_dir("faithful_resume") / "run";
  auto r =
      run_tool("train " + kConfig + " training_args.max_steps=4 training_args.save_steps=2 --output " + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  std::string log = file_bytes(dir / "log.jsonl"), state = file_bytes(dir / "checkpoint-4" / "trainer_state.json");
  auto mtime = fs::last_write_time(dir / "checkpoint-4");
  r = run_tool("train --resume " + dir.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("is finished (step 4 of 4); nothing changed"), std::string::npos) << r.out;
  EXPECT_EQ(file_bytes(dir / "log.jsonl"), log);
  EXPECT_EQ(file_bytes(dir / "checkpoint-4" / "trainer_state.json"), state);
  EXPECT_EQ(fs::last_write_time(dir / "checkpoint-4"), mtime);
}

TEST(CliFaithful, VocabularyMismatchesAreClearErrors) {
  // A GPT-2 model without a config: eval says what it needs instead of running TokFSM data.
  auto r = run_tool("eval " + std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("not the TokFSM data's 11"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dataset_args.tokenizer"), std::string::npos) << r.out;
  // Training data with more token ids than the model embeds.
  fs::path dir = temp_dir("faithful_vocab");
  r = run_tool("train " + kConfig + " model_config_args.vocab_size=2 --output " + (dir / "a").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("has 3 token ids but the model's vocabulary has 2"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Gather"), std::string::npos) << r.out;
  // A tokenizer larger than the model's vocabulary (GPT-2 BPE into a 3-token model).
  { std::ofstream(dir / "text.txt") << "The cat sat on the mat.\n"; }
  r = run_tool("train " + kConfig + " dataset_args.kind=text dataset_args.train_files=[" + (dir / "text.txt").string() +
               "] dataset_args.tokenizer=" + CB_SOURCE_DIR + "/../shared/data/gpt2-bpe --output " +
               (dir / "b").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("gpt2-bpe has 50257 token ids but the model's vocabulary has 3"), std::string::npos) << r.out;
}

TEST(CliFaithful, PerPlacementListsFollowCodebookAt) {
  // test_fsm.yaml: codebook_at [attn_preproj, mlp] with k_codebook [1, 2].
  auto r = run_tool("train " + kConfig + " codebook_args.codebook_at=[mlp] --print-config");
  ASSERT_EQ(r.code, 0) << r.out;
  Json c = json_parse(r.out).at("codebook_args");
  EXPECT_EQ(c.at("k_codebook").dump(), "[2]");
  EXPECT_EQ(c.at("codebook_type").dump(), "[\"vanilla\"]");
  EXPECT_EQ(c.at("num_codebooks").dump(), "[1]");
  fs::path dir = temp_dir("faithful_places");
  r = run_tool("train " + kConfig + " codebook_args.codebook_at=[mlp] training_args.max_steps=2 --no-checkpoint " +
               "--output " + (dir / "a").string());
  EXPECT_EQ(r.code, 0) << r.out;
  // A placement the lists never had: the error says what is needed.
  r = run_tool("train " + kConfig + " codebook_args.codebook_at=[mlp,mlp_mid,attn] --output " + (dir / "b").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("one value per placement"), std::string::npos) << r.out;
}

TEST(CliFaithful, UnknownKeysSuggestTheNearest) {
  fs::path dir = temp_dir("faithful_keys");
  auto r = run_tool("train " + kConfig + " training_args.learnin_rate=1 --output " + (dir / "a").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("did you mean 'training_args.learning_rate'?"), std::string::npos) << r.out;
  r = run_tool("train " + kConfig + " codebook_args.num_code=5 --output " + (dir / "a").string());
  EXPECT_NE(r.out.find("did you mean 'codebook_args.num_codes'?"), std::string::npos) << r.out;
  r = run_tool("train " + kConfig + " zzzz_args.x=5 --output " + (dir / "a").string());
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out.find("did you mean"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace cb
