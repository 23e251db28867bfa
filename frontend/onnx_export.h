// cb::Graph -> ONNX ModelProto. Writes the IR back out as a standard ONNX
// model (latest-opset semantics, so the ai.onnx opset is at least 18),
// with constants as initializers in raw_data form, symbolic dims as
// dim_param, and large tensors optionally in an external data file.
#pragma once
#include <cstdint>
#include <string>

#include "ir/graph.h"

namespace onnx {
class TensorProto;
}  // namespace onnx

namespace cb {

// The lowest ai.onnx opset whose op forms match the IR (Reduce* axes and Pad
// axes as inputs, Split num_outputs).
constexpr int64_t kMinExportOpset = 18;

struct ExportOptions {
  // Initializers larger than this many bytes are written to "<model file>.data"
  // next to the model (64-byte aligned, with offset/length). Negative: keep
  // everything in the model file.
  int64_t external_data_threshold = -1;
};

// Writes atomically (temporary file + rename): an existing model is never
// left truncated. Throws cb::Error naming the path.
void export_onnx(const Graph& g, const std::string& path, const ExportOptions& opts = {});
// The serialized ModelProto, every tensor inline.
std::string export_onnx_bytes(const Graph& g);

// One tensor as a TensorProto (raw_data).
void tensor_to_onnx(const Tensor& t, const std::string& name, onnx::TensorProto* tp);

}  // namespace cb
