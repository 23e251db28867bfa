// The memory planner (runtime/memory_plan.h) and the executor's arena: values
// whose lifetimes overlap never share bytes; a planned executable gives the
// reference backend's results run after run, allocates nothing new in steady
// state, never hands arena bytes to the caller, and falls back to pooled
// buffers when sizes change.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "backends/backend.h"
#include "frontend/onnx_import.h"
#include "passes/inference_pipeline.h"
#include "runtime/executable.h"
#include "runtime/memory_plan.h"
#include "tests/test_util.h"
#include "tools/model_io.h"

using namespace cb;
using cb::test::max_abs_diff;
using cb::test::random_tensor;
using cb::test::uniform;

namespace {

void expect_no_live_overlap(const std::vector<PlannedValue>& values, const MemoryPlan& plan) {
  ASSERT_EQ(plan.offsets.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(plan.offsets[i] % 64, 0u) << "value " << i;
    EXPECT_LE(plan.offsets[i] + values[i].bytes, plan.arena_bytes) << "value " << i;
    for (size_t j = i + 1; j < values.size(); ++j) {
      bool live_together = !(values[i].last < values[j].first || values[j].last < values[i].first);
      bool bytes_overlap =
          plan.offsets[i] < plan.offsets[j] + values[j].bytes && plan.offsets[j] < plan.offsets[i] + values[i].bytes;
      if (values[i].bytes && values[j].bytes)
        EXPECT_FALSE(live_together && bytes_overlap) << "values " << i << " and " << j << " are live together";
    }
  }
}

TEST(MemoryPlan, LiveValuesNeverOverlap) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<PlannedValue> values(1 + rng() % 60);
    size_t total = 0;
    for (auto& v : values) {
      v.bytes = 1 + rng() % 5000;
      v.first = int64_t(rng() % 40);
      v.last = v.first + int64_t(rng() % 10);
      total += (v.bytes + 63) / 64 * 64;
    }
    MemoryPlan plan = plan_memory(values);
    expect_no_live_overlap(values, plan);
    EXPECT_LE(plan.arena_bytes, total);
  }
}

TEST(MemoryPlan, ReusesBytesOfDeadValues) {
  // A chain: each value is read only by the next step, so two buffers suffice.
  std::vector<PlannedValue> chain;
  for (int64_t i = 0; i < 10; ++i) chain.push_back({1000, i, i + 1});
  MemoryPlan plan = plan_memory(chain);
  expect_no_live_overlap(chain, plan);
  EXPECT_EQ(plan.arena_bytes, 2 * 1024u);
  EXPECT_THROW(plan_memory({{16, 3, 2}}), Error);
}

// x -> Mul -> Reshape (a view) -> Add -> Tanh -> Reshape -> output, plus a
// second output that is a view of an intermediate: the plan must keep the
// viewed value alive as long as its view, and keep output views out of the arena.
std::shared_ptr<Graph> chain_graph() {
  std::mt19937 rng(3);
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape({Dim::sym("b"), Dim::fixed(6)})});
  Value* w = g->add_constant("w", random_tensor(DType::f32, {6}, uniform(0.5, 1.5), rng));
  Value* flat = g->add_constant("flat", Tensor::from_vector<int64_t>({-1}, {1}));
  Value* back = g->add_constant("back", Tensor::from_vector<int64_t>({-1, 6}, {2}));
  auto add = [&](const char* op, std::vector<Value*> in, const std::string& name) {
    Value* v = g->add_value(name);
    g->add_node(op, std::move(in), {v});
    return v;
  };
  Value* a = add("Mul", {x, w}, "a");
  Value* av = add("Reshape", {a, flat}, "a_flat");
  Value* b = add("Add", {av, av}, "b");
  Value* c = add("Tanh", {b}, "c");
  Value* d = add("Mul", {c, av}, "d");  // reads the view after two more steps
  Value* e = add("Reshape", {d, back}, "e");
  Value* f = add("Sigmoid", {e}, "f");
  Value* fv = add("Reshape", {f, flat}, "f_flat");
  g->outputs = {e, fv};
  return g;
}

// Runs `cpu` and `ref` on `in` and compares every output.
std::vector<Tensor> run_and_compare(Executable& cpu, Executable& ref, const std::map<std::string, Tensor>& in,
                                    double tol, const std::string& what) {
  std::vector<Tensor> want = ref.run(in), got = cpu.run(in);
  EXPECT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    EXPECT_EQ(got[i].dims(), want[i].dims()) << what << " output " << i;
    if (got[i].dims() == want[i].dims()) EXPECT_LT(max_abs_diff(got[i], want[i]), tol) << what << " output " << i;
  }
  return want;
}

