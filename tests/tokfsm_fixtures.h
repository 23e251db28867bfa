// A small TokFSM model and dataset for the trainer's tests: a GPT-NeoX with
// per-head attn_preproj codebooks and one on the MLP output (k = 1), and a
// random FSM's samples.
#pragma once
#include <memory>

#include "frontend/hf_import.h"
#include "passes/insert_codebooks.h"
#include "train/trainer.h"

namespace cb::test {

inline std::shared_ptr<Graph> tiny_tokfsm_model(int64_t hidden, int64_t layers, int64_t codes) {
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

inline TokFsmSetup tokfsm_setup(int64_t seq, int64_t batch) {
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

}  // namespace cb::test
