// The CUDA backend (compiled when nvcc is found). Creating it without a GPU
// throws cb::Error; cuda_device_count() lets tests skip instead.
#pragma once
#include <memory>

#include "backends/backend.h"

namespace cb {

int cuda_device_count();
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace cb
