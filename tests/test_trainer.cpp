// The trainer on a small TokFSM model: a trainer restored from another's
// state continues bit-identically with dead-code replacement on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "backends/backend.h"
#include "frontend/hf_import.h"
#include "passes/insert_codebooks.h"
#include "support/error.h"
#include "train/trainer.h"

namespace cb {
namespace {

std::shared_ptr<Graph> tiny_tokfsm_model(int64_t hidden, int64_t layers, int64_t codes) {
  Json::Object c;
  c["model_type"] = "gpt_neox";
  c["vocab_size"] = 11;
  c["hidden_size"] = hidden;
  c["intermediate_size"] = 4 * hidden;
  c["num_hidden_layers"] = layers;
  c["num_attention_heads"] = 4;
  c["max_position_embeddings"] = 128;
  c["rotary_pct"] = 0.25;
  c["tie_word_embeddings"] = false;
  HfConfig hc = hf_config_from_json(Json(c));
  auto g = build_hf_random(hc, 1);
  CodebookConfig cc;
  cc.placements = {{Placement::attn_preproj, codes, 1, kGroupsPerHead}, {Placement::mlp, codes, 1, 1}};
  cc.seed = 2;
  insert_codebooks(*g, cc);
  return g;
}

struct TokFsmSetup {
  std::shared_ptr<TokFsmDataset> data;
  TrainerOptions opts;
};

TokFsmSetup tokfsm_setup(int64_t seq, int64_t batch) {
  Fsm::Config fc;
  auto fsm = std::make_shared<Fsm>(Fsm::random(fc));
  TokFsmDataset::Config dc;
  dc.seq_len = seq;
  dc.eval_samples = 16;
  TokFsmSetup s{std::make_shared<TokFsmDataset>(fsm, dc), {}};
  s.opts.batch_size = batch;
  s.opts.eval_batch_size = 8;
  s.opts.schedule.base_lr = 1e-3f;
  s.opts.graph.optimizer.max_grad_norm = 1.f;
  return s;
}

// A trainer restored from another's state continues bit-identically, with
// dead-code replacement on; evaluating in between changes nothing; replaced
// codes are counted.
TEST(Trainer, RestoredStateContinuesBitIdentically) {
  TokFsmSetup s = tokfsm_setup(32, 4);
  s.opts.replace_after_steps = 2;
  auto backend = make_backend("cpu");
  auto factory = [] { return tiny_tokfsm_model(32, 2, 20); };
  Trainer a(factory, s.data, s.opts, *backend);
  for (int i = 0; i < 3; ++i) a.train_step();
  std::map<std::string, Tensor> saved;
  for (auto& [name, t] : a.state()) saved[name] = t.clone();
  Trainer b(factory, s.data, s.opts, *backend);
  b.load_state(saved, a.step());
  a.evaluate();
  for (int i = 0; i < 3; ++i) {
    StepMetrics ma = a.train_step(), mb = b.train_step();
    EXPECT_EQ(ma.loss, mb.loss) << "step " << a.step();
  }
  ASSERT_EQ(a.state().size(), b.state().size());
  for (auto& [name, t] : a.state()) EXPECT_TRUE(t.bitwise_equal(b.state().at(name))) << name;
  int64_t replaced = 0;
  for (auto& st : a.take_codebook_stats()) replaced += st.replaced;
  EXPECT_GT(replaced, 0);
  // A state from another configuration is refused, naming the tensor.
  saved.erase(saved.begin());
  EXPECT_THROW(b.load_state(saved, 3), Error);
}

// Training on the cpu backend follows the reference backend: parameters are
// graph inputs fed anew each step (the matmul kernels must never use a stale
// packed copy of them), frozen model weights are graph constants (packed once).
TEST(Trainer, CpuStepsFollowTheReferenceBackend) {
  for (bool train_model : {true, false}) {
    SCOPED_TRACE(train_model ? "model and codebooks trained" : "codebooks trained, model frozen");
    TokFsmSetup s = tokfsm_setup(16, 2);
    s.opts.graph.train_model = train_model;
    auto factory = [] { return tiny_tokfsm_model(32, 1, 20); };
    auto cpu = make_backend("cpu"), ref = make_backend("reference");
    Trainer a(factory, s.data, s.opts, *cpu), b(factory, s.data, s.opts, *ref);
    for (int i = 0; i < 4; ++i) {
      StepMetrics ma = a.train_step(), mb = b.train_step();
      EXPECT_NEAR(ma.loss, mb.loss, 1e-4 * std::max(1.0, std::abs(double(mb.loss)))) << "step " << a.step();
    }
    for (auto& [name, t] : a.state()) {
      const Tensor& r = b.state().at(name);
      if (t.dtype() != DType::f32) continue;
      for (int64_t i = 0; i < t.numel(); ++i)
        ASSERT_NEAR(t.data<float>()[i], r.data<float>()[i], 1e-4) << name << " at " << i;
    }
  }
}

}  // namespace
}  // namespace cb
