// Attention fusion (passes/fuse_attention.h) on whole models: the kernels
// against the reference are in the op harness (tests/op_cases/attention.cpp),
// the rewrite itself in golden IR (tests/golden/fuse-attention/), and every
// test model fused against ONNX Runtime in tests/test_models.cpp. Here:
//   - a tapped attention pattern keeps its layer unfused, the other layer
//     fuses, and the tap and the logits equal the unfused graph's;
//   - a compiled model (codebooks at qkv and attn_preproj) fuses every layer
//     and gives the unfused model's logits and code ids;
//   - a kv-cache graph (passes/kv_cache.h: attention over [cache | new])
//     fuses in every layer of every test model and gives the unfused
//     graph's outputs for a prefill and decode steps;
//   - GPT-Neo's local window at 2 x 100 tokens (several row and key blocks,
//     skipped blocks left of the window, left padding) and GPT-2 at 3 x 128
//     fused (and their layouts folded) on 3 threads equal the unfused graph;
//   - the inference graphs of the GPT-2 exports and GPT-Neo keep no Split or
//     Transpose once the layouts fold.
#include <gtest/gtest.h>

#include <random>

#include "frontend/npy.h"
#include "frontend/onnx_import.h"
#include "ir/attention.h"
#include "ir/graph_clone.h"
#include "ir/verifier.h"
#include "passes/fold_attention_layouts.h"
#include "passes/fuse_attention.h"
#include "passes/inference_pipeline.h"
#include "passes/insert_codebooks.h"
#include "passes/interventions.h"
#include "passes/kv_cache.h"
#include "tests/model_fixtures.h"
#include "tests/test_util.h"
#include "tools/model_io.h"

namespace cb {
namespace {

using test::run_graph;

std::string model_path(const std::string& name) {
  return std::string(CB_SOURCE_DIR) + "/tests/models/" + name + "/model.onnx";
}

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (auto& node : g.nodes()) n += node->op_type == op;
  return n;
}

// The output named `name` of a run of g.
const Tensor& output(const Graph& g, const std::vector<Tensor>& outs, const std::string& name) {
  for (size_t i = 0; i < g.outputs.size(); ++i)
    if (g.outputs[i]->name == name) return outs[i];
  throw Error("no output " + name);
}

// Random token ids with the first `pad[b]` positions of row b masked out.
std::map<std::string, Tensor> padded_inputs(const Graph& g, int64_t batch, int64_t seq, std::vector<int64_t> pad) {
  std::mt19937 rng(7);
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < batch * seq; ++i) ids.push_back(int64_t(rng() % 500));
  std::map<std::string, Tensor> in = tools::lm_inputs(g, ids, batch, seq);
  if (in.count("attention_mask")) {
    Tensor& m = in["attention_mask"];
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t t = 0; t < pad[size_t(b)]; ++t) m.data<int64_t>()[b * seq + t] = 0;
  }
  return in;
}

TEST(FuseAttention, TappedPatternStaysUnfused) {
  auto plain = import_onnx(model_path("gpt2"));
  InterventionSet taps;
  taps.taps = {"layer0.attn_pattern"};
  InterventionsPass tap(taps);
  PassManager().run(tap, *plain);
  auto fused = clone_graph(*plain);
  EXPECT_EQ(fuse_attention(*fused), 1);
  EXPECT_EQ(count_op(*fused, "Softmax"), 1);
  EXPECT_EQ(count_op(*fused, "Attention"), 1);
  auto in = padded_inputs(*plain, 2, 16, {0, 5});
  auto want = run_graph(plain, "cpu", in);
  auto got = run_graph(fused, "cpu", in);
  ASSERT_EQ(got.size(), want.size());
  test::expect_tensors_near(output(*fused, got, "layer0.attn_pattern"), output(*plain, want, "layer0.attn_pattern"),
                            test::abs_rel(0, 0), "tap");
  EXPECT_LE(test::max_abs_diff(output(*fused, got, "logits"), output(*plain, want, "logits")), 1e-5);
}

