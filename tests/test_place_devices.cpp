// Device placement without a GPU (docs/cuda.md): the placement pass, the copy
// nodes, the runtime's device checks and per-device memory planning, on the
// simulated device of tests/sim_device.h, whose kernels are the reference
// kernels: a placed graph must give the unplaced reference run's outputs bit
// for bit. The CUDA backend's own memory test runs only on a GPU.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <set>

#include "frontend/npy.h"
#include "frontend/onnx_import.h"
#include "ir/attention.h"
#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "ir/graph_clone.h"
#include "ir/ops/grad.h"
#include "ir/ops/optim.h"
#include "ir/placement.h"
#include "ir/verifier.h"
#include "passes/canonicalize.h"
#include "passes/inference_pipeline.h"
#include "passes/insert_codebooks.h"
#include "passes/kv_cache.h"
#include "passes/place_devices.h"
#include "runtime/executable.h"
#include "tests/model_fixtures.h"
#include "tests/sim_device.h"
#include "tests/test_util.h"
#include "tests/tokfsm_fixtures.h"
#include "tools/generate.h"
#ifdef CB_WITH_CUDA
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_kernels.h"
#endif

using namespace cb;
using cb::test::case_inputs;
using cb::test::model_names;
using cb::test::models_dir;
using cb::test::SimDeviceBackend;
namespace fs = std::filesystem;

namespace {

const std::set<std::string> kSimOps = {
    "MatMul", "Gemm", "Add", "LayerNormalization", "Softmax", "codebook.FusedMatMul"};

struct CopyCounts {
  int64_t constants = 0, to_device = 0, to_host = 0;  // per run: to_device and to_host
};

CopyCounts count_copies(const Graph& g) {
  CopyCounts c;
  for (auto& n : g.nodes()) {
    if (is_copy_to_device(*n)) (n->inputs[0]->is_constant() ? c.constants : c.to_device)++;
    if (is_copy_to_host(*n)) c.to_host++;
  }
  return c;
}

using ModelAndFusion = std::tuple<std::string, bool>;
class PlacedModel : public ::testing::TestWithParam<ModelAndFusion> {};

TEST_P(PlacedModel, MatchesTheReferenceWithTheExpectedCopies) {
  const auto& [model, fused] = GetParam();
  std::shared_ptr<Graph> graph = import_onnx((models_dir() / model / "model.onnx").string());
  if (fused) graph = inference_graph(graph);
  auto reference = make_backend("reference");
  auto plain = Executable::compile(graph, *reference);

  SimDeviceBackend sim(kSimOps);
  std::shared_ptr<Graph> placed = clone_graph(*graph);
  PlaceDevicesPass pass(placement_target(sim));
  ASSERT_TRUE(PassManager().run(pass, *placed));
  const CopyCounts copies = count_copies(*placed);
  EXPECT_GT(pass.stats().placed, 10);
  EXPECT_GT(copies.constants, 0);  // the weights
  EXPECT_GT(copies.to_device, 0);
  EXPECT_GT(copies.to_host, 0);  // at least the logits
  EXPECT_EQ(copies.constants + copies.to_device, pass.stats().copies_to_device);
  EXPECT_EQ(copies.to_host, pass.stats().copies_to_host);

  std::cout << "[" << model << (fused ? " fused" : "") << "] " << pass.stats().placed << " nodes on sim:0; per run "
            << copies.to_device << " copies to the device, " << copies.to_host << " to the host; " << copies.constants
            << " constants copied once\n";
  CompileOptions opts;
  opts.device_backend = &sim;
  auto exe = Executable::compile(placed, *reference, opts);
  EXPECT_EQ(sim.copies_to_device, copies.constants) << "constants are copied once, at compile time";
  ASSERT_EQ(exe->output_names(), plain->output_names());

  // Three runs of the same sizes: the third uses the planned arenas.
  const std::map<std::string, Tensor> feeds = case_inputs(*plain, models_dir() / model / "case0");
  const std::vector<Tensor> want = plain->run(feeds);
  for (int run = 0; run < 3; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    const int64_t to_device = sim.copies_to_device, to_host = sim.copies_to_host;
    const std::vector<Tensor> got = exe->run(feeds);
    EXPECT_EQ(sim.copies_to_device - to_device, copies.to_device);
    EXPECT_EQ(sim.copies_to_host - to_host, copies.to_host);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(got[i].device().is_host()) << exe->output_names()[i];
      EXPECT_TRUE(got[i].bitwise_equal(want[i]))
          << exe->output_names()[i] << ": max |placed - reference| = " << cb::test::max_abs_diff(got[i], want[i]);
    }
  }
  // Each device's intermediates have their own arena.
  EXPECT_GT(exe->arena_bytes(sim.device()), 0u);
  EXPECT_GT(exe->arena_bytes(Device::host()), 0u);
  EXPECT_EQ(exe->arena_bytes(), exe->arena_bytes(sim.device()) + exe->arena_bytes(Device::host()));

  // Another size: the pools again, same results.
  const std::map<std::string, Tensor> other = case_inputs(*plain, models_dir() / model / "case1");
  const std::vector<Tensor> want1 = plain->run(other), got1 = exe->run(other);
  for (size_t i = 0; i < got1.size(); ++i) EXPECT_TRUE(got1[i].bitwise_equal(want1[i])) << exe->output_names()[i];
}

std::string param_name(const ::testing::TestParamInfo<ModelAndFusion>& info) {
  std::string name = std::get<0>(info.param) + (std::get<1>(info.param) ? "_fused" : "");
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllModels, PlacedModel,
                         ::testing::Combine(::testing::ValuesIn(model_names()), ::testing::Bool()), param_name);

// x -> MatMul(w) -> Relu -> y, and Shape(MatMul): a small graph to place by hand.
std::shared_ptr<Graph> small_graph() {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape::of({2, 3})});
  Value* w = g->add_constant("w", test::random_tensor(DType::f32, {3, 4}));
  Value* m = g->add_value("m");
  g->add_node("MatMul", {x, w}, {m});
  Value* y = g->add_value("y");
  g->add_node("Relu", {m}, {y});
  Value* s = g->add_value("s");
  g->add_node("Shape", {m}, {s});
  g->outputs = {y, s, m};
  return g;
}

TEST(PlaceDevices, CopiesAtEveryBoundaryOnlyOnce) {
  auto unplaced = small_graph();
  auto g = clone_graph(*unplaced);
  SimDeviceBackend sim({"MatMul"});
  PlacementStats st = place_devices(*g, placement_target(sim));
  EXPECT_EQ(st.placed, 1);
  EXPECT_EQ(st.copies_to_device, 2);  // x and w
  EXPECT_EQ(st.copies_to_host, 1);    // m, read by Relu and returned: one copy; Shape reads it on the device
  EXPECT_EQ(g->outputs[2]->name, "m");
  EXPECT_TRUE(is_copy_to_host(*g->outputs[2]->producer));
  EXPECT_EQ(place_devices(*g, placement_target(sim)).placed, 0) << "a placed graph is left alone";

  auto reference = make_backend("reference");
  CompileOptions opts;
  opts.device_backend = &sim;
  auto exe = Executable::compile(g, *reference, opts);
  auto plain = Executable::compile(unplaced, *reference);
  std::map<std::string, Tensor> in = {{"x", test::random_tensor(DType::f32, {2, 3})}};
  auto got = exe->run(in), want = plain->run(in);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(got[i].bitwise_equal(want[i])) << i;
  EXPECT_EQ(sim.copies_to_device, 2);  // w at compile time, x in the run
  EXPECT_EQ(sim.copies_to_host, 1);
}

