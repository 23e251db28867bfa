// What the CUDA kernel files share (internal to backends/cuda/): the launch
// context, launch checks, grid sizes, numpy broadcast indexing, block
// reductions and the per-file factories that cuda_kernels.cu dispatches to.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "support/error.h"

// A kernel launch and a kernel's dynamic shared memory, written so that the
// same source also compiles against the CPU emulation of the CUDA runtime
// (backends/cuda/emulation/, where the tests run every kernel without a GPU):
//   CB_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...);
//   CB_DYNAMIC_SHARED(float, name);  // extern __shared__ float name[];
#ifdef CB_CUDA_EMULATION
#define CB_LAUNCH(kernel, grid, block, shared, stream) \
  ::cb::cuda_emulation::Launcher(kernel, grid, block, shared, stream)
#define CB_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::cb::cuda_emulation::dynamic_shared_memory())
#else
#define CB_LAUNCH(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#define CB_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace cb::cuda {

// What a kernel queues its work on: the backend's stream and cuBLAS handle.
struct Launch {
  cudaStream_t stream;
  cublasHandle_t cublas;
};

constexpr int kMaxRank = 8;
constexpr int kThreads = 256;

inline void check_launch(const Node& n) {
  cudaError_t e = cudaGetLastError();
  CB_CHECK(e == cudaSuccess, n.describe() << ": CUDA kernel launch failed: " << cudaGetErrorString(e));
}

inline void check_cuda(const Node& n, cudaError_t e, const char* what) {
  CB_CHECK(e == cudaSuccess, n.describe() << ": " << what << " failed: " << cudaGetErrorString(e));
}

// Blocks for a grid-stride loop over n elements.
inline unsigned grid_for(long long n) { return unsigned(std::min<long long>((n + kThreads - 1) / kThreads, 65535)); }

// IR-side checks for supports().
inline bool is_dtype(const Value* v, DType t) { return v && v->type.dtype == t; }
inline bool is_f32(const Value* v) { return is_dtype(v, DType::f32); }
inline bool rank_at_most(const Value* v, size_t r) {
  return v && v->type.shape.rank_known && v->type.shape.rank() <= r;
}
inline bool rank_is(const Value* v, size_t r) { return v && v->type.shape.rank_known && v->type.shape.rank() == r; }
// Every present input and every present output is f32.
bool all_f32(const Node& n);
// Whether the node's `axis` (default -1) is the last of input `input`'s axes.
bool is_last_axis(const Node& n, size_t input);
// The value of input i when it is a constant, or (once placed) the device
// copy of one, whose host constant the runtime keeps: what a kernel reads
// its index inputs (a Slice's starts, a reduction's axes) from, since it
// cannot read device memory on the host. Null when computed or absent.
const Tensor* constant_input(const Node& n, size_t i);

// An output index space and, per input, its strides there (0 along
// broadcast dims): numpy broadcasting for up to kMaxRank dims and 3 inputs.
struct BroadcastIndex {
  int rank;
  long long dims[kMaxRank];
  long long strides[3][kMaxRank];
};

// The index of `in` read at each output index (right-aligned, 0 where broadcast).
void broadcast_strides(const Tensor& in, const std::vector<int64_t>& out, long long* strides);
// `ins` (up to 3) read at the index space of `out`; throws naming the node above kMaxRank.
BroadcastIndex broadcast_index(const Node& n, const std::vector<const Tensor*>& ins, const Tensor& out);

__device__ inline void broadcast_offsets(const BroadcastIndex& ix, long long i, int inputs, long long* offsets) {
  for (int k = 0; k < inputs; ++k) offsets[k] = 0;
  for (int d = ix.rank - 1; d >= 0; --d) {
    const long long c = i % ix.dims[d];
    i /= ix.dims[d];
    for (int k = 0; k < inputs; ++k) offsets[k] += c * ix.strides[k][d];
  }
}

