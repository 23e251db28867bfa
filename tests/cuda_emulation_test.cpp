// The CPU emulation of the CUDA runtime (backends/cuda/emulation/), which the
// CUDA kernel tests run on without a GPU: barriers, shuffles and shared
// memory behave as on the GPU, and what the GPU would refuse or fault on is an
// error. Part of test_cuda_emulated (compiled against the emulated runtime).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#include "backends/cuda/cuda_common.h"

namespace {

using cb::cuda::block_sum;

// out[block] = the sum of in[block * n .. + n) (cuda_common.h's block_sum:
// warp shuffles and two __syncthreads); out[grid + block] = thread 0's view
// of the value the last thread wrote to shared memory before a barrier.
__global__ void sum_kernel(const float* in, float* out, int n) {
  __shared__ float reduce[32];
  __shared__ float last;
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += in[blockIdx.x * n + i];
  s = block_sum(s, reduce);
  if (threadIdx.x == blockDim.x - 1) last = float(threadIdx.x);
  __syncthreads();
  if (threadIdx.x == 0) {
    out[blockIdx.x] = s;
    out[gridDim.x + blockIdx.x] = last;
  }
}

// Each lane gets its neighbour's lane id through __shfl_xor_sync / down.
__global__ void shuffle_kernel(int* out) {
  const int lane = threadIdx.x % 32;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, lane, 1);
  out[blockDim.x + threadIdx.x] = __shfl_down_sync(0xffffffffu, lane, 3);
}

__global__ void shared_kernel(float* out) {
  CB_DYNAMIC_SHARED(float, buffer);
  buffer[threadIdx.x] = 1;
  __syncthreads();
  if (threadIdx.x == 0) out[0] = buffer[blockDim.x - 1];
}

// Lanes of warp 0 shuffle while the other lanes wait at __syncthreads.
__global__ void deadlock_kernel(float* out) {
  if (threadIdx.x < 16)
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
  else
    __syncthreads();
}

template <typename T>
T* device_array(const std::vector<T>& host) {
  T* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, host.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice, nullptr), cudaSuccess);
  return p;
}

template <typename T>
std::vector<T> host_array(const T* p, size_t n) {
  std::vector<T> host(n);
  EXPECT_EQ(cudaMemcpyAsync(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost, nullptr), cudaSuccess);
  return host;
}

TEST(CudaEmulation, BarriersAndShufflesAsOnTheGpu) {
  const int blocks = 3, n = 1000;
  std::vector<float> in(size_t(blocks * n));
  for (size_t i = 0; i < in.size(); ++i) in[i] = float(i % 7) - 2.5f;
  float* d_in = device_array(in);
  float* d_out = device_array(std::vector<float>(2 * blocks, -1.f));
  CB_LAUNCH(sum_kernel, blocks, 256, 0, nullptr)(d_in, d_out, n);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<float> out = host_array(d_out, 2 * blocks);
  for (int b = 0; b < blocks; ++b) {
    double want = 0;
    for (int i = 0; i < n; ++i) want += in[size_t(b * n + i)];
    EXPECT_NEAR(out[size_t(b)], want, 1e-3) << "block " << b;
    EXPECT_EQ(out[size_t(blocks + b)], 255.f) << "the write before the barrier is seen after it";
  }
  int* d_lanes = device_array(std::vector<int>(128, -1));
  CB_LAUNCH(shuffle_kernel, 1, 64, 0, nullptr)(d_lanes);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const std::vector<int> lanes = host_array(d_lanes, 128);
  for (int t = 0; t < 64; ++t) {
    EXPECT_EQ(lanes[size_t(t)], (t % 32) ^ 1);
    EXPECT_EQ(lanes[size_t(64 + t)], t % 32 + 3 < 32 ? t % 32 + 3 : t % 32) << "lanes past the warp keep their own";
  }
  cudaFree(d_in);
  cudaFree(d_out);
  cudaFree(d_lanes);
}

// Over 48 KiB of dynamic shared memory needs cudaFuncSetAttribute, as on the GPU.
TEST(CudaEmulation, LargeSharedMemoryNeedsTheOptIn) {
  float* d_out = device_array(std::vector<float>(1, 0.f));
  const size_t bytes = 64 * 1024;
  CB_LAUNCH(shared_kernel, 1, 128, bytes, nullptr)(d_out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorLaunchOutOfResources);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "not a sticky error";
  ASSERT_EQ(cudaFuncSetAttribute(shared_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)), cudaSuccess);
  CB_LAUNCH(shared_kernel, 1, 128, bytes, nullptr)(d_out);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(host_array(d_out, 1)[0], 1.f);
  CB_LAUNCH(shared_kernel, 1, 2048, 0, nullptr)(d_out);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration) << "over 1024 threads";
  cudaFree(d_out);
}

// Copies whose sides do not match their kind are refused.
TEST(CudaEmulation, CopiesCheckWhichSideIsTheDevice) {
  std::vector<float> host(4, 1.f), other(4);
  float* dev = device_array(host);
  EXPECT_EQ(cudaMemcpyAsync(other.data(), host.data(), 16, cudaMemcpyHostToDevice, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpyAsync(other.data(), dev, 16, cudaMemcpyDeviceToHost, nullptr), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(other.data(), dev, 32, cudaMemcpyDeviceToHost, nullptr), cudaErrorInvalidValue)
      << "past the allocation";
  cudaGetLastError();
  cudaFree(dev);
}

// A kernel fault is sticky, as on the GPU: these run in a child process.
TEST(CudaEmulation, FaultsAreStickyErrors) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        std::vector<float> host(4);
        CB_LAUNCH(shared_kernel, 1, 4, 16, nullptr)(host.data());
        const bool illegal = cudaGetLastError() == cudaErrorIllegalAddress;
        float* later = nullptr;
        std::exit(illegal && cudaMalloc(&later, 4) == cudaErrorIllegalAddress ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "")
      << "a host pointer as a kernel argument";
  EXPECT_EXIT(
      {
        float* d_out = nullptr;
        cudaMalloc(&d_out, 32 * sizeof(float));
        CB_LAUNCH(deadlock_kernel, 1, 32, 0, nullptr)(d_out);
        const cudaError_t e = cudaGetLastError();
        std::fprintf(stderr, "%s\n", cudaGetErrorString(e));
        std::exit(e == cudaErrorLaunchFailure ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "deadlock")
      << "lanes of a warp at different barriers";
}

}  // namespace
