// Generation with a KV cache (tools/generate.h, passes/kv_cache.h,
// passes/last_position_logits.h) on the six tiny test models: the tokens it
// generates equal those of a loop that re-runs the whole prefix with the
// plain run path, greedy and sampled, with and without interventions on a
// model compiled with codebooks; each step's logits equal the full run's last
// position to 1e-4 relative; the caches grow past their first capacity and
// GPT-Neo's local window (8) is passed. Batches: each row of a batch equals
// generating it alone; stop conditions end each row where they say.
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
#include "tools/generation.h"
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

// Prompts of one length as one batch [B, ...]: every row's logits equal the
// batch of one's, step after step, and so do the tokens chosen.
TEST_P(EveryModel, BatchRowsEqualGeneratingAlone) {
  const std::vector<std::vector<int64_t>> rows = {kPrompt, {7, 300, 9, 42, 11}, {499, 0, 3, 3, 250}};
  GeneratorOptions o;
  o.context = kContext;
  o.initial_capacity = 4;  // the batch's caches grow too
  Generator batch(load(GetParam()), o), alone(load(GetParam()), o);
  std::vector<std::vector<std::vector<float>>> alone_logits(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    alone_logits[r].push_back(alone.prefill(rows[r]));
    for (int64_t t = 0; t < 9; ++t)
      alone_logits[r].push_back(alone.step(Sampler(greedy()).next(alone_logits[r].back())));
  }
  const std::vector<float>* logits = &batch.prefill_batch(rows);
  ASSERT_EQ(batch.batch(), 3);
  const int64_t V = batch.vocab();
  for (size_t t = 0; t < alone_logits[0].size(); ++t) {
    std::vector<int64_t> next;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<float> row(logits->begin() + int64_t(r) * V, logits->begin() + int64_t(r + 1) * V);
      EXPECT_LE(relative_diff(row, alone_logits[r][t]), 1e-5) << GetParam() << " row " << r << " step " << t;
      next.push_back(Sampler(greedy()).next(row));
      EXPECT_EQ(next.back(), Sampler(greedy()).next(alone_logits[r][t])) << GetParam() << " row " << r;
    }
    if (t + 1 < alone_logits[0].size()) logits = &batch.step_batch(next);
  }
  EXPECT_GE(batch.cache_growths(), 1);
  // Back to one row: the caches follow the batch size.
  EXPECT_LE(relative_diff(batch.prefill(rows[1]), alone_logits[1][0]), 1e-5);
}