// Ops sized by a constant index input (Reshape's shape, Unsqueeze's axes)
// run on the device: the runtime sizes them from the host constant behind
// the index's device copy, so per run only x goes over and y comes back.
TEST(PlaceDevices, OpsSizedByAConstantIndexRunOnTheDevice) {
  auto unplaced = std::make_shared<Graph>();
  Graph& g0 = *unplaced;
  Value* x = g0.add_input("x", {DType::f32, Shape::of({2, 6})});
  Value* shape = g0.add_constant("shape", Tensor::from_vector<int64_t>({3, 4}, {2}));
  Value* w = g0.add_constant("w", test::random_tensor(DType::f32, {4, 5}));
  Value* axes = g0.add_constant("axes", Tensor::from_vector<int64_t>({0}, {1}));
  Value* r = g0.add_value("r");
  g0.add_node("Reshape", {x, shape}, {r});
  Value* m = g0.add_value("m");
  g0.add_node("MatMul", {r, w}, {m});
  Value* y = g0.add_value("y");
  g0.add_node("Unsqueeze", {m, axes}, {y});
  g0.outputs = {y};

  auto g = clone_graph(*unplaced);
  SimDeviceBackend sim({"Reshape", "MatMul", "Unsqueeze"});
  const PlacementStats st = place_devices(*g, placement_target(sim));
  EXPECT_EQ(st.placed, 3);
  const CopyCounts copies = count_copies(*g);
  EXPECT_EQ(copies.constants, 3);  // shape, w, axes: once, at compile time
  EXPECT_EQ(copies.to_device, 1);  // x
  EXPECT_EQ(copies.to_host, 1);    // y

  auto reference = make_backend("reference");
  CompileOptions opts;
  opts.device_backend = &sim;
  auto exe = Executable::compile(g, *reference, opts);
  auto plain = Executable::compile(unplaced, *reference);
  for (int run = 0; run < 3; ++run) {  // the later runs take the sizes from the cache
    SCOPED_TRACE("run " + std::to_string(run));
    std::map<std::string, Tensor> in = {{"x", test::random_tensor(DType::f32, {2, 6})}};
    const int64_t to_device = sim.copies_to_device, to_host = sim.copies_to_host;
    const std::vector<Tensor> got = exe->run(in), want = plain->run(in);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].dims(), (std::vector<int64_t>{1, 3, 5}));
    EXPECT_TRUE(got[0].bitwise_equal(want[0]));
    EXPECT_EQ(sim.copies_to_device - to_device, 1);
    EXPECT_EQ(sim.copies_to_host - to_host, 1);
  }
}

// State that stays on the device between runs (training's parameters):
// an output listed in CompileOptions::device_outputs comes back on the
// device, and fed back it skips its copy to the device; a host node that
// reads it gets one host copy. The results are the unplaced run's.
TEST(PlaceDevices, DeviceOutputsStayThereAndFeedBackWithoutCopies) {
  auto unplaced = std::make_shared<Graph>();
  Graph& g0 = *unplaced;
  Value* x = g0.add_input("x", {DType::f32, Shape::of({3, 4})});
  Value* w = g0.add_input("w", {DType::f32, Shape::of({4, 4})});
  Value* step = g0.add_constant("step", test::random_tensor(DType::f32, {4, 4}));
  Value* y = g0.add_value("y");
  g0.add_node("MatMul", {x, w}, {y});
  Value* w_next = g0.add_value("w_next");
  g0.add_node("Add", {w, step}, {w_next});
  Value* w_neg = g0.add_value("w_neg");
  g0.add_node("Neg", {w}, {w_neg});  // stays on the host: it reads w there
  g0.outputs = {y, w_next, w_neg};

  auto g = clone_graph(*unplaced);
  SimDeviceBackend sim({"MatMul", "Add"});
  place_devices(*g, placement_target(sim));
  auto reference = make_backend("reference");
  CompileOptions opts;
  opts.device_backend = &sim;
  opts.device_outputs = {"w_next"};
  auto exe = Executable::compile(g, *reference, opts);
  auto plain = Executable::compile(unplaced, *reference);
  Tensor w_host = test::random_tensor(DType::f32, {4, 4}), w_state = w_host;
  for (int run = 0; run < 4; ++run) {
    SCOPED_TRACE("run " + std::to_string(run));
    const Tensor xv = test::random_tensor(DType::f32, {3, 4});
    const int64_t to_device = sim.copies_to_device, to_host = sim.copies_to_host;
    const std::vector<Tensor> got = exe->run({{"x", xv}, {"w", w_state}});
    const std::vector<Tensor> want = plain->run({{"x", xv}, {"w", w_host}});
    // x and (the first time) w go over; y and w_neg's input come back, w_next stays.
    EXPECT_EQ(sim.copies_to_device - to_device, run == 0 ? 2 : 1);
    EXPECT_EQ(sim.copies_to_host - to_host, run == 0 ? 1 : 2) << "y, and w for the host's Neg";
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[1].device().str(), "sim:0");
    EXPECT_TRUE(got[0].device().is_host() && got[2].device().is_host());
    Tensor w_next_host = Tensor::empty(DType::f32, {4, 4});
    sim.copy_to_host(got[1], w_next_host);
    EXPECT_TRUE(got[0].bitwise_equal(want[0]));
    EXPECT_TRUE(w_next_host.bitwise_equal(want[1]));
    EXPECT_TRUE(got[2].bitwise_equal(want[2]));
    w_state = got[1];
    w_host = want[1];
  }
}

