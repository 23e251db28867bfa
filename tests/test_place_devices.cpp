// Device placement without a GPU (docs/cuda.md): the placement pass, the copy
// nodes, the runtime's device checks and per-device memory planning, on the
// simulated device of tests/sim_device.h, whose kernels are the reference
// kernels: a placed graph must give the unplaced reference run's outputs bit
// for bit. The CUDA backend's own memory test runs only on a GPU.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>
#include <map>

#include "frontend/npy.h"
#include "frontend/onnx_import.h"
#include "ir/graph_clone.h"
#include "ir/placement.h"
#include "passes/canonicalize.h"
#include "passes/inference_pipeline.h"
#include "passes/place_devices.h"
#include "runtime/executable.h"
#include "tests/model_fixtures.h"
#include "tests/sim_device.h"
#include "tests/test_util.h"
#ifdef CB_WITH_CUDA
#include "backends/cuda/cuda_backend.h"
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
struct KernelCase {
  std::string op;
  std::vector<std::vector<int64_t>> inputs;
  std::map<std::string, AttrValue> attrs;
};

TEST(CudaDevice, KernelsMatchTheReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  auto reference = make_backend("reference");
  const std::vector<KernelCase> cases = {
      {"Add", {{3, 5, 7}, {7}}, {}},
      {"Sub", {{3, 1, 7}, {5, 1}}, {}},
      {"Mul", {{2, 1, 33}, {3, 1}}, {}},
      {"Div", {{4, 9}, {4, 9}}, {}},
      {"Softmax", {{4, 1000}}, {}},
      {"Softmax", {{3, 2, 17}}, {{"axis", int64_t(-1)}}},
      {"LayerNormalization", {{5, 300}, {300}, {300}}, {{"epsilon", 1e-5f}}},
      {"LayerNormalization", {{2, 3, 33}, {33}}, {}},
      {"MatMul", {{2, 3, 33}, {33, 65}}, {}},
      {"MatMul", {{129, 257}, {257, 5}}, {}},
  };
  for (const KernelCase& c : cases) {
    SCOPED_TRACE(c.op + " " + dims_str(c.inputs[0]));
    auto g = std::make_shared<Graph>();
    std::vector<Value*> ins;
    std::map<std::string, Tensor> feeds;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      ins.push_back(g->add_input("x" + std::to_string(i), {DType::f32, Shape::of(c.inputs[i])}));
      feeds[ins.back()->name] = test::random_tensor(DType::f32, c.inputs[i]);
    }
    Value* y = g->add_value("y");
    g->add_node(c.op, ins, {y}, c.attrs);
    g->outputs = {y};
    canonicalize(*g);
    auto placed = clone_graph(*g);
    PlaceDevicesPass pass(placement_target(*cuda));
    PassManager().run(pass, *placed);
    EXPECT_EQ(pass.stats().placed, 1);
    CompileOptions opts;
    opts.device_backend = cuda.get();
    const Tensor got = Executable::compile(placed, *reference, opts)->run(feeds)[0];
    const Tensor want = Executable::compile(g, *reference)->run(feeds)[0];
    EXPECT_LE(cb::test::max_abs_diff(got, want), 1e-4);
  }
}

// The six test models with the CUDA kernels placed, against the reference.
TEST(CudaDevice, ModelsMatchTheReference) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU";
  auto cuda = make_cuda_backend();
  auto reference = make_backend("reference");
  for (const std::string& model : model_names())
    for (bool fused : {false, true}) {
      SCOPED_TRACE(model + (fused ? " fused" : ""));
      std::shared_ptr<Graph> graph = import_onnx((models_dir() / model / "model.onnx").string());
      if (fused) graph = inference_graph(graph);
      auto plain = Executable::compile(graph, *reference);
      std::shared_ptr<Graph> placed = clone_graph(*graph);
      PlaceDevicesPass pass(placement_target(*cuda));
      PassManager().run(pass, *placed);
      EXPECT_GT(pass.stats().placed, 0);
      CompileOptions opts;
      opts.device_backend = cuda.get();
      auto exe = Executable::compile(placed, *reference, opts);
      const auto feeds = case_inputs(*plain, models_dir() / model / "case0");
      const auto want = plain->run(feeds);
      for (int run = 0; run < 3; ++run) {
        const auto got = exe->run(feeds);
        for (size_t i = 0; i < got.size(); ++i)
          if (dtype_is_float(want[i].dtype())) EXPECT_LE(cb::test::max_abs_diff(got[i], want[i]), 1e-4) << i;
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
