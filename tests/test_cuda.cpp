// CUDA backend smoke tests; they skip cleanly on machines without a GPU.
#include <gtest/gtest.h>

#include "backends/backend.h"
#include "support/error.h"
#ifdef CB_WITH_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace {

TEST(Cuda, BackendIsListedWhenBuilt) {
  auto names = cb::backend_names();
  bool listed = std::find(names.begin(), names.end(), "cuda") != names.end();
#ifdef CB_WITH_CUDA
  EXPECT_TRUE(listed);
#else
  EXPECT_FALSE(listed);
#endif
}

TEST(Cuda, CreatesBackendOrExplainsWhyNot) {
#ifndef CB_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  if (cb::cuda_device_count() == 0) {
    // Without a GPU, asking for the backend must be a clean error, not a crash.
    EXPECT_THROW(cb::make_backend("cuda"), cb::Error);
    GTEST_SKIP() << "no CUDA device";
  }
  auto b = cb::make_backend("cuda");
  EXPECT_EQ(b->name(), "cuda");
#endif
}

}  // namespace