TEST(PlaceDevices, HostKernelGivenDeviceMemoryIsAnError) {
  auto reference = make_backend("reference");
  SimDeviceBackend sim({"MatMul"});
  auto exe = Executable::compile(small_graph(), *reference);
  Tensor host = test::random_tensor(DType::f32, {2, 3});
  Tensor on_sim = Tensor::wrap(DType::f32, {2, 3}, sim.allocate(host.nbytes()));
  sim.copy_to_device(host, on_sim);
  try {
    exe->run({{"x", on_sim}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input 'x' is on sim:0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(on_sim.clone(), Error);
}

TEST(PlaceDevices, PlacedNodeWithoutItsBackendIsAnError) {
  auto g = small_graph();
  SimDeviceBackend sim({"MatMul"});
  place_devices(*g, placement_target(sim));
  auto reference = make_backend("reference");
  try {
    Executable::compile(g, *reference);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is placed on sim:0, but no device backend was given"), std::string::npos)
        << e.what();
  }
}

TEST(PlaceDevices, DeviceNames) {
  EXPECT_EQ(Device::parse("cuda").str(), "cuda:0");
  EXPECT_EQ(Device::parse("cuda:3").index, 3);
  EXPECT_TRUE(Device::parse("cpu").is_host());
  for (const char* bad : {"", "cuda:", "cuda:x", "CUDA", "cpu:1", ":0"}) EXPECT_THROW(Device::parse(bad), Error) << bad;
}

#ifdef CB_WITH_CUDA
// Ops whose outputs the runtime sizes from an index input's value (Reshape's
// shape, Slice's starts and ends, ...): shape inference reads host values
// only, so no device may run them (docs/cuda.md) and they stay on the host.
const std::set<std::string> kValueSizedOps = {"Reshape", "Unsqueeze", "Squeeze", "Slice", "Split", "Expand", "Tile"};

// The f32 nodes of a placed graph that stayed on the host although only
// value-sized ops should: "op 'name'" each, for the failure message.
std::vector<std::string> f32_nodes_left_on_the_host(const Graph& placed) {
  std::vector<std::string> left;
  for (auto& n : placed.nodes()) {
    if (is_copy_to_device(*n) || is_copy_to_host(*n) || !node_device(*n).is_host()) continue;
    bool f32 = false;
    for (const Value* v : n->outputs) f32 |= v && v->type.dtype == DType::f32;
    // Slice's kernel reads its starts, which must be constants; Tile has no kernel.
    bool computed_index = false;
    for (size_t i = 1; i < n->inputs.size(); ++i) computed_index |= n->inputs[i] && !n->inputs[i]->is_constant();
    const bool stays = n->op_type == "Tile" || (n->op_type == "Slice" && computed_index);
    if (!f32 || (n->domain.empty() && kValueSizedOps.count(n->op_type) && stays)) continue;
    left.push_back(n->describe());
  }
  return left;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& e : v) s += "\n  " + e;
  return s;
}

// Without a GPU: which nodes of each fused model the CUDA kernels claim.
// Every f32 node is placed (the matmuls, attention, LayerNorms, embeddings,
// rotary sin/cos, layout ops) except the value-sized ones; the int64 and
// bool shape and mask arithmetic stays on the host.
TEST(CudaPlacement, FusedModelsPlaceEveryF32NodeButTheValueSizedOnes) {
  const PlacementTarget cuda{Device::parse("cuda:0"), cuda_kernel_supports};
  for (const std::string& model : model_names()) {
    SCOPED_TRACE(model);
    std::shared_ptr<Graph> graph = inference_graph(import_onnx((models_dir() / model / "model.onnx").string()));
    std::map<std::string, int> placed_ops;
    for (auto& n : graph->nodes())
      if (cuda_kernel_supports(*n)) placed_ops[(n->domain.empty() ? "" : n->domain + ".") + n->op_type]++;
    EXPECT_GT(placed_ops["codebook.FusedMatMul"], 0);
    EXPECT_GT(placed_ops["codebook.Attention"], 0);
    EXPECT_GT(placed_ops["LayerNormalization"], 0);
    EXPECT_GT(placed_ops["Gather"], 0) << "the token embedding";
    for (auto& n : graph->nodes()) {
      bool f32 = false;
      for (const Value* v : n->outputs) f32 |= v && v->type.dtype == DType::f32;
      if (!f32) {
        EXPECT_FALSE(cuda_kernel_supports(*n)) << n->describe();
      }
    }
    std::shared_ptr<Graph> placed = clone_graph(*graph);
    const PlacementStats st = place_devices(*placed, cuda);
    const std::vector<std::string> left = f32_nodes_left_on_the_host(*placed);
    EXPECT_TRUE(left.empty()) << "f32 nodes on the host:" << joined(left);
    std::cout << "[" << model << " fused] " << st.placed << " nodes on cuda:0; per run "
              << count_copies(*placed).to_device << " copies to the device, " << count_copies(*placed).to_host
              << " to the host\n";
  }
}

TEST(CudaDevice, CopiesRoundTrip) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  EXPECT_EQ(cuda->device().str(), "cuda:0");
  Tensor host = test::random_tensor(DType::f32, {3, 1000});
  Tensor dev = Tensor::wrap(DType::f32, {3, 1000}, cuda->allocate(host.nbytes()));
  EXPECT_EQ(dev.device().str(), "cuda:0");
  Tensor back = Tensor::empty(DType::f32, {3, 1000});
  cuda->copy_to_device(host, dev);
  cuda->copy_to_host(dev, back);
  EXPECT_TRUE(back.bitwise_equal(host));
}

// One node on random inputs (tails and broadcasts), on the GPU against the reference.
struct KernelInput {
  std::vector<int64_t> dims;
  DType dtype = DType::f32;
  test::Values values = {};
  Tensor given = {};      // when defined, this tensor instead of random values
  bool constant = false;  // a graph constant (an index input: axes, starts) instead of an input
};

struct KernelCase {
  std::string op;
  std::vector<KernelInput> inputs;
  std::map<std::string, AttrValue> attrs = {};
  std::string domain = "";
  int outputs = 1;
};

KernelInput f32(std::vector<int64_t> dims, test::Values v = {}) { return {std::move(dims), DType::f32, v}; }
// Indices of an axis of `size`, negative ones included.
KernelInput indices(std::vector<int64_t> dims, int64_t size, DType dt = DType::i64) {
  return {std::move(dims), dt, test::uniform(0, 1).ints(double(-size), double(size - 1))};
}

// [T, S] attention mask: 0 where query i may see key j (causal, the last T
// of S positions), else `masked`; rows listed in `blind` see nothing.
Tensor causal_mask(int64_t t, int64_t s, float masked, std::set<int64_t> blind = {}) {
  Tensor m = Tensor::empty(DType::f32, {t, s});
  for (int64_t i = 0; i < t; ++i)
    for (int64_t j = 0; j < s; ++j) m.data<float>()[i * s + j] = j <= i + s - t && !blind.count(i) ? 0.f : masked;
  return m;
}

// A codebook.Codebook node's attributes (ir/codebook.h), as to_node writes them.
std::map<std::string, AttrValue> codebook_attrs(const CodebookAttrs& a) {
  Graph scratch;
  Node* n = scratch.add_node(kCodebookOp, {}, {}, {}, "", kCodebookDomain);
  a.to_node(*n);
  return n->attrs;
}
CodebookAttrs codebook(int64_t k, CodebookMetric metric = CodebookMetric::inner_product) {
  CodebookAttrs a;
  a.k = k;
  a.metric = metric;
  return a;
}

// [G, K, Dg] codes that are all near-copies of one code, a few float ulps
// apart: their float scores are as far from the exact ones as from each
// other, so only the double scan ranks them as the reference does.
Tensor near_copies(int64_t G, int64_t K, int64_t Dg) {
  Tensor base = test::random_tensor(DType::f32, {G, 1, Dg});
  Tensor ulps = test::random_tensor(DType::f32, {G, K, Dg}, test::uniform(0, 1).ints(-4, 4));
  Tensor codes = Tensor::empty(DType::f32, {G, K, Dg});
  for (int64_t g = 0; g < G; ++g)
    for (int64_t c = 0; c < K; ++c)
      for (int64_t i = 0; i < Dg; ++i) {
        const int64_t at = (g * K + c) * Dg + i;
        codes.data<float>()[at] = base.data<float>()[g * Dg + i] * (1.f + ulps.data<float>()[at] * 0x1p-23f);
      }
  return codes;
}

// codebook.Codebook cases: x [B, T, D], codes [G, K, D/G], the LayerNorm's
// scale and bias [G, D/G]; outputs y, ids and scores.
std::vector<KernelCase> codebook_cases() {
  CodebookAttrs skip = codebook(4);
  skip.ablate = {{kAll, kAll, 3}, {1, 2, 7}, {0, -1, 11}};
  skip.disable_topk = {{kAll, 1, 2}, {2, kAll, 1}};
  skip.force = {{0, 0, 0, 5}, {kAll, -2, -1, 9}};
  CodebookAttrs zero = skip;
  zero.keep_k_codes = false;
  zero.force.push_back({1, kAll, 1, -1});
  auto cb = [](std::vector<int64_t> x, std::vector<int64_t> codes, const CodebookAttrs& a, int outputs = 3,
               Tensor given_codes = {}) {
    const int64_t G = codes[0], Dg = codes[2];
    return KernelCase{
        kCodebookOp,
        {f32(std::move(x)), {std::move(codes), DType::f32, {}, std::move(given_codes)}, f32({G, Dg}), f32({G, Dg})},
        codebook_attrs(a),
        kCodebookDomain,
        outputs};
  };
  return {
      cb({2, 5, 64}, {1, 300, 64}, codebook(8)),                              // float scan, re-ranked
      cb({1, 7, 48}, {4, 100, 12}, codebook(4, CodebookMetric::euclidean)),   // groups, euclidean
      cb({3, 2, 16}, {2, 5, 8}, codebook(1), 2),                              // K under the list: every code
      cb({2, 6, 36}, {3, 40, 12}, skip),                                      // ablate (skip), disable, force
      cb({2, 6, 36}, {3, 40, 12}, zero),                                      // the same, zero mode
      cb({1, 4, 32}, {1, 200, 32}, codebook(6), 3, near_copies(1, 200, 32)),  // crowded: scanned in double
      cb({1, 3, 8}, {1, 50, 8}, codebook(40), 2),                             // k over a warp
  };
}

std::vector<KernelCase> kernel_cases() {
  const float inf = INFINITY;
  std::vector<KernelCase> cases = {
      {"Add", {f32({3, 5, 7}), f32({7})}},
      {"Add", {f32({2, 1, 3, 1, 5}), f32({4, 1})}},
      {"Sub", {f32({3, 1, 7}), f32({5, 1})}},
      {"Mul", {f32({2, 1, 33}), f32({3, 1})}},
      {"Div", {f32({4, 9}), f32({4, 9})}},
      {"Pow", {f32({3, 1001}, test::uniform(0.5, 2)), f32({})}},
      {"Pow", {f32({2, 5}, test::uniform(0.5, 2)), f32({5})}},
      {"Neg", {f32({3, 1001})}},
      {"Abs", {f32({3, 1001})}},
      {"Relu", {f32({3, 1001})}},
      {"Exp", {f32({3, 1001})}},
      {"Log", {f32({3, 1001}, test::uniform(0.1, 3))}},
      {"Sqrt", {f32({3, 1001}, test::uniform(0, 3))}},
      {"Reciprocal", {f32({3, 1001})}},
      {"Sin", {f32({2, 17, 4}, test::uniform(-20, 20))}},
      {"Cos", {f32({2, 17, 4}, test::uniform(-20, 20))}},
      {"Tanh", {f32({3, 1001}, test::uniform(-4, 4))}},
      {"Sigmoid", {f32({3, 1001}, test::uniform(-6, 6))}},
      {"Erf", {f32({3, 1001}, test::uniform(-3, 3))}},
      {"Gelu", {f32({3, 1001}, test::uniform(-5, 5))}},
      {"Gelu", {f32({3, 1001}, test::uniform(-5, 5))}, {{"approximate", std::string("tanh")}}},
      {"Where", {{{2, 1, 5}, DType::boolean}, f32({3, 1}), f32({})}},
      {"Where", {{{1, 1, 4, 4}, DType::boolean}, f32({}), f32({}, test::uniform(-3.4e38, -3.4e38))}},
      {"Softmax", {f32({4, 1000})}},
      {"Softmax", {f32({3, 2, 17})}, {{"axis", int64_t(-1)}}},
      {"LayerNormalization", {f32({5, 300}), f32({300}), f32({300})}, {{"epsilon", 1e-5f}}},
      {"LayerNormalization", {f32({2, 3, 33}), f32({33})}},
      {"MatMul", {f32({2, 3, 33}), f32({33, 65})}},
      {"MatMul", {f32({129, 257}), f32({257, 5})}},
      {"MatMul", {f32({2, 3, 4, 5}), f32({2, 3, 5, 6})}},  // strided batched
      {"MatMul", {f32({3, 4, 5}), f32({2, 1, 5, 6})}},     // irregular broadcast: one GEMM each
      {"MatMul", {f32({4, 5}), f32({3, 5, 7})}},
      {"Gemm", {f32({5, 7}), f32({7, 3}), f32({3})}},
      {"Gemm",
       {f32({7, 5}), f32({3, 7}), f32({5, 1})},
       {{"transA", int64_t(1)}, {"transB", int64_t(1)}, {"alpha", 0.5f}, {"beta", 2.f}}},
      {"Gemm", {f32({33, 70}), f32({70, 9}), f32({1, 9})}},
      {"Gemm", {f32({4, 6}), f32({6, 2})}},
      {kFusedMatMulOp,
       {f32({2, 3, 33}), f32({33, 65}), f32({65})},
       {{"activation", std::string("gelu_tanh")}},
       kCodebookDomain},
      {kFusedMatMulOp, {f32({129, 257}), f32({5, 257})}, {{"transB", int64_t(1)}}, kCodebookDomain},
      {kFusedMatMulOp,
       {f32({4, 64}), f32({64, 96}), f32({96})},
       {{"activation", std::string("gelu_erf")}},
       kCodebookDomain},
      {kFusedMatMulOp, {f32({1, 2, 7, 16}), f32({16, 3})}, {}, kCodebookDomain},
      // Attention: Q [B,H,T,dh], Kt [B,H,dh,S], V [B,H,S,dv], mask broadcast to [B,H,T,S].
      {kAttentionOp, {f32({2, 3, 5, 8}), f32({1, 3, 8, 7}), f32({2, 1, 7, 6})}, {{"scale", 0.35f}}, kCodebookDomain},
      {kAttentionOp,
       {f32({2, 3, 5, 8}), f32({2, 3, 8, 7}), f32({2, 3, 7, 6}), {{5, 7}, DType::f32, {}, causal_mask(5, 7, -inf)}},
       {{"scale", 0.25f}},
       kCodebookDomain},
      {kAttentionOp,
       {f32({1, 2, 6, 16}),
        f32({1, 2, 16, 6}),
        f32({1, 2, 6, 16}),
        {{1, 1, 6, 6}, DType::f32, {}, causal_mask(6, 6, -3.4028235e38f).reshaped({1, 1, 6, 6})}},
       {{"scale", 0.25f}},
       kCodebookDomain},
      {kAttentionOp,  // rows that see no key: 0 with nan_to_zero
       {f32({1, 2, 4, 8}),
        f32({1, 2, 8, 4}),
        f32({1, 2, 4, 3}),
        {{4, 4}, DType::f32, {}, causal_mask(4, 4, -inf, {1, 3})}},
       {{"scale", 0.5f}, {"nan_to_zero", int64_t(1)}},
       kCodebookDomain},
      {kAttentionOp, {f32({1, 2, 3, 4}), f32({1, 2, 4, 9}), f32({1, 2, 9, 130})}, {}, kCodebookDomain},  // dv > threads
      {kAttentionOp,  // generation: 5 cached keys and values before the 3 new ones
       {f32({2, 2, 3, 8}),
        f32({2, 2, 8, 3}),
        f32({2, 2, 3, 6}),
        {{3, 8}, DType::f32, {}, causal_mask(3, 8, -inf)},
        f32({2, 2, 8, 5}),
        f32({2, 2, 5, 6})},
       {{"scale", 0.3f}},
       kCodebookDomain},
      {kAttentionOp,
       {f32({1, 1, 2, 4}), f32({1, 1, 4, 13000}), f32({1, 1, 13000, 3})},
       {{"scale", 0.1f}},
       kCodebookDomain},  // scores over 48 KiB of shared memory
      {"Transpose", {f32({2, 3, 4, 5})}, {{"perm", std::vector<int64_t>{0, 2, 1, 3}}}},
      {"Transpose", {f32({2, 3, 4, 5})}, {{"perm", std::vector<int64_t>{0, 2, 3, 1}}}},
      {"Transpose", {f32({33, 65})}},
      {"Concat", {f32({2, 3, 4}), f32({2, 5, 4}), f32({2, 1, 4})}, {{"axis", int64_t(1)}}},
      {"Concat", {f32({3, 2}), f32({3, 7})}, {{"axis", int64_t(-1)}}},
      {"Split", {f32({2, 9, 4})}, {{"axis", int64_t(1)}}, "", 3},
      {"Split", {f32({2, 3, 192})}, {{"axis", int64_t(2)}, {"num_outputs", int64_t(3)}}, "", 3},
      {"Gather", {f32({500, 64}), indices({2, 7}, 500)}},
      {"Gather", {f32({3, 10, 4}), indices({5}, 10, DType::i32)}, {{"axis", int64_t(1)}}},
      {"Gather", {f32({128, 64}), indices({}, 128)}},
      {"Cast", {{{3, 4}, DType::i64, test::uniform(0, 1).ints(-1000, 1000)}}, {{"to", int64_t(1)}}},
      {"Cast", {f32({3, 4})}, {{"to", int64_t(1)}}},
      {"Cast", {{{5, 3}, DType::boolean}}, {{"to", int64_t(1)}}},
  };
  // The training step's reductions over constant axes, Sum, and backward ops.
  auto axes = [](std::vector<int64_t> a) {
    const int64_t n = int64_t(a.size());
    return KernelInput{{n}, DType::i64, {}, Tensor::from_vector<int64_t>(a, {n}), true};
  };
  for (const char* op : {"ReduceSum", "ReduceSumSquare", "ReduceMean"}) {
    cases.push_back({op, {f32({4, 5, 6}), axes({0, 2})}, {{"keepdims", int64_t(0)}}});
    cases.push_back({op, {f32({3, 700}), axes({-1})}});
    cases.push_back({op, {f32({2, 3, 4})}});  // every axis
  }
  cases.push_back({"Sum", {f32({3, 5, 7}), f32({3, 5, 7}), f32({3, 5, 7})}});
  // The loss's indexing: labels per row, repeated rows for the embedding gradient.
  cases.push_back({"GatherElements", {f32({6, 11}), indices({6, 1}, 11)}, {{"axis", int64_t(1)}}});
  cases.push_back({"GatherElements", {f32({4, 5, 3}), indices({2, 5, 3}, 4)}});
  for (const char* reduction : {"none", "add"})
    cases.push_back({"ScatterElements",
                     {f32({6, 11}), {{6, 3}, DType::i64, test::uniform(0, 1).ints(-11, 10)}, f32({6, 3})},
                     {{"axis", int64_t(1)}, {"reduction", std::string(reduction)}}});
  cases.push_back({"GatherGrad",
                   {f32({2, 9, 4}),
                    {{9}, DType::i64, test::uniform(0, 1).ints(0, 4)},
                    {{3}, DType::i64, {}, Tensor::from_vector<int64_t>({2, 5, 4}, {3})}},
                   {{"axis", int64_t(1)}},
                   kGradDomain});
  cases.push_back({"ArgMax", {f32({5, 3, 7})}, {{"axis", int64_t(-1)}, {"keepdims", int64_t(0)}}});
  cases.push_back({"ArgMax", {f32({5, 3, 7})}, {{"axis", int64_t(1)}}});
  // Views whose shape is computed on the host (an input here): sized from it.
  cases.push_back({"Reshape", {f32({4, 6, 5}), {{3}, DType::i64, {}, Tensor::from_vector<int64_t>({0, -1, 10}, {3})}}});
  cases.push_back({"Expand", {f32({3, 1, 5}), {{4}, DType::i64, {}, Tensor::from_vector<int64_t>({2, 1, 4, 1}, {4})}}});
  cases.push_back({"ConstantOfShape",
                   {{{2}, DType::i64, {}, Tensor::from_vector<int64_t>({3, 70}, {2})}},
                   {{"value", Tensor::from_vector<float>({-2.5f}, {1})}}});
  cases.push_back({"Slice", {f32({4, 10, 6}), axes({1, -4}), axes({3, 100}), axes({0, 1}), axes({1, 2})}});
  cases.push_back({"Slice", {f32({2, 3, 9}), axes({-1}), axes({-100}), axes({2}), axes({-2})}});  // backwards
  cases.push_back({"SliceGrad",
                   {f32({2, 2, 6}), axes({4, 10, 6}), axes({1, -4}), axes({3, 100}), axes({0, 1}), axes({1, 2})},
                   {},
                   kGradDomain});
  cases.push_back({"LogSoftmax", {f32({4, 300})}, {{"axis", int64_t(-1)}}});
  cases.push_back({"GeluGrad", {f32({3, 1001}), f32({3, 1001}, test::uniform(-5, 5))}, {}, kGradDomain});
  cases.push_back({"GeluGrad",
                   {f32({3, 1001}), f32({3, 1001}, test::uniform(-5, 5))},
                   {{"approximate", std::string("tanh")}},
                   kGradDomain});
  for (int64_t log : {0, 1})
    cases.push_back({"SoftmaxGrad", {f32({5, 300}), f32({5, 300}, test::uniform(-3, 0))}, {{"log", log}}, kGradDomain});
  cases.push_back(
      {"LayerNormalizationGrad", {f32({6, 2, 40}), f32({6, 2, 40}), f32({40})}, {{"epsilon", 1e-5f}}, kGradDomain, 3});
  // AttentionGrad (dy, Q, Kt, V, mask): training's folded layout (Q, V, dy
  // as [B, T, H, d] rows, Kt as [B, S, H, dh]), and the default one.
  const std::vector<int64_t> rows = {0, 2, 1, 3};
  cases.push_back({kAttentionGradOp,
                   {f32({2, 9, 3, 8}),
                    f32({2, 9, 3, 12}),
                    f32({2, 9, 3, 12}),
                    f32({2, 9, 3, 8}),
                    {{9, 9}, DType::f32, {}, causal_mask(9, 9, -3.4028235e38f)}},
                   {{"scale", 0.25f},
                    {"q_perm", rows},
                    {"k_perm", std::vector<int64_t>{0, 2, 3, 1}},
                    {"v_perm", rows},
                    {"out_perm", rows}},
                   kGradDomain,
                   3});
  cases.push_back({kAttentionGradOp,
                   {f32({2, 3, 5, 6}),
                    f32({2, 3, 5, 8}),
                    f32({2, 3, 8, 7}),
                    f32({2, 3, 7, 6}),
                    {{5, 7}, DType::f32, {}, causal_mask(5, 7, -inf)}},
                   {{"scale", 0.35f}},
                   kGradDomain,
                   3});
  // CodebookGrad (dy, x, codes, ln_scale, ln_bias, ids) in every loss mode;
  // ids with blocked slots (-1) and codes selected many times.
  auto codebook_grad = [&](int64_t B, int64_t T, int64_t G, int64_t K, int64_t Dg, int64_t k, const char* loss,
                           double lowest_id = -1) {
    const int64_t D = G * Dg;
    return KernelCase{"CodebookGrad",
                      {f32({B, T, D}),
                       f32({B, T, D}),
                       f32({G, K, Dg}),
                       f32({G, Dg}),
                       f32({G, Dg}),
                       {{B, T, G, k}, DType::i64, test::uniform(0, 1).ints(lowest_id, double(K - 1))}},
                      {{"k", k}, {"loss", std::string(loss)}},
                      kGradDomain,
                      4};
  };
  for (const char* loss : {"base", "aeloss", "fullaeloss", "vqvae-0.5"})
    cases.push_back(codebook_grad(2, 5, 3, 7, 8, 2, loss));
  cases.push_back(codebook_grad(1, 40, 1, 300, 16, 4, "fullaeloss-0.1"));  // 160 slots: a sort over many blocks
  cases.push_back(codebook_grad(2, 4, 1, 3, 8, 2, "aeloss", 0));  // 16 slots, none blocked: no padding in the sort
  // AdamW: p, g, m, v [3, 1001]; lr, step and the clip factor as scalars.
  cases.push_back(
      {"AdamW",
       {f32({3, 1001}), f32({3, 1001}), f32({3, 1001}), f32({3, 1001}, test::uniform(0, 1)),
        f32({}, test::uniform(1e-3, 1e-2)), f32({}, test::uniform(1, 20).ints(1, 20)), f32({}, test::uniform(0.2, 1))},
       {{"weight_decay", 0.01f}, {"beta2", 0.99f}},
       kTrainDomain,
       3});
  for (KernelCase& c : codebook_cases()) cases.push_back(std::move(c));
  return cases;
}

// A case's one-node graph, and random inputs for it.
std::shared_ptr<Graph> case_graph(const KernelCase& c, std::map<std::string, Tensor>& feeds) {
  auto g = std::make_shared<Graph>();
  std::vector<Value*> ins;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const KernelInput& in = c.inputs[i];
    Tensor value = in.given.defined() ? in.given.reshaped(in.dims) : test::random_tensor(in.dtype, in.dims, in.values);
    if (in.constant) {
      ins.push_back(g->add_constant("x" + std::to_string(i), value));
      continue;
    }
    ins.push_back(g->add_input("x" + std::to_string(i), {in.dtype, Shape::of(in.dims)}));
    feeds[ins.back()->name] = value;
  }
  std::vector<Value*> ys;
  for (int o = 0; o < c.outputs; ++o) ys.push_back(g->add_value("y" + std::to_string(o)));
  g->add_node(c.op, ins, ys, c.attrs, "", c.domain);
  g->outputs = ys;
  canonicalize(*g);
  return g;
}

