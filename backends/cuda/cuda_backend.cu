// The CUDA backend. For now it owns device discovery and a cuBLAS handle; ops
// land here as the CUDA issue progresses. Without a GPU, creating it fails with
// a clear message (tests that need a GPU skip).
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "backends/cuda/cuda_backend.h"
#include "support/error.h"

namespace cb {

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

namespace {
class CudaBackend : public Backend {
 public:
  CudaBackend() {
    CB_CHECK(cuda_device_count() > 0, "the cuda backend needs an NVIDIA GPU, and none was found");
    CB_CHECK(cublasCreate(&handle_) == CUBLAS_STATUS_SUCCESS, "cuBLAS initialisation failed");
  }
  ~CudaBackend() override { cublasDestroy(handle_); }
  std::string name() const override { return "cuda"; }
  std::unique_ptr<Kernel> create_kernel(const Node&) const override { return nullptr; }

 private:
  cublasHandle_t handle_ = nullptr;
};
}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace cb
