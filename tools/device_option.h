// `--device cpu|cuda` of run and bench (docs/cuda.md): the device backend
// to place the graph on, and the placed graph to compile.
#pragma once
#include <memory>
#include <string>

#include "backends/backend.h"
#include "ir/precision.h"
#include "runtime/executable.h"

namespace cb::tools {

// Null for "cpu"; the CUDA backend for "cuda". Throws cb::Error naming the
// option when the build has no CUDA or the machine no GPU.
std::unique_ptr<Backend> make_device_backend(const std::string& device);

// The inference graph of `g` in `precision` placed on `device_backend` (the
// graph itself when that is null), with opts.device_backend set to compile
// it. A graph with subgraphs (If/Loop) runs on the host.
std::shared_ptr<Graph> placed_inference_graph(const std::shared_ptr<Graph>& g, const Backend* device_backend,
                                              CompileOptions& opts, Precision precision = Precision::f32);

}  // namespace cb::tools