// Each case placed on `device` (its one node, nothing else), against the
// unplaced reference run.
void check_kernel_cases(const Backend& device, double relative_tolerance) {
  auto reference = make_backend("reference");
  for (const KernelCase& c : kernel_cases()) {
    SCOPED_TRACE(c.op + " " + dims_str(c.inputs[0].dims));
    std::map<std::string, Tensor> feeds;
    std::shared_ptr<Graph> g = case_graph(c, feeds);
    auto placed = clone_graph(*g);
    PlaceDevicesPass pass(placement_target(device));
    PassManager().run(pass, *placed);
    EXPECT_EQ(pass.stats().placed, 1);
    CompileOptions opts;
    opts.device_backend = &device;
    const std::vector<Tensor> want = Executable::compile(g, *reference)->run(feeds);
    const std::vector<Tensor> got = Executable::compile(placed, *reference, opts)->run(feeds);
    ASSERT_EQ(got.size(), want.size());
    for (size_t o = 0; o < got.size(); ++o) {
      ASSERT_EQ(got[o].dtype(), want[o].dtype());
      ASSERT_EQ(got[o].dims(), want[o].dims());
      // Products and sums round differently: relative to the result's
      // largest finite magnitude. Infinities and NaNs must match exactly.
      double magnitude = 1, worst = 0;
      for (int64_t i = 0; i < want[o].numel(); ++i)
        if (std::isfinite(want[o].get_double(i))) magnitude = std::max(magnitude, std::fabs(want[o].get_double(i)));
      for (int64_t i = 0; i < want[o].numel(); ++i) {
        const double a = got[o].get_double(i), b = want[o].get_double(i);
        const bool same_special = (std::isnan(a) && std::isnan(b)) || (std::isinf(b) && a == b);
        const double d = std::isfinite(b) ? std::fabs(a - b) : same_special ? 0.0 : INFINITY;
        if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
      }
      EXPECT_LE(worst, relative_tolerance * magnitude) << "output " << o;
    }
  }
}