// Prompts of several lengths through generate_continuations: each, sampled
// with seed + its index, equals generating it alone with that seed.
TEST_P(EveryModel, MixedLengthPromptsEqualGeneratingEachAlone) {
  GeneratorOptions o;
  o.context = kContext;
  Generator gen(load(GetParam()), o);
  GenerationRequest r;
  r.prompts = {kPrompt, {3, 4}, {9, 8, 7, 6, 5}, {100, 200}};
  r.max_new = 7;
  r.sampling = sampled(21);
  std::vector<size_t> order;
  GenerationStats stats;
  std::vector<Continuation> all = generate_continuations(
      gen, r, [&](size_t prompt, int64_t) { order.push_back(prompt); }, &stats);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(stats.batches, 2);  // lengths 5 and 2
  EXPECT_EQ(stats.new_tokens, 28);
  EXPECT_EQ(order.size(), 28u);
  for (size_t i = 0; i < r.prompts.size(); ++i) {
    GenerationRequest one = r;
    one.prompts = {r.prompts[i]};
    one.sampling.seed = r.sampling.seed + i;
    std::vector<Continuation> alone = generate_continuations(gen, one);
    EXPECT_EQ(all[i].ids, alone[0].ids) << GetParam() << " prompt " << i;
    EXPECT_EQ(all[i].ids.size(), 7u);
    EXPECT_EQ(all[i].stop, "max-new");
  }
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

// A stop sequence, a text, the context and the model's eos id end a
// continuation where they occur first; the other rows of its batch go on.
TEST(Generation, StopConditions) {
  GeneratorOptions o;
  o.context = kContext;
  Generator gen(load("gpt2"), o);
  GenerationRequest r;
  r.prompts = {kPrompt};
  r.max_new = 12;
  r.sampling = sampled(4);
  const std::vector<int64_t> free = generate_continuations(gen, r)[0].ids;
  ASSERT_EQ(free.size(), 12u);
  // Stop at the 6th token's id: the continuation ends at its first occurrence.
  const size_t first = size_t(std::find(free.begin(), free.end(), free[5]) - free.begin());
  GenerationRequest at_id = r;
  at_id.stop.add(std::to_string(free[5]));
  Continuation c = generate_continuations(gen, at_id)[0];
  EXPECT_EQ(c.ids, std::vector<int64_t>(free.begin(), free.begin() + int64_t(first) + 1));
  EXPECT_EQ(c.stop, "stop-at " + std::to_string(free[5]));
  // A sequence of two ids.
  GenerationRequest pair = r;
  pair.stop.add(std::to_string(free[7]) + "," + std::to_string(free[8]));
  EXPECT_LE(generate_continuations(gen, pair)[0].ids.size(), 9u);
  EXPECT_EQ(generate_continuations(gen, pair)[0].stop,
            "stop-at " + std::to_string(free[7]) + "," + std::to_string(free[8]));
  // Text: ends with the token that completes it.
  TokenText bpe = TokenText::load(std::string(CB_SOURCE_DIR) + "/../shared/data/gpt2-bpe");
  std::string text;
  size_t want = 0;
  const std::string needle = bpe.token_bytes(free[9]);
  for (size_t i = 0; i < free.size(); ++i) {
    text += bpe.token_bytes(free[i]);
    if (text.find(needle) != std::string::npos) {
      want = i + 1;
      break;
    }
  }
  GenerationRequest at_text = r;
  at_text.stop.add("text:" + needle);
  at_text.text = &bpe;
  c = generate_continuations(gen, at_text)[0];
  EXPECT_EQ(c.ids.size(), want);
  EXPECT_EQ(c.stop, "stop-at text " + escape_bytes(needle));
  // In a batch: the row that meets it stops, the other runs to --max-new.
  GenerationRequest two = at_id;
  two.prompts = {kPrompt, {1, 2, 3, 4, 5}};
  std::vector<Continuation> both = generate_continuations(gen, two);
  EXPECT_EQ(both[0].ids, generate_continuations(gen, at_id)[0].ids);
  GenerationRequest second_alone = r;
  second_alone.prompts = {{1, 2, 3, 4, 5}};
  second_alone.sampling.seed += 1;
  second_alone.stop = two.stop;
  EXPECT_EQ(both[1].ids, generate_continuations(gen, second_alone)[0].ids);
  // The context: 5 + 2 = 7 tokens.
  GeneratorOptions short_context;
  short_context.context = 7;
  Generator small(load("gpt2"), short_context);
  c = generate_continuations(small, r)[0];
  EXPECT_EQ(c.ids, std::vector<int64_t>(free.begin(), free.begin() + 2));
  EXPECT_EQ(c.stop, "context");
  GenerationRequest none = r;
  none.max_new = 0;
  EXPECT_TRUE(generate_continuations(gen, none)[0].ids.empty());
  // Bad requests.
  GenerationRequest too_long = r;
  too_long.prompts = {std::vector<int64_t>(8, 1)};
  EXPECT_THROW(generate_continuations(small, too_long), Error);
  GenerationRequest text_without_tokenizer = r;
  text_without_tokenizer.stop.add("abc");
  EXPECT_THROW(generate_continuations(gen, text_without_tokenizer), Error);
  StopConditions parsed;
  parsed.add("50256");
  parsed.add("13,13");
  parsed.add("text:12");
  parsed.add("\n\n");
  EXPECT_EQ(parsed.sequences, (std::vector<std::vector<int64_t>>{{50256}, {13, 13}}));
  EXPECT_EQ(parsed.texts, (std::vector<std::string>{"12", "\n\n"}));
  EXPECT_THROW(parsed.add(""), Error);
  EXPECT_THROW(parsed.add("text:"), Error);
}

TEST(Generation, EosIdsFromTheHfConfig) {
  EXPECT_TRUE(model_eos_ids({}).empty());
  EXPECT_EQ(model_eos_ids({{"hf_config", R"({"eos_token_id": 50256})"}}), (std::vector<int64_t>{50256}));
  EXPECT_EQ(model_eos_ids({{"hf_config", R"({"eos_token_id": [1, 2]})"}}), (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(model_eos_ids({{"hf_config", R"({"eos_token_id": null})"}}).empty());
  // import-hf records the config: the tiny GPT-2's eos is 0.
  std::shared_ptr<Graph> imported = load_model(std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/hf").graph;
  EXPECT_EQ(model_eos_ids(imported->metadata), (std::vector<int64_t>{0}));
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