TEST(FuseAttention, CompiledModelFusesEveryLayer) {
  auto plain = import_onnx(model_path("gpt-neox"));
  CodebookConfig cfg;
  cfg.placements = {{Placement::qkv, 16, 2, 1}, {Placement::attn_preproj, 16, 2, kGroupsPerHead}};
  insert_codebooks(*plain, cfg);
  auto fused = clone_graph(*plain);
  EXPECT_EQ(fuse_attention(*fused), 2);
  auto in = padded_inputs(*plain, 2, 16, {0, 5});
  auto want = run_graph(plain, "cpu", in);
  auto got = run_graph(fused, "cpu", in);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(plain->outputs[i]->name);
    if (got[i].dtype() == DType::i64)
      EXPECT_TRUE(got[i].bitwise_equal(want[i]));
    else
      EXPECT_LE(test::max_abs_diff(got[i], want[i]), 1e-5);
  }
}

// The feeds of a kv-cache graph (passes/kv_cache.h) for `n` new tokens after
// `past` cached positions of a cache of `capacity` slots: random ids, and
// random finite values in every cache slot (also those past `past`, which
// the graph must mask).
std::map<std::string, Tensor> kv_feeds(const Graph& g, int64_t n, int64_t past, int64_t capacity, std::mt19937& rng) {
  std::map<std::string, Tensor> in;
  std::uniform_real_distribution<float> u(-1, 1);
  for (const Value* v : g.inputs) {
    const std::string& name = v->name;
    if (name == "input_ids") {
      std::vector<int64_t> ids;
      for (int64_t i = 0; i < n; ++i) ids.push_back(int64_t(rng() % 500));
      in[name] = Tensor::from_vector(ids, {1, n});
    } else if (name == kPastLengthInput) {
      in[name] = Tensor::from_vector<int64_t>({past}, {1});
    } else if (name == "position_ids") {
      std::vector<int64_t> pos;
      for (int64_t i = 0; i < n; ++i) pos.push_back(past + i);
      in[name] = Tensor::from_vector(pos, {1, n});
    } else if (name == "attention_mask") {
      in[name] = Tensor::from_vector(std::vector<int64_t>(size_t(n), 1), {1, n});
    } else {
      const Shape& s = v->type.shape;  // past.L.key [B, H, dh, C] or past.L.value [B, H, C, dh]
      const bool key = name.size() > 4 && name.substr(name.size() - 4) == ".key";
      Tensor t = Tensor::empty(DType::f32, key ? std::vector<int64_t>{1, s.dims[1].value, s.dims[2].value, capacity}
                                               : std::vector<int64_t>{1, s.dims[1].value, capacity, s.dims[3].value});
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
      in[name] = t;
    }
  }
  return in;
}

// A kv-cache graph's attention over [cache | new] fuses in every layer of
// every test model (the cached keys and values as inputs 4 and 5), its
// layouts fold, and a prefill and a decode step (with cache slots past the
// valid ones holding junk) give the unfused graph's logits and presents on
// the cpu (3 threads) and reference backends.
TEST(FuseAttention, KvCacheGraphsFuseEveryLayer) {
  for (const std::string& model : test::model_names()) {
    SCOPED_TRACE(model);
    auto plain = import_onnx(model_path(model));
    KvCacheOptions opts;
    opts.context = 64;
    KvCachePass kv(opts);
    PassManager().run(kv, *plain);
    auto fused = clone_graph(*plain);
    EXPECT_EQ(fuse_attention(*fused), kv.num_layers());
    fold_attention_layouts(*fused);
    EXPECT_EQ(count_op(*fused, "Softmax"), 0);
    std::mt19937 rng(11);
    for (auto [n, past] : {std::pair<int64_t, int64_t>{5, 0}, {1, 6}, {3, 9}}) {
      SCOPED_TRACE("new " + std::to_string(n) + " past " + std::to_string(past));
      auto in = kv_feeds(*plain, n, past, 16, rng);
      const std::vector<Tensor> want = run_graph(plain, "cpu", in);
      for (const char* backend : {"cpu", "reference"}) {
        const std::vector<Tensor> got = run_graph(fused, backend, in, 3);
        ASSERT_EQ(got.size(), want.size());
        for (size_t i = 0; i < got.size(); ++i)
          EXPECT_LE(test::max_abs_diff(got[i], want[i]), 1e-4) << backend << " " << plain->outputs[i]->name;
      }
    }
  }
}