// Without a GPU: cuda_kernel_supports claims every case's node, and the
// cases run as the GPU test runs them, on the simulated device.
TEST(CudaPlacement, KernelCasesAreClaimedAndRunPlaced) {
  std::set<std::string> ops;
  for (const KernelCase& c : kernel_cases()) {
    std::map<std::string, Tensor> feeds;
    std::shared_ptr<Graph> g = case_graph(c, feeds);
    EXPECT_TRUE(cuda_kernel_supports(*g->nodes().front())) << g->nodes().front()->describe();
    ops.insert(c.domain.empty() ? c.op : c.domain + "." + c.op);
  }
  SimDeviceBackend sim(ops);
  check_kernel_cases(sim, 0);
}

// supports() says no to what the kernels do not handle, so it stays on the CPU.
TEST(CudaPlacement, RefusesWhatTheKernelsDoNotHandle) {
  Graph g;
  auto in = [&](DType dt, std::vector<int64_t> dims) {
    return g.add_input("in" + std::to_string(g.inputs.size()), {dt, Shape::of(dims)});
  };
  auto node = [&](const std::string& op, std::vector<Value*> ins, std::map<std::string, AttrValue> attrs = {},
                  const std::string& domain = "", int outputs = 1) {
    std::vector<Value*> outs;
    for (int o = 0; o < outputs; ++o)
      outs.push_back(g.add_value("out" + std::to_string(g.nodes().size()) + "_" + std::to_string(o)));
    Node* n = g.add_node(op, ins, outs, attrs, "", domain);
    infer_node_types(*n);  // the output types supports() reads
    return n;
  };
  Value* x = in(DType::f32, {4, 8});
  Value* w = in(DType::f32, {8, 3});
  EXPECT_TRUE(cuda_kernel_supports(*node(kFusedMatMulOp, {x, w}, {}, kCodebookDomain)));
  EXPECT_FALSE(
      cuda_kernel_supports(*node(kFusedMatMulOp, {x, w}, {{kPrecisionAttr, std::string("bf16")}}, kCodebookDomain)))
      << "bf16 products stay on the CPU";
  EXPECT_FALSE(cuda_kernel_supports(*node("Add", {in(DType::i64, {3}), in(DType::i64, {3})})));
  EXPECT_FALSE(cuda_kernel_supports(*node("Softmax", {x}, {{"axis", int64_t(0)}})));
  // Views: their index input sizes the output on the host, computed or constant.
  EXPECT_TRUE(cuda_kernel_supports(*node("Reshape", {x, in(DType::i64, {2})}))) << "a computed shape";
  EXPECT_TRUE(cuda_kernel_supports(*node("Reshape", {x, g.add_constant("shape", test::i64s({2, 16}))})));
  // Slice's kernel reads its starts: constants only.
  EXPECT_FALSE(cuda_kernel_supports(
      *node("Slice", {x, in(DType::i64, {1}), g.add_constant("ends", test::i64s({2})), nullptr, nullptr})));
  EXPECT_TRUE(cuda_kernel_supports(*node("Split", {x, in(DType::i64, {2})}, {{"axis", int64_t(1)}}, "", 2)))
      << "a computed split";
  Value* sizes = g.add_constant("sizes", test::i64s({3, 5}));
  EXPECT_TRUE(cuda_kernel_supports(*node("Split", {x, sizes}, {{"axis", int64_t(1)}}, "", 2))) << "a constant split";
  EXPECT_TRUE(cuda_kernel_supports(*node("Split", {x}, {{"axis", int64_t(1)}}, "", 2)));
  EXPECT_FALSE(cuda_kernel_supports(*node("Gather", {in(DType::i64, {5, 2}), in(DType::i64, {3})})));
  EXPECT_FALSE(cuda_kernel_supports(*node("MatMul", {x, in(DType::f32, {8})})));
  EXPECT_FALSE(cuda_kernel_supports(*node("Pow", {x, in(DType::i64, {})})));
  EXPECT_FALSE(cuda_kernel_supports(*node("Cast", {x}, {{"to", int64_t(7)}})));
  Node* ln = node("LayerNormalization", {x, in(DType::f32, {8})}, {}, "", 3);
  EXPECT_FALSE(cuda_kernel_supports(*ln)) << "the mean and inverse-std outputs";
}

