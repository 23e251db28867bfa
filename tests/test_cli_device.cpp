// `--device cpu|cuda` on run, bench, eval, generate, cache build and train (docs/cuda.md): cpu is the default and
// changes nothing; without a GPU (or a CUDA build), cuda is one clear error
// with exit code 2; with one, run gives the cpu run's output.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "tests/cli_util.h"
#ifdef CB_WITH_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace {

using cb::test::Result;
using cb::test::run_tool;

const std::string kModel = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";

bool have_gpu() {
#ifdef CB_WITH_CUDA
  return cb::cuda_device_count() > 0;
#else
  return false;
#endif
}

TEST(CliDevice, CpuIsTheDefault) {
  Result plain = run_tool("run " + kModel + " --tokens 5,17,300");
  Result cpu = run_tool("run " + kModel + " --tokens 5,17,300 --device cpu");
  ASSERT_EQ(plain.code, 0) << plain.out;
  EXPECT_EQ(cpu.code, 0) << cpu.out;
  EXPECT_EQ(cpu.out, plain.out);
}

TEST(CliDevice, CudaWithoutAGpuIsOneClearError) {
  if (have_gpu()) {
    Result cpu = run_tool("run " + kModel + " --tokens 5,17,300");
    Result cuda = run_tool("run " + kModel + " --tokens 5,17,300 --device cuda");
    EXPECT_EQ(cuda.code, 0) << cuda.out;
    EXPECT_EQ(cuda.out, cpu.out);
    return;
  }
  const std::string cache = cb::test::temp_dir("cache_device").string() + "/cache";
  for (const std::string& cmd :
       {"run " + kModel + " --tokens 5,17,300 --device cuda", "bench " + kModel + " --runs 1 --device cuda",
        "eval " + kModel + " --device cuda", "generate " + kModel + " --tokens 5,17 -n 2 --device cuda",
        "cache build " + kModel + " -o " + cache + " --data tokfsm --device cuda"}) {
    SCOPED_TRACE(cmd);
    Result r = run_tool(cmd);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_EQ(r.out.rfind("error: --device cuda: ", 0), 0u) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  }
  EXPECT_FALSE(std::filesystem::exists(cache)) << "cache build wrote its folder";
}

// `train --device cuda` (runtime.device) without a GPU: one error, exit 2,
// and no run folder written; an unknown device names the config key.
TEST(CliDevice, TrainOnCudaWithoutAGpuWritesNothing) {
  if (have_gpu()) GTEST_SKIP() << "a GPU is present (CudaDevice.TrainingFollowsTheCpu trains on it)";
  const std::filesystem::path out = cb::test::temp_dir("train_device") / "run";
  Result r = run_tool("train --device cuda --max-steps 1 --progress off -o " + out.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_EQ(r.out.rfind("error: runtime.device: --device cuda: ", 0), 0u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_FALSE(std::filesystem::exists(out)) << "the run folder was created";
  Result bad = run_tool("train runtime.device=tpu --max-steps 1 -o " + out.string());
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("'runtime.device' must be cpu or cuda, not 'tpu'"), std::string::npos) << bad.out;
}

TEST(CliDevice, UnknownDevice) {
  Result r = run_tool("run " + kModel + " --tokens 5 --device tpu");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("--device 'tpu': expected cpu or cuda"), std::string::npos) << r.out;
}

}  // namespace
