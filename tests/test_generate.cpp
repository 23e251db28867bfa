// Generation with a KV cache (tools/generate.h, passes/kv_cache.h,
// passes/last_position_logits.h) on the six tiny test models: the tokens it
// generates equal those of a loop that re-runs the whole prefix with the
// plain run path, greedy and sampled, with and without interventions on a
// model compiled with codebooks; each step's logits equal the full run's last
// position to 1e-4 relative; the caches grow past their first capacity and
// GPT-Neo's local window (8) is passed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backends/backend.h"
#include "ir/graph_clone.h"
#include "passes/insert_codebooks.h"
#include "passes/interventions.h"
#include "passes/kv_cache.h"
#include "passes/last_position_logits.h"
#include "runtime/executable.h"
#include "tests/test_util.h"
#include "tools/generate.h"
#include "tools/model_io.h"

using namespace cb;
using namespace cb::tools;

namespace {

const std::string kModels[] = {"gpt2", "gpt2-dynamo", "gpt2-optimum", "gpt-neo", "gpt-neox", "gpt-neox-sequential"};
constexpr int64_t kContext = 128;  // every test model's

std::shared_ptr<Graph> load(const std::string& name) {
  return load_model(std::string(CB_SOURCE_DIR) + "/tests/models/" + name + "/model.onnx").graph;
}

const std::vector<int64_t> kPrompt = {464, 17, 300, 5, 271};

// The last position's logits of the full graph on `ids` (the plain run path).
std::vector<float> full_last_logits(std::shared_ptr<Graph> g, const std::vector<int64_t>& ids) {
  auto backend = make_backend("cpu");
  auto exe = Executable::compile(g, *backend);
  auto outs = exe->run(lm_inputs(*g, ids, 1, int64_t(ids.size())));
  const Tensor& logits = outs[0];
  EXPECT_EQ(exe->output_names()[0], "logits");
  const int64_t V = logits.dim(2);
  const float* last = logits.data<float>() + (logits.dim(1) - 1) * V;
  return std::vector<float>(last, last + V);
}

double relative_diff(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff = std::max(diff, double(std::abs(got[i] - want[i])));
    scale = std::max(scale, double(std::abs(want[i])));
  }
  return diff / std::max(scale, 1e-30);
}

struct Generated {
  std::vector<int64_t> ids;
  std::vector<std::vector<float>> logits;  // before each new token
};

// With the KV cache.
Generated generate_cached(std::shared_ptr<Graph> g, int64_t n, const SamplingOptions& s, int64_t* growths = nullptr) {
  GeneratorOptions o;
  o.context = kContext;
  o.initial_capacity = 4;  // grows twice on the way
  Generator gen(g, o);
  Sampler sampler(s);
  Generated out;
  const std::vector<float>* logits = &gen.prefill(kPrompt);
  for (int64_t i = 0; i < n; ++i) {
    out.logits.push_back(*logits);
    out.ids.push_back(sampler.next(*logits));
    if (i + 1 < n) logits = &gen.step(out.ids.back());
  }
  if (growths) *growths = gen.cache_growths();
  return out;
}

// Re-running the whole prefix each time.
Generated generate_full(std::shared_ptr<Graph> g, int64_t n, const SamplingOptions& s) {
  Sampler sampler(s);
  Generated out;
  std::vector<int64_t> seq = kPrompt;
  for (int64_t i = 0; i < n; ++i) {
    out.logits.push_back(full_last_logits(g, seq));
    out.ids.push_back(sampler.next(out.logits.back()));
    seq.push_back(out.ids.back());
  }
  return out;
}

void expect_same_generation(const Generated& cached, const Generated& full, const std::string& what) {
  EXPECT_EQ(cached.ids, full.ids) << what;
  for (size_t i = 0; i < std::min(cached.logits.size(), full.logits.size()); ++i)
    EXPECT_LE(relative_diff(cached.logits[i], full.logits[i]), 1e-4) << what << ": logits before new token " << i;
}

