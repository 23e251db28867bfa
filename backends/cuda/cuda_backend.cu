// The CUDA backend. It owns device discovery, one stream, a cuBLAS handle and
// the device interface of backends/backend.h: memory from cudaMallocAsync on
// its stream (stream-ordered, so a buffer freed and reused by later work on
// the same stream needs no synchronisation), copies with cudaMemcpyAsync on
// the stream. Its compute kernels so far are those of cuda_kernels.h;
// placement keeps every other node on the host (docs/cuda.md). Without a
// GPU, creating it fails with a clear message (tests that need a GPU skip).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/cuda_kernels.h"
#include "ir/placement.h"
#include "support/error.h"

namespace cb {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

namespace {

void check_cuda(cudaError_t e, const char* what) {
  CB_CHECK(e == cudaSuccess, "CUDA: " << what << " failed: " << cudaGetErrorString(e));
}

// Device memory, freed on the stream that allocated it.
class CudaBuffer : public Buffer {
 public:
  CudaBuffer(size_t bytes, int device, cudaStream_t stream) : stream_(stream) {
    size_ = bytes;
    device_ = Device{"cuda", device};
    if (bytes) {
      cudaError_t e = cudaMallocAsync(&data_, bytes, stream);
      CB_CHECK(e == cudaSuccess,
               "out of memory allocating " << bytes << " bytes on " << device_.str() << ": " << cudaGetErrorString(e));
    }
  }
  ~CudaBuffer() override {
    if (data_) cudaFreeAsync(data_, stream_);
  }

 private:
  cudaStream_t stream_;
};

class CudaBackend : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    const int n = cuda_device_count();
    CB_CHECK(n > 0, "the cuda backend needs an NVIDIA GPU, and none was found");
    CB_CHECK(device >= 0 && device < n, "device cuda:" << device << " does not exist (" << n << " GPUs found)");
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    CB_CHECK(cublasCreate(&handle_) == CUBLAS_STATUS_SUCCESS, "cuBLAS initialisation failed");
    cublasSetStream(handle_, stream_);
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cublasDestroy(handle_);
    cudaStreamDestroy(stream_);
  }
  std::string name() const override { return "cuda"; }
  Device device() const override { return {"cuda", device_}; }
  bool supports(const Node& node) const override { return cuda_kernel_supports(node); }
  std::unique_ptr<Kernel> create_kernel(const Node& node) const override {
    if (auto copy = make_device_copy_kernel(*this, node)) return copy;
    return make_cuda_kernel(node, stream_, handle_);
  }
  std::shared_ptr<Buffer> allocate(size_t bytes) const override {
    return std::make_shared<CudaBuffer>(bytes, device_, stream_);
  }
  // From pageable host memory, cudaMemcpyAsync returns once the source is
  // staged, so the host buffer may be reused at once.
  void copy_to_device(const Tensor& host, Tensor& dev) const override {
    check_sizes(host, dev);
    if (host.nbytes())
      check_cuda(cudaMemcpyAsync(dev.raw(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice, stream_),
                 "copy to device");
  }
  void copy_to_host(const Tensor& dev, Tensor& host) const override {
    check_sizes(dev, host);
    if (dev.nbytes())
      check_cuda(cudaMemcpyAsync(host.raw(), dev.raw(), dev.nbytes(), cudaMemcpyDeviceToHost, stream_), "copy to host");
    synchronize();
  }
  void copy_rows(const Tensor& from, Tensor& to, const Rows& r) const override {
    check_rows(from, to, r);
    if (r.rows && r.width)
      check_cuda(cudaMemcpy2DAsync(static_cast<char*>(to.raw()) + r.to_offset, r.to_pitch,
                                   static_cast<const char*>(from.raw()) + r.from_offset, r.from_pitch, r.width, r.rows,
                                   cudaMemcpyDeviceToDevice, stream_),
                 "copy rows on the device");
  }
  void synchronize() const override { check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  static void check_sizes(const Tensor& from, const Tensor& to) {
    CB_CHECK(from.dtype() == to.dtype() && from.dims() == to.dims(),
             "CUDA copy: " << dtype_name(from.dtype()) << dims_str(from.dims()) << " into " << dtype_name(to.dtype())
                           << dims_str(to.dims()));
  }

  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t handle_ = nullptr;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(0); }

}  // namespace cb
