// End-to-end check of the ONNX importer, the runtime and every backend on the
// tiny GPT-2 / GPT-Neo / GPT-NeoX models in tests/models/: each model is
// imported, compiled on the backend, run on each committed case's inputs and
// its logits compared with the ONNX Runtime logits stored next to them
// (scripts/make_test_models.py makes the models and the reference data).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backends/backend.h"
#include "frontend/npy.h"
#include "frontend/onnx_import.h"
#include "ir/attention.h"
#include "ir/fused_matmul.h"
#include "passes/inference_pipeline.h"
#include "runtime/executable.h"
#include "tests/model_fixtures.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::max_abs_diff;
using cb::test::model_names;
using cb::test::models_dir;
namespace fs = std::filesystem;

namespace {

constexpr double kTolerance = 1e-4;  // max |ours - ORT| on the logits

// case0, case1, ... of one model folder, in numeric order.
std::vector<fs::path> case_dirs(const fs::path& model_dir) {
  std::vector<fs::path> cases;
  for (int i = 0; fs::is_directory(model_dir / ("case" + std::to_string(i))); ++i)
    cases.push_back(model_dir / ("case" + std::to_string(i)));
  return cases;
}

using ModelAndBackend = std::tuple<std::string, std::string>;

class TinyModel : public ::testing::TestWithParam<ModelAndBackend> {};

TEST_P(TinyModel, LogitsMatchOnnxRuntime) {
  const auto& [model, backend_name] = GetParam();
  const fs::path dir = models_dir() / model;
  std::shared_ptr<Graph> graph = import_onnx((dir / "model.onnx").string());
  // "<backend>_fused": the graph after the inference fusions (passes/inference_pipeline.h).
  const std::string fused_suffix = "_fused";
  std::string backend_base = backend_name;
  if (backend_name.ends_with(fused_suffix)) {
    backend_base = backend_name.substr(0, backend_name.size() - fused_suffix.size());
    graph = inference_graph(graph);
    int64_t fused = 0;
    for (auto& n : graph->nodes()) fused += n->op_type == kFusedMatMulOp;
    EXPECT_GT(fused, 0) << model << ": no codebook.FusedMatMul after the inference fusions";
    int64_t attention = 0;
    for (auto& n : graph->nodes()) attention += n->op_type == kAttentionOp;
    EXPECT_EQ(attention, 2) << model << ": every layer's attention (2 layers) must fuse (passes/fuse_attention.h)";
  }
  std::unique_ptr<Backend> backend = make_backend(backend_base);
  std::unique_ptr<Executable> exe = Executable::compile(graph, *backend);

  const std::vector<std::string> outputs = exe->output_names();
  const auto logits_it = std::find(outputs.begin(), outputs.end(), "logits");
  ASSERT_NE(logits_it, outputs.end()) << model << " has no output named 'logits'";
  const size_t logits_index = size_t(logits_it - outputs.begin());

  const std::vector<fs::path> cases = case_dirs(dir);
  ASSERT_FALSE(cases.empty()) << "no case0/ in " << dir;
  for (const fs::path& case_dir : cases) {
    SCOPED_TRACE(case_dir.string());
    // Feed exactly the graph's inputs; every one must have its .npy.
    std::map<std::string, Tensor> feeds;
    for (const std::string& name : exe->input_names()) {
      const fs::path file = case_dir / (name + ".npy");
      ASSERT_TRUE(fs::exists(file)) << "graph input '" << name << "' has no " << file;
      feeds[name] = npy_read(file.string());
    }
    const Tensor expected = npy_read((case_dir / "logits.npy").string());
    const std::vector<Tensor> results = exe->run(feeds);
    ASSERT_EQ(results.size(), outputs.size());
    const Tensor& logits = results[logits_index];
    ASSERT_EQ(logits.dtype(), DType::f32);
    ASSERT_EQ(expected.dtype(), DType::f32);
    ASSERT_EQ(logits.dims(), expected.dims())
        << "ours " << dims_str(logits.dims()) << " vs ORT " << dims_str(expected.dims());
    const double diff = max_abs_diff(logits, expected);
    std::cout << "[" << model << " on " << backend_name << "] " << case_dir.filename().string() << " "
              << dims_str(expected.dims()) << ": max |ours - ORT| = " << diff << "\n";
    EXPECT_LE(diff, kTolerance);
  }
}

std::string param_name(const ::testing::TestParamInfo<ModelAndBackend>& info) {
  std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param);
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllModels, TinyModel,
                         ::testing::Combine(::testing::ValuesIn(model_names()),
                                            ::testing::Values("reference", "cpu", "reference_fused", "cpu_fused")),
                         param_name);

// Guards against the parameterised test silently running on nothing.
TEST(TinyModels, CommittedModelsArePresent) {
  const std::vector<std::string> names = model_names();
  for (const char* required : {"gpt2", "gpt-neo", "gpt-neox", "gpt-neox-sequential"})
    EXPECT_NE(std::find(names.begin(), names.end(), required), names.end())
        << "missing " << (models_dir() / required) << "/model.onnx";
}

}  // namespace