SamplingOptions greedy() { return {}; }
SamplingOptions sampled(uint64_t seed) {
  SamplingOptions s;
  s.temperature = 1.0;
  s.top_k = 50;
  s.top_p = 0.95;
  s.seed = seed;
  return s;
}

class EveryModel : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryModel, GreedyEqualsRerunningThePrefix) {
  const int64_t n = 14;  // 5 + 14 tokens: past GPT-Neo's local window of 8
  int64_t growths = 0;
  Generated cached = generate_cached(load(GetParam()), n, greedy(), &growths);
  expect_same_generation(cached, generate_full(load(GetParam()), n, greedy()), GetParam());
  EXPECT_GE(growths, 1) << "the caches never grew past their first capacity";
}

TEST_P(EveryModel, SampledEqualsRerunningThePrefix) {
  const int64_t n = 10;
  for (uint64_t seed : {1, 2}) {
    Generated cached = generate_cached(load(GetParam()), n, sampled(seed));
    expect_same_generation(cached, generate_full(load(GetParam()), n, sampled(seed)),
                           GetParam() + " seed " + std::to_string(seed));
  }
}

// Interventions on a model compiled with codebooks at qkv (whose output is
// what the cache holds) and mlp; positions are absolute, in the prompt and
// among the generated tokens.
TEST_P(EveryModel, InterventionsActAtEveryGeneratedPosition) {
  std::shared_ptr<Graph> compiled = load(GetParam());
  CodebookConfig cfg;
  cfg.placements.push_back({Placement::qkv, 16, 2, 1});
  cfg.placements.push_back({Placement::mlp, 16, 2, 1});
  cfg.seed = 3;
  InsertCodebooksPass insert(cfg);
  PassManager().run(insert, *compiled);

  InterventionSet iv;
  iv.items.push_back(parse_intervention(InterventionKind::ablate, "layer0.mlp:0,1,2,3,4,5,6,7"));
  iv.items.push_back(parse_intervention(InterventionKind::force, "layer1.qkv:9@2,7#0"));
  iv.items.push_back(parse_intervention(InterventionKind::force, "layer0.qkv:5@9"));
  auto with = [&](const InterventionSet& set) {
    std::shared_ptr<Graph> g = clone_graph(*compiled);
    InterventionsPass pass(set);
    PassManager().run(pass, *g);
    return g;
  };
  const int64_t n = 8;
  for (const SamplingOptions& s : {greedy(), sampled(5)}) {
    Generated cached = generate_cached(with(iv), n, s);
    Generated full = generate_full(with(iv), n, s);
    expect_same_generation(cached, full, GetParam() + " with interventions");
    // They act: the logits differ from the run without them.
    Generated plain = generate_cached(with({}), n, s);
    EXPECT_GT(relative_diff(cached.logits[0], plain.logits[0]), 1e-3);
    EXPECT_GT(relative_diff(cached.logits[5], plain.logits[5]), 1e-3);  // position 9 was forced there
  }
}

TEST_P(EveryModel, LastPositionLogitsEqualTheFullLastRow) {
  std::shared_ptr<Graph> sliced = load(GetParam());
  LastPositionLogitsPass pass;
  PassManager().run(pass, *sliced);
  auto backend = make_backend("cpu");
  auto exe = Executable::compile(sliced, *backend);
  std::vector<int64_t> ids = kPrompt;
  auto outs = exe->run(lm_inputs(*sliced, ids, 1, int64_t(ids.size())));
  ASSERT_EQ(outs[0].dims(), (std::vector<int64_t>{1, 1, 500}));
  std::vector<float> got(outs[0].data<float>(), outs[0].data<float>() + 500);
  EXPECT_LE(relative_diff(got, full_last_logits(load(GetParam()), ids)), 1e-5);
}