// The simulated device claiming exactly the nodes the CUDA kernels claim.
class SimAsCuda : public SimDeviceBackend {
 public:
  SimAsCuda() : SimDeviceBackend({}) {}
  bool supports(const Node& n) const override { return cuda_kernel_supports(n); }
};

// Every test model, as imported and fused, placed on `device` and run on
// case0 and case1 three times each against the unplaced reference run:
// `placed_check` sees each placed graph and its placement counts (`fused`
// says which graph), `compare` each output.
void run_models_placed(const Backend& device,
                       const std::function<void(const Graph&, const PlacementStats&, bool fused)>& placed_check,
                       const std::function<void(const Tensor& got, const Tensor& want)>& compare) {
  auto reference = make_backend("reference");
  for (const std::string& model : model_names())
    for (bool fused : {false, true}) {
      SCOPED_TRACE(model + (fused ? " fused" : ""));
      std::shared_ptr<Graph> graph = import_onnx((models_dir() / model / "model.onnx").string());
      if (fused) graph = inference_graph(graph);
      auto plain = Executable::compile(graph, *reference);
      std::shared_ptr<Graph> placed = clone_graph(*graph);
      PlaceDevicesPass pass(placement_target(device));
      PassManager().run(pass, *placed);
      placed_check(*placed, pass.stats(), fused);
      CompileOptions opts;
      opts.device_backend = &device;
      auto exe = Executable::compile(placed, *reference, opts);
      for (const char* case_dir : {"case0", "case1"}) {
        const auto feeds = case_inputs(*plain, models_dir() / model / case_dir);
        const auto want = plain->run(feeds);
        for (int run = 0; run < 3; ++run) {
          const auto got = exe->run(feeds);
          ASSERT_EQ(got.size(), want.size());
          for (size_t i = 0; i < got.size(); ++i) {
            SCOPED_TRACE(std::string(case_dir) + " run " + std::to_string(run) + ": " + exe->output_names()[i]);
            compare(got[i], want[i]);
          }
        }
      }
    }
}