TEST(FuseAttention, LongSequencesMatchTheUnfusedGraph) {
  struct Case {
    const char* model;
    int64_t batch, seq;
    std::vector<int64_t> pad;
  };
  for (const Case& c : {Case{"gpt-neo", 2, 100, {0, 37}}, Case{"gpt2", 3, 128, {0, 1, 64}}}) {
    SCOPED_TRACE(c.model);
    auto plain = import_onnx(model_path(c.model));
    auto fused = clone_graph(*plain);
    ASSERT_EQ(fuse_attention(*fused), 2);
    EXPECT_GE(fold_attention_layouts(*fused), 2);
    auto in = padded_inputs(*plain, c.batch, c.seq, c.pad);
    const Tensor want = output(*plain, run_graph(plain, "cpu", in), "logits");
    EXPECT_LE(test::max_abs_diff(output(*fused, run_graph(fused, "cpu", in, 3), "logits"), want), 1e-4);
    EXPECT_LE(test::max_abs_diff(output(*fused, run_graph(fused, "reference", in), "logits"), want), 1e-4);
  }
}

// The layouts fold (passes/fold_attention_layouts.h): the inference graphs
// of the GPT-2 exports (TorchScript, dynamo, Optimum) and GPT-Neo's keep no
// Split or Transpose (they were only the heads' split and merge), and give
// the unfused graph's logits on a padded batch. test_models compares the
// same graphs with ONNX Runtime.
TEST(FuseAttention, FoldedLayoutsLeaveNoCopies) {
  for (const char* model : {"gpt2", "gpt2-dynamo", "gpt2-optimum", "gpt-neo"}) {
    SCOPED_TRACE(model);
    auto plain = import_onnx(model_path(model));
    auto fused = inference_graph(plain);
    EXPECT_EQ(count_op(*fused, "Transpose"), 0);
    EXPECT_EQ(count_op(*fused, "Split"), 0);
    int folded = 0;
    for (auto& n : fused->nodes())
      if (n->op_type == kAttentionOp) folded += n->has_attr("out_perm") && n->has_attr("q_perm");
    EXPECT_EQ(folded, 2);
    auto in = padded_inputs(*plain, 2, 70, {0, 9});
    const Tensor want = output(*plain, run_graph(plain, "reference", in), "logits");
    EXPECT_LE(test::max_abs_diff(output(*fused, run_graph(fused, "cpu", in, 2), "logits"), want), 1e-4);
    EXPECT_LE(test::max_abs_diff(output(*fused, run_graph(fused, "reference", in), "logits"), want), 1e-4);
  }
}

// Head offsets past an input's heads are an error naming the node, also where
// the head dim is only known at run time (the reference and cpu kernels read
// the same call).
TEST(FuseAttention, LayoutWithTooFewHeadsIsAnError) {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape({Dim::fixed(1), Dim::fixed(5), Dim::sym("heads"), Dim::fixed(8)})});
  Value* y = g->add_value("y");
  g->add_node(kAttentionOp, {x, x, x}, {y},
              {{"num_heads", int64_t(2)},
               {"head_offsets", std::vector<int64_t>{0, 2, 4}},
               {"q_perm", std::vector<int64_t>{0, 2, 1, 3}},
               {"k_perm", std::vector<int64_t>{0, 2, 3, 1}},
               {"v_perm", std::vector<int64_t>{0, 2, 1, 3}}},
              "attn", kCodebookDomain);
  g->outputs.push_back(y);
  infer_types(*g);
  std::map<std::string, Tensor> ok = {{"x", Tensor::zeros(DType::f32, {1, 5, 6, 8})}};
  std::map<std::string, Tensor> short_of_heads = {{"x", Tensor::zeros(DType::f32, {1, 5, 5, 8})}};
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(backend);
    EXPECT_NO_THROW(run_graph(g, backend, ok));
    try {
      run_graph(g, backend, short_of_heads);
      ADD_FAILURE() << "5 heads read at offset 4 + 2 ran";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("heads"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace cb