TEST_P(EveryModel, KvCacheGraphHasPastAndPresent) {
  std::shared_ptr<Graph> g = load(GetParam());
  KvCacheOptions o;
  o.context = kContext;
  KvCachePass pass(o);
  PassManager().run(pass, *g);
  EXPECT_EQ(pass.num_layers(), 2);
  EXPECT_EQ(pass.num_heads(), 4);
  EXPECT_EQ(pass.head_dim(), 16);
  EXPECT_GE(pass.mask_tables(), 1);
  std::vector<std::string> inputs, outputs;
  for (const Value* v : g->inputs) inputs.push_back(v->name);
  for (const Value* v : g->outputs) outputs.push_back(v->name);
  for (const char* name : {"input_ids", "past_length", "past.0.key", "past.1.value"})
    EXPECT_NE(std::find(inputs.begin(), inputs.end(), name), inputs.end()) << name;
  // The mask's values are tabulated; an exporter may still read its shape (dynamo: the sequence length).
  for (auto& n : g->nodes())
    for (const Value* v : n->inputs)
      if (v && v->name == "attention_mask") EXPECT_EQ(n->op_type, "Shape") << n->describe();
  for (const char* name : {"logits", "present.0.key", "present.1.value"})
    EXPECT_NE(std::find(outputs.begin(), outputs.end(), name), outputs.end()) << name;
}

INSTANTIATE_TEST_SUITE_P(TinyModels, EveryModel, ::testing::ValuesIn(kModels), [](const auto& info) {
  std::string n = info.param;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
});

TEST(KvCache, ContextComesFromThePositionTable) {
  EXPECT_EQ(position_table_rows(*load("gpt2")), 128);
  EXPECT_EQ(position_table_rows(*load("gpt-neo")), 128);  // positions made in the graph by a Range
  EXPECT_EQ(position_table_rows(*load("gpt-neox")), -1);  // rotary
  std::shared_ptr<Graph> g = load("gpt-neox");
  KvCachePass pass;
  try {
    PassManager().run(pass, *g);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--context"), std::string::npos) << e.what();
  }
}

TEST(Generator, StopsAtTheContext) {
  GeneratorOptions o;
  o.context = 7;
  Generator gen(load("gpt2"), o);
  gen.prefill(kPrompt);
  gen.step(1);
  gen.step(1);
  EXPECT_EQ(gen.length(), 7);
  EXPECT_THROW(gen.step(2), Error);
  EXPECT_THROW(gen.prefill(std::vector<int64_t>(8, 1)), Error);
}

TEST(Sampler, GreedySeededAndFiltered) {
  std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.f, 2.0f};
  EXPECT_EQ(Sampler(greedy()).next(logits), 1);  // ties to the lower id
  SamplingOptions top1 = sampled(7);
  top1.top_k = 1;
  EXPECT_EQ(Sampler(top1).next(logits), 1);
  SamplingOptions s = sampled(11);
  s.top_k = 0;
  s.top_p = 1;
  Sampler a(s), b(s);
  std::vector<int64_t> counts(5, 0);
  for (int i = 0; i < 2000; ++i) {
    int64_t t = a.next(logits);
    EXPECT_EQ(t, b.next(logits));
    ++counts[size_t(t)];
  }
  // p = softmax(logits): ~[0.05, 0.34, 0.31, 0.02, 0.34]
  EXPECT_NEAR(counts[1] / 2000.0, 0.34, 0.05);
  EXPECT_NEAR(counts[3] / 2000.0, 0.017, 0.015);
  s.top_p = 0.5;  // {1, 4} (ties by id: 1, 4, 2): 1 and 4 reach 0.68 >= 0.5
  Sampler nucleus(s);
  for (int i = 0; i < 200; ++i) {
    int64_t t = nucleus.next(logits);
    EXPECT_TRUE(t == 1 || t == 4) << t;
  }
  SamplingOptions bad = sampled(1);
  bad.top_p = 0;
  EXPECT_THROW(Sampler{bad}, Error);
  bad = sampled(1);
  bad.temperature = -1;
  EXPECT_THROW(Sampler{bad}, Error);
}

}  // namespace