// Without a GPU: the test models placed as the CUDA backend places them (as
// imported and fused) compile and run, and the runtime sizes every placed
// node from host-readable values; the reference kernels on the simulated
// device give the unplaced run's outputs bit for bit.
TEST(CudaPlacement, ModelsRunPlacedAsOnTheGpu) {
  SimAsCuda sim;
  run_models_placed(
      sim, [](const Graph&, const PlacementStats& stats, bool) { EXPECT_GT(stats.placed, 10); },
      [](const Tensor& got, const Tensor& want) { EXPECT_TRUE(got.bitwise_equal(want)); });
}

// Training on a device (docs/cuda.md#training), placed as the CUDA backend
// places it, on the simulated device (reference kernels): every step's
// loss and the final state are the host run's bit for bit, and the updated
// parameters and optimizer states stay on the device between steps, so the
// later steps copy fewer values over than the first.
TEST(CudaPlacement, TrainingKeepsItsStateOnTheDevice) {
  test::TokFsmSetup s = test::tokfsm_setup(16, 2);
  auto factory = [] { return test::tiny_tokfsm_model(32, 1, 20); };
  auto reference = make_backend("reference");
  SimAsCuda sim;
  TrainerOptions on_device = s.opts;
  on_device.device_backend = &sim;
  Trainer host(factory, s.data, s.opts, *reference), placed(factory, s.data, on_device, *reference);
  std::vector<int64_t> copies;
  for (int i = 0; i < 4; ++i) {
    const int64_t before = sim.copies_to_device;
    const StepMetrics a = host.train_step(), b = placed.train_step();
    copies.push_back(sim.copies_to_device - before);
    EXPECT_EQ(a.loss, b.loss) << "step " << i + 1;
  }
  EXPECT_LT(copies[2], copies[0]) << "the state stays on the device";
  EXPECT_EQ(copies[2], copies[3]);
  EXPECT_EQ(host.evaluate().loss, placed.evaluate().loss);
  for (auto& [name, t] : host.state()) EXPECT_TRUE(t.bitwise_equal(placed.state().at(name))) << name;
  std::cout << "copies to the device per step: " << copies[0] << " (first), " << copies[2] << " (later)\n";
}

// Generation placed as CUDA places it, on the simulated device: the KV
// cache lives in device memory (its new columns copied there on the device),
// the logits are the host run's bit for bit, and a decode step copies only
// a few small inputs over, whatever the number of layers.
TEST(CudaPlacement, GenerationKeepsTheCacheOnTheDevice) {
  SimAsCuda sim;
  for (const std::string& model : {"gpt2", "gpt-neox"}) {
    SCOPED_TRACE(model);
    tools::GeneratorOptions host_opts;
    host_opts.context = 64;
    host_opts.backend = "reference";
    tools::GeneratorOptions device_opts = host_opts;
    device_opts.device_backend = &sim;
    tools::Generator host(import_onnx((models_dir() / model / "model.onnx").string()), host_opts);
    tools::Generator placed(import_onnx((models_dir() / model / "model.onnx").string()), device_opts);
    std::vector<float> a = host.prefill({5, 17, 30, 2}), b = placed.prefill({5, 17, 30, 2});
    std::vector<int64_t> bytes;
    for (int step = 0; step < 4; ++step) {
      EXPECT_EQ(a, b) << "step " << step;
      const int64_t next = std::max_element(a.begin(), a.end()) - a.begin();
      const int64_t before = sim.bytes_to_device;
      a = host.step(next);
      b = placed.step(next);
      bytes.push_back(sim.bytes_to_device - before);
    }
    // One layer's key cache is [1, H, dh, capacity] floats; a step sends the
    // token, its position and mask rows, far less than that.
    const Shape& key_shape = placed.graph().find_value(past_key_name(0))->type.shape;
    ASSERT_TRUE(key_shape.dims[1].is_static() && key_shape.dims[2].is_static()) << key_shape.str();
    const int64_t cache_bytes =
        int64_t(sizeof(float)) * key_shape.dims[1].value * key_shape.dims[2].value * placed.capacity();
    EXPECT_LT(bytes[3], cache_bytes) << "a cache went over";
    std::cout << "[" << model << "] bytes to the device per decode step: " << bytes[3]
              << " (one layer's key cache: " << cache_bytes << ")\n";
  }
}

