// `--device cpu|cuda` (docs/cuda.md): the device backend to place graphs on
// (passes/inference_pipeline.h places an inference graph).
#pragma once
#include <memory>
#include <string>

#include "backends/backend.h"

namespace cb::tools {

// Null for "cpu"; the CUDA backend for "cuda". Throws cb::Error naming the
// option when the build has no CUDA or the machine no GPU.
std::unique_ptr<Backend> make_device_backend(const std::string& device);

}  // namespace cb::tools
