// The CUDA runtime as the kernels of backends/cuda/ use it, emulated on the
// CPU, so that the tests run every kernel without a GPU (docs/cuda.md#the-
// emulator). It stands in for the toolkit's <cuda_runtime.h> only in the
// emulated build of those sources (CMake target cb_cuda_emulated), which the
// host compiler compiles as C++ with this directory first on the include path.
//
// What it emulates: a block's threads are fibers on one OS thread, run in turn
// until each reaches __syncthreads (or a warp shuffle, or its end), so
// barriers, shared memory and shuffles behave as on the GPU, and a kernel that
// reads past a buffer meets the sanitizers. Device memory is host memory that
// the emulator keeps a registry of: a copy or a kernel argument that mixes up
// host and device pointers is an error, as is a launch the GPU would refuse
// (too many threads, too much shared memory without cudaFuncSetAttribute).
// Launches run at once, in order; a stream is only a name.
#pragma once
#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

#ifndef CB_CUDA_EMULATION
#define CB_CUDA_EMULATION 1
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// One OS thread runs a block's fibers, and blocks run one after another, so a
// function-local static is exactly one block's shared array.
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
using cudaStream_t = struct CUstream_st*;
constexpr unsigned cudaStreamNonBlocking = 0x01;

cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t stream);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t stream);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorString(cudaError_t error);

template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
template <typename T>
cudaError_t cudaMallocAsync(T** ptr, size_t bytes, cudaStream_t stream) {
  return cudaMallocAsync(reinterpret_cast<void**>(ptr), bytes, stream);
}

namespace cb::cuda_emulation {

// The running fiber's coordinates and its block's shared memory.
const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void* dynamic_shared_memory();
// Barriers: every live thread of the block / of the calling thread's warp.
void sync_threads();
void sync_warp();
// The calling thread's slot of its warp's exchange, and slot `lane`'s value
// (a lane the block does not have is an error). Used by the shuffles below.
uint64_t& warp_slot();
uint64_t warp_slot_of(int lane);
int lane_id();
// Ends the kernel with an error that the next cudaGetLastError reports.
void fail(const char* what);

// Whether [p, p + bytes) lies in memory from cudaMalloc(Async).
bool is_device_memory(const void* p, size_t bytes = 1);
cudaError_t set_max_dynamic_shared(const void* kernel, int bytes);
// Runs `body` as every thread of every block of the grid.
void launch(const void* kernel, dim3 grid, dim3 block, size_t shared, const std::function<void()>& body,
            const char* bad_argument);

// CB_LAUNCH(kernel, grid, block, shared, stream)(args...): the arguments are
// copied, as at a launch; a pointer argument must point to device memory.
template <typename... P>
struct Launcher {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t shared;
  Launcher(void (*k)(P...), dim3 g, dim3 b, size_t s, cudaStream_t) : kernel(k), grid(g), block(b), shared(s) {}
  template <typename... A>
  void operator()(A&&... args) const {
    call(std::decay_t<P>(std::forward<A>(args))...);
  }

 private:
  void call(std::decay_t<P>... args) const {
    const char* bad = nullptr;
    auto check = [&](const auto& a) {
      if constexpr (std::is_pointer_v<std::decay_t<decltype(a)>>)
        if (!bad && a && !is_device_memory(a)) bad = "a pointer argument points to host memory";
    };
    (check(args), ...);
    launch(
        reinterpret_cast<const void*>(kernel), grid, block, shared, [&] { kernel(args...); }, bad);
  }
};

}  // namespace cb::cuda_emulation

#define threadIdx (::cb::cuda_emulation::thread_idx())
#define blockIdx (::cb::cuda_emulation::block_idx())
#define blockDim (::cb::cuda_emulation::block_dim())
#define gridDim (::cb::cuda_emulation::grid_dim())

template <typename F>
cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return cudaErrorInvalidValue;
  return ::cb::cuda_emulation::set_max_dynamic_shared(reinterpret_cast<const void*>(kernel), value);
}

inline void __syncthreads() { ::cb::cuda_emulation::sync_threads(); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::cb::cuda_emulation::sync_warp(); }
inline void __trap() { ::cb::cuda_emulation::fail("__trap()"); }

namespace cb::cuda_emulation {
// Every lane publishes v, then reads lane `src`'s (its own where src < 0).
template <typename T>
T shuffle(T v, int src) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable_v<T>, "shuffle of a large type");
  std::memcpy(&warp_slot(), &v, sizeof(T));
  sync_warp();
  T r = v;
  if (src >= 0) {
    const uint64_t bits = warp_slot_of(src);
    std::memcpy(&r, &bits, sizeof(T));
  }
  sync_warp();  // nobody overwrites a slot before every lane has read it
  return r;
}
}  // namespace cb::cuda_emulation

template <typename T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  const int lane = ::cb::cuda_emulation::lane_id(), src = lane ^ lane_mask;
  return ::cb::cuda_emulation::shuffle(v, src / width == lane / width ? src : -1);
}
template <typename T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = ::cb::cuda_emulation::lane_id();
  return ::cb::cuda_emulation::shuffle(v, lane % width + int(delta) < width ? lane + int(delta) : -1);
}
template <typename T>
T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  const int lane = ::cb::cuda_emulation::lane_id();
  return ::cb::cuda_emulation::shuffle(v, lane % width >= int(delta) ? lane - int(delta) : -1);
}
template <typename T>
T __shfl_sync(unsigned, T v, int src_lane, int width = 32) {
  const int lane = ::cb::cuda_emulation::lane_id();
  return ::cb::cuda_emulation::shuffle(v, lane / width * width + src_lane % width);
}

// Atomics: a block's fibers take turns on one OS thread, so plain updates are atomic.
namespace cb::cuda_emulation {
template <typename T, typename F>
T atomic_update(T* p, F next) {
  const T old = *p;
  *p = next(old);
  return old;
}
}  // namespace cb::cuda_emulation
template <typename T>
T atomicAdd(T* p, T v) {
  return ::cb::cuda_emulation::atomic_update(p, [&](T old) { return T(old + v); });
}
template <typename T>
T atomicExch(T* p, T v) {
  return ::cb::cuda_emulation::atomic_update(p, [&](T) { return v; });
}
template <typename T>
T atomicMax(T* p, T v) {
  return ::cb::cuda_emulation::atomic_update(p, [&](T old) { return old < v ? v : old; });
}
template <typename T>
T atomicMin(T* p, T v) {
  return ::cb::cuda_emulation::atomic_update(p, [&](T old) { return v < old ? v : old; });
}
template <typename T>
T atomicOr(T* p, T v) {
  return ::cb::cuda_emulation::atomic_update(p, [&](T old) { return T(old | v); });
}
template <typename T>
T atomicCAS(T* p, T compare, T v) {
  return ::cb::cuda_emulation::atomic_update(p, [&](T old) { return old == compare ? v : old; });
}

// Device math the host's <math.h> lacks, and CUDA's min / max overloads.
template <typename T>
T min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
T max(T a, T b) {
  return a < b ? b : a;
}
inline float rsqrtf(float x) { return 1.f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
template <typename T>
T __ldg(const T* p) {
  return *p;
}