TEST(CudaDevice, KernelsMatchTheReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  check_kernel_cases(*cuda, 1e-4);
}

// A Gather index out of range is an error naming the node, as on the host.
TEST(CudaDevice, GatherIndexOutOfRangeIsAnError) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  auto reference = make_backend("reference");
  auto g = std::make_shared<Graph>();
  Value* table = g->add_constant("table", test::random_tensor(DType::f32, {10, 4}));
  Value* ids = g->add_input("ids", {DType::i64, Shape::of({3})});
  Value* y = g->add_value("y");
  g->add_node("Gather", {table, ids}, {y}, {}, "embed");
  g->outputs = {y};
  place_devices(*g, placement_target(*cuda));
  CompileOptions opts;
  opts.device_backend = cuda.get();
  auto exe = Executable::compile(g, *reference, opts);
  EXPECT_EQ(exe->run({{"ids", test::i64s({0, 9, -10})}})[0].dims(), (std::vector<int64_t>{3, 4}));
  try {
    exe->run({{"ids", test::i64s({0, 10, 1})}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("embed"), std::string::npos) << e.what();
  }
}

// The test models with the CUDA kernels placed, as imported and fused,
// against the reference; in the fused graphs every f32 node but the
// value-sized ones runs on the GPU.
TEST(CudaDevice, ModelsMatchTheReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  run_models_placed(
      *cuda,
      [](const Graph& placed, const PlacementStats& stats, bool fused) {
        EXPECT_GT(stats.placed, 0);
        if (!fused) return;
        const std::vector<std::string> left = f32_nodes_left_on_the_host(placed);
        EXPECT_TRUE(left.empty()) << "f32 nodes on the host:" << joined(left);
      },
      [](const Tensor& got, const Tensor& want) {
        if (dtype_is_float(want.dtype())) {
          EXPECT_LE(cb::test::max_abs_diff(got, want), 1e-4 * std::max(1.0, cb::test::max_abs(want)));
        }
      });
}

// The test models compiled with codebooks (per-head ones before the
// attention's projection, one on the MLP's output, k = 4 and 8) and fused:
// every codebook runs on the GPU, and the logits match the reference's (a
// code chosen differently would move them by far more than the tolerance).
TEST(CudaDevice, ModelsWithCodebooksMatchTheReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  auto reference = make_backend("reference");
  for (const std::string& model : model_names()) {
    SCOPED_TRACE(model);
    std::shared_ptr<Graph> graph = import_onnx((models_dir() / model / "model.onnx").string());
    CodebookConfig cfg;
    cfg.placements = {{Placement::attn_preproj, 64, 4, kGroupsPerHead}, {Placement::mlp, 100, 8, 1}};
    cfg.seed = 3;
    const size_t inserted = insert_codebooks(*graph, cfg).size();
    graph = inference_graph(graph);
    std::shared_ptr<Graph> placed = clone_graph(*graph);
    place_devices(*placed, placement_target(*cuda));
    size_t on_device = 0;
    for (auto& n : placed->nodes()) on_device += is_codebook_node(*n) && !node_device(*n).is_host();
    EXPECT_EQ(on_device, inserted);
    CompileOptions opts;
    opts.device_backend = cuda.get();
    auto plain = Executable::compile(graph, *reference);
    auto exe = Executable::compile(placed, *reference, opts);
    const auto feeds = case_inputs(*plain, models_dir() / model / "case0");
    const auto want = plain->run(feeds), got = exe->run(feeds);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      if (dtype_is_float(want[i].dtype())) {
        EXPECT_LE(cb::test::max_abs_diff(got[i], want[i]), 1e-4 * std::max(1.0, cb::test::max_abs(want[i])))
            << exe->output_names()[i];
      }
  }
}

// Training with --device cuda follows the CPU run: each step's loss within
// 1e-4 (relative), the evaluation's too, the trained state within 1e-3.
TEST(CudaDevice, TrainingFollowsTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  auto cpu = make_backend("cpu");
  test::TokFsmSetup s = test::tokfsm_setup(16, 2);
  s.opts.replace_after_steps = 3;  // a dead-code replacement writes the state on the host
  auto factory = [] { return test::tiny_tokfsm_model(32, 1, 20); };
  TrainerOptions on_device = s.opts;
  on_device.device_backend = cuda.get();
  Trainer host(factory, s.data, s.opts, *cpu), placed(factory, s.data, on_device, *cpu);
  for (int i = 0; i < 5; ++i) {
    const StepMetrics a = host.train_step(), b = placed.train_step();
    EXPECT_NEAR(b.loss, a.loss, 1e-4 * std::max(1.0, std::abs(a.loss))) << "step " << i + 1;
  }
  const EvalMetrics ea = host.evaluate(), eb = placed.evaluate();  // the evaluation graph, placed too
  EXPECT_NEAR(eb.loss, ea.loss, 1e-4 * std::max(1.0, std::abs(ea.loss)));
  EXPECT_EQ(eb.accuracy, ea.accuracy);
  for (auto& [name, t] : host.state()) {
    const Tensor& got = placed.state().at(name);
    ASSERT_TRUE(got.device().is_host()) << name;
    if (dtype_is_float(t.dtype())) {  // parameters and moments; the f64 sums of the codebooks' errors
      EXPECT_LE(cb::test::max_abs_diff(got, t), 1e-3 * std::max(1.0, cb::test::max_abs(t))) << name;
    } else {  // code usage counts
      EXPECT_TRUE(got.bitwise_equal(t)) << name;
    }
  }
}

// Generation with the model on the GPU (the KV cache in host buffers, fed
// each step) picks the CPU's greedy tokens, with logits within 1e-4.
TEST(CudaDevice, GenerationFollowsTheCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  for (const std::string& model : {"gpt2", "gpt-neo", "gpt-neox"}) {
    SCOPED_TRACE(model);
    tools::GeneratorOptions host_opts;
    host_opts.context = 64;
    tools::GeneratorOptions device_opts = host_opts;
    device_opts.device_backend = cuda.get();
    tools::Generator host(import_onnx((models_dir() / model / "model.onnx").string()), host_opts);
    tools::Generator placed(import_onnx((models_dir() / model / "model.onnx").string()), device_opts);
    std::vector<float> a = host.prefill({5, 17, 30, 2}), b = placed.prefill({5, 17, 30, 2});
    for (int step = 0; step < 6; ++step) {
      ASSERT_EQ(a.size(), b.size());
      EXPECT_LE(cb::test::max_abs_diff(a, b), 1e-4 * std::max(1.0, double(*std::max_element(a.begin(), a.end()))));
      const int64_t next = std::max_element(a.begin(), a.end()) - a.begin();
      ASSERT_EQ(next, std::max_element(b.begin(), b.end()) - b.begin()) << "step " << step;
      a = host.step(next);
      b = placed.step(next);
    }
  }
}

TEST(CudaDevice, WithoutAGpuCreatingItIsOneClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  try {
    make_cuda_backend();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs an NVIDIA GPU"), std::string::npos) << e.what();
  }
}
#endif

}  // namespace