TEST(ExecutableArena, PlannedRunsMatchReferenceAndAllocateNothing) {
  auto g = chain_graph();
  auto ref = Executable::compile(g, *make_backend("reference"));
  auto cpu = Executable::compile(g, *make_backend("cpu"));
  std::mt19937 rng(5);
  auto input = [&](int64_t batch) {
    return std::map<std::string, Tensor>{{"x", random_tensor(DType::f32, {batch, 6}, uniform(-2, 2), rng)}};
  };
  for (int i = 0; i < 2; ++i) run_and_compare(*cpu, *ref, input(4), 1e-6, "recording run");
  ASSERT_GT(cpu->arena_bytes(), 0u) << "two runs of the same sizes were not planned";
  const size_t held = cpu->pooled_bytes();
  for (int i = 0; i < 3; ++i) {
    run_and_compare(*cpu, *ref, input(4), 1e-6, "planned run");
    EXPECT_EQ(cpu->pooled_bytes(), held) << "a planned run allocated memory";
  }
  // Other sizes fall back to pooled buffers, then are planned in turn.
  for (int i = 0; i < 4; ++i) run_and_compare(*cpu, *ref, input(7), 1e-6, "batch 7");
  EXPECT_GT(cpu->arena_bytes(), 0u);
  run_and_compare(*cpu, *ref, input(4), 1e-6, "back to batch 4");
}

TEST(ExecutableArena, OutputsTheCallerKeepsSurviveLaterRuns) {
  auto g = chain_graph();
  auto ref = Executable::compile(g, *make_backend("reference"));
  auto cpu = Executable::compile(g, *make_backend("cpu"));
  std::mt19937 rng(6);
  std::vector<std::vector<Tensor>> kept, want;
  for (int i = 0; i < 6; ++i) {
    std::map<std::string, Tensor> in = {{"x", random_tensor(DType::f32, {3, 6}, uniform(-2, 2), rng)}};
    want.push_back(ref->run(in));
    kept.push_back(cpu->run(in));
  }
  EXPECT_GT(cpu->arena_bytes(), 0u);
  for (size_t r = 0; r < kept.size(); ++r)
    for (size_t i = 0; i < kept[r].size(); ++i)
      EXPECT_LT(max_abs_diff(kept[r][i], want[r][i]), 1e-6) << "run " << r << " output " << i << " was overwritten";
}

// Also through the inference pipeline (passes/inference_pipeline.h), whose
// attention reads views of the QKV projection in place
// (passes/fold_attention_layouts.h): the arena must keep them alive.
TEST(ExecutableArena, TinyModelsMatchReferenceRunAfterRun) {
  namespace fs = std::filesystem;
  for (const char* name : {"gpt2", "gpt-neo", "gpt-neox"})
    for (bool fused : {false, true}) {
      SCOPED_TRACE(std::string(name) + (fused ? " fused" : ""));
      auto g = import_onnx((fs::path(CB_SOURCE_DIR) / "tests" / "models" / name / "model.onnx").string());
      auto ref = Executable::compile(g, *make_backend("reference"));
      auto cpu = Executable::compile(fused ? inference_graph(g) : g, *make_backend("cpu"), CompileOptions{2, false});
      std::mt19937 rng(1);
      int64_t vocab = tools::vocab_size(*g);
      auto input = [&](int64_t seq) {
        std::vector<int64_t> ids(size_t(2 * seq));
        for (auto& t : ids) t = int64_t(rng() % uint64_t(vocab));
        return tools::lm_inputs(*g, ids, 2, seq);
      };
      for (int i = 0; i < 2; ++i) run_and_compare(*cpu, *ref, input(5), 1e-4, "recording run");
      ASSERT_GT(cpu->arena_bytes(), 0u);
      const size_t held = cpu->pooled_bytes();
      for (int i = 0; i < 2; ++i) {
        run_and_compare(*cpu, *ref, input(5), 1e-4, "planned run");
        EXPECT_EQ(cpu->pooled_bytes(), held);
      }
      run_and_compare(*cpu, *ref, input(3), 1e-4, "another length");
      for (int i = 0; i < 2; ++i) run_and_compare(*cpu, *ref, input(5), 1e-4, "back");
      EXPECT_GT(cpu->arena_bytes(), 0u) << "planned again once sizes repeat";
      run_and_compare(*cpu, *ref, input(5), 1e-4, "planned again");
    }
}

}  // namespace
