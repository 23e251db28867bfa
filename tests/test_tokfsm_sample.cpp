// The TokFSM evaluation's sampler (train/tokfsm_eval.h) decodes with the KV
// cache; its sequences equal those of the old way, re-running every prefix
// through the full model with the same per-sequence random streams, on
// random models with codebooks of both architectures training builds
// (GPT-2: learned positions; GPT-NeoX: rotary).
#include <gtest/gtest.h>

#include <cmath>

#include "backends/backend.h"
#include "frontend/hf_import.h"
#include "passes/insert_codebooks.h"
#include "support/rng.h"
#include "train/tokfsm_eval.h"

namespace cb {
namespace {

std::shared_ptr<Graph> random_model(const std::string& type) {
  Json::Object c;
  c["model_type"] = type;
  c["vocab_size"] = 11;
  if (type == "gpt2") {
    c["n_embd"] = 32;
    c["n_layer"] = 2;
    c["n_head"] = 4;
    c["n_positions"] = 40;
  } else {
    c["hidden_size"] = 32;
    c["intermediate_size"] = 128;
    c["num_hidden_layers"] = 2;
    c["num_attention_heads"] = 4;
    c["max_position_embeddings"] = 40;
    c["rotary_pct"] = 0.25;
  }
  c["tie_word_embeddings"] = false;
  auto g = build_hf_random(hf_config_from_json(Json(c)), 5);
  CodebookConfig cc;
  cc.placements = {{Placement::attn_preproj, 16, 1, kGroupsPerHead}, {Placement::mlp, 16, 1, 1}};
  cc.seed = 2;
  insert_codebooks(*g, cc);
  return g;
}

// The sampler before the KV cache: each step runs every whole prefix.
std::vector<std::vector<int64_t>> sample_rerunning(LanguageModel& lm, int64_t count, int64_t length,
                                                   const std::vector<int64_t>& prompt, uint64_t seed) {
  std::vector<std::vector<int64_t>> seqs(size_t(count), prompt);
  std::vector<Rng> rngs;
  for (int64_t i = 0; i < count; ++i) rngs.push_back(Rng::derive(seed, 7, uint64_t(i)));
  while (int64_t(seqs[0].size()) < length) {
    std::vector<std::vector<double>> probs = lm.next_token_probs(seqs);
    for (size_t i = 0; i < seqs.size(); ++i) {
      double u = rngs[i].uniform_double(), acc = 0;
      int64_t pick = int64_t(probs[i].size()) - 1;
      for (size_t v = 0; v < probs[i].size(); ++v)
        if (u < (acc += probs[i][v])) {
          pick = int64_t(v);
          break;
        }
      seqs[i].push_back(pick);
    }
  }
  return seqs;
}

class Architectures : public ::testing::TestWithParam<std::string> {};

TEST_P(Architectures, SamplesEqualRerunningThePrefix) {
  auto backend = make_backend("cpu");
  LanguageModel lm(random_model(GetParam()), *backend, 1);
  std::vector<std::vector<int64_t>> cached = lm.sample(5, 24, {10}, 3);
  EXPECT_EQ(cached, sample_rerunning(lm, 5, 24, {10}, 3)) << GetParam();
  ASSERT_EQ(cached.size(), 5u);
  EXPECT_EQ(cached[0].size(), 24u);
  EXPECT_NE(cached[0], cached[1]);  // each sequence draws from its own stream
  // A longer prompt, and a prompt as long as the samples.
  EXPECT_EQ(lm.sample(3, 8, {10, 1, 2, 3}, 9), sample_rerunning(lm, 3, 8, {10, 1, 2, 3}, 9));
  EXPECT_EQ(lm.sample(2, 3, {10, 1, 2}, 9), (std::vector<std::vector<int64_t>>(2, {10, 1, 2})));
  EXPECT_TRUE(lm.sample(0, 8, {10}, 9).empty());
}

INSTANTIATE_TEST_SUITE_P(TrainingModels, Architectures, ::testing::Values("gpt2", "gpt_neox"));

}  // namespace
}  // namespace cb