// Sum / max of v over the block (every thread gets it); `shared` holds 32
// values. block_sum in float or double (the backward kernels' statistics).
template <typename T>
__device__ inline T block_sum(T v, T* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : T(0);
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  v = shared[0];
  __syncthreads();
  return v;
}

__device__ inline float block_max(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? shared[threadIdx.x] : -INFINITY;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  v = shared[0];
  __syncthreads();
  return v;
}

// Lets `kernel` use `bytes` of dynamic shared memory (beside `fixed` bytes
// of its static buffers) when over `limit`, what it may use now, and raises
// `limit`; a cb::Error naming the node when the device has too little.
template <typename Kernel>
inline void allow_shared_memory(const Node& node, Kernel* kernel, size_t bytes, size_t fixed, size_t& limit) {
  if (bytes <= limit) return;
  int device = 0, most = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  const size_t room = size_t(most) - fixed;
  CB_CHECK(bytes <= room, node.describe()
                              << ": needs " << bytes << " bytes of shared memory, over the " << room << " a block has");
  check_cuda(node, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
             "cudaFuncSetAttribute");
  limit = bytes;
}

// A device array a kernel object owns (scratch, statistics, its records),
// grown on demand and freed with it.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    if (data_) cudaFree(data_);
  }
  // At least n elements (their old contents are not kept).
  T* reserve(const Node& node, size_t n) {
    if (n > size_) {
      if (data_) cudaFree(data_);
      data_ = nullptr;
      size_ = 0;
      check_cuda(node, cudaMalloc(&data_, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
      size_ = n;
    }
    return data_;
  }
  T* data() const { return data_; }

 private:
  T* data_ = nullptr;
  size_t size_ = 0;
};

// A device int that kernels raise (atomicExch to 1) on an index out of
// range; the host reads it after the launch (one stream synchronisation) to
// throw a cb::Error naming the node, as the host kernels do.
class DeviceFlag {
 public:
  // Cleared, queued before the launch that may raise it.
  int* reset(const Node& node, cudaStream_t s) {
    int* flag = flag_.reserve(node, 1);
    check_cuda(node, cudaMemsetAsync(flag, 0, sizeof(int), s), "cudaMemsetAsync");
    return flag;
  }
  // After the launch: waits for the stream.
  bool raised(const Node& node, cudaStream_t s) {
    int v = 0;
    check_cuda(node, cudaMemcpyAsync(&v, flag_.data(), sizeof(int), cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync");
    check_cuda(node, cudaStreamSynchronize(s), "cudaStreamSynchronize");
    return v != 0;
  }

 private:
  DeviceArray<int> flag_;
};

// The node's `axis` attribute (default dflt) counted from the end when
// negative; a cb::Error naming the node outside [0, rank).
inline int64_t axis_attribute(const Node& n, size_t rank, int64_t dflt = 0) {
  int64_t a = n.attr_int("axis", dflt);
  if (a < 0) a += int64_t(rank);
  CB_CHECK(a >= 0 && a < int64_t(rank), n.describe() << ": axis out of range for rank " << rank);
  return a;
}

// GELU as the reference computes it (ONNX's formulas, ir/fused_matmul.h).
__device__ inline float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
__device__ inline float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }

// The per-file kernels: supports() from the node's IR, and the factory
// (called only when supports() said yes).
using SupportsFn = bool (*)(const Node&);
using MakeFn = std::unique_ptr<Kernel> (*)(const Node&, const Launch&);

// cuda_elementwise.cu
bool binary_supports(const Node& n);
std::unique_ptr<Kernel> make_binary(const Node& n, const Launch& l);
bool unary_supports(const Node& n);
std::unique_ptr<Kernel> make_unary(const Node& n, const Launch& l);
bool where_supports(const Node& n);
std::unique_ptr<Kernel> make_where(const Node& n, const Launch& l);
// cuda_matmul.cu
bool matmul_supports(const Node& n);
std::unique_ptr<Kernel> make_matmul(const Node& n, const Launch& l);
bool gemm_supports(const Node& n);
std::unique_ptr<Kernel> make_gemm(const Node& n, const Launch& l);
bool fused_matmul_supports(const Node& n);
std::unique_ptr<Kernel> make_fused_matmul(const Node& n, const Launch& l);
// cuda_attention.cu
bool attention_supports(const Node& n);
std::unique_ptr<Kernel> make_attention(const Node& n, const Launch& l);
bool attention_grad_supports(const Node& n);
std::unique_ptr<Kernel> make_attention_grad(const Node& n, const Launch& l);
// cuda_layout.cu
bool transpose_supports(const Node& n);
std::unique_ptr<Kernel> make_transpose(const Node& n, const Launch& l);
bool concat_supports(const Node& n);
std::unique_ptr<Kernel> make_concat(const Node& n, const Launch& l);
bool split_supports(const Node& n);
std::unique_ptr<Kernel> make_split(const Node& n, const Launch& l);
bool view_supports(const Node& n);  // Reshape, Unsqueeze, Squeeze, Flatten, Identity
std::unique_ptr<Kernel> make_view(const Node& n, const Launch& l);
bool expand_supports(const Node& n);
std::unique_ptr<Kernel> make_expand(const Node& n, const Launch& l);
bool constant_of_shape_supports(const Node& n);
std::unique_ptr<Kernel> make_constant_of_shape(const Node& n, const Launch& l);
bool gather_supports(const Node& n);
std::unique_ptr<Kernel> make_gather(const Node& n, const Launch& l);
bool cast_supports(const Node& n);
std::unique_ptr<Kernel> make_cast(const Node& n, const Launch& l);
// cuda_index.cu
bool elements_supports(const Node& n);  // GatherElements, ScatterElements
std::unique_ptr<Kernel> make_elements(const Node& n, const Launch& l);
bool gather_grad_supports(const Node& n);
std::unique_ptr<Kernel> make_gather_grad(const Node& n, const Launch& l);
bool arg_max_supports(const Node& n);
std::unique_ptr<Kernel> make_arg_max(const Node& n, const Launch& l);
// cuda_slice.cu
bool slice_supports(const Node& n);
std::unique_ptr<Kernel> make_slice(const Node& n, const Launch& l);
bool slice_grad_supports(const Node& n);
std::unique_ptr<Kernel> make_slice_grad(const Node& n, const Launch& l);
// cuda_reduce.cu
bool reduce_supports(const Node& n);  // ReduceSum, ReduceSumSquare, ReduceMean
std::unique_ptr<Kernel> make_reduce(const Node& n, const Launch& l);
bool sum_supports(const Node& n);
std::unique_ptr<Kernel> make_sum(const Node& n, const Launch& l);
// cuda_grad.cu
bool gelu_grad_supports(const Node& n);
std::unique_ptr<Kernel> make_gelu_grad(const Node& n, const Launch& l);
bool softmax_grad_supports(const Node& n);
std::unique_ptr<Kernel> make_softmax_grad(const Node& n, const Launch& l);
bool layer_norm_grad_supports(const Node& n);
std::unique_ptr<Kernel> make_layer_norm_grad(const Node& n, const Launch& l);
// cuda_optim.cu
bool adamw_supports(const Node& n);
std::unique_ptr<Kernel> make_adamw(const Node& n, const Launch& l);
// cuda_codebook_grad.cu
bool codebook_grad_supports(const Node& n);
std::unique_ptr<Kernel> make_codebook_grad(const Node& n, const Launch& l);
// cuda_codebook.cu
bool codebook_supports(const Node& n);
std::unique_ptr<Kernel> make_codebook(const Node& n, const Launch& l);
// cuda_kernels.cu: rows of the last axis
bool softmax_supports(const Node& n);
std::unique_ptr<Kernel> make_softmax(const Node& n, const Launch& l);
bool layer_norm_supports(const Node& n);
std::unique_ptr<Kernel> make_layer_norm(const Node& n, const Launch& l);

}  // namespace cb::cuda
