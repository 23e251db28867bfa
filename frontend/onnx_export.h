// cb::Graph -> ONNX ModelProto. Writes the IR back out as a standard ONNX
// model (latest-opset semantics, so the ai.onnx opset is at least 18),
// with constants as initializers in raw_data form, symbolic dims as
// dim_param, and large tensors optionally in an external data file.
#pragma once
#include <cstdint>
#include <optional>
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
  // Initializers larger than this many bytes are written to
  // "<model file>.<hash>.data" next to the model (64-byte aligned, with
  // offset/length), <hash> the 16-hex-digit content_hash64 of the file (see
  // external_data_hash). Negative: keep everything in the model file.
  int64_t external_data_threshold = -1;
};

// Writes atomically (temporary file + rename): an existing model is never
// left truncated, and a model is never paired with another export's data file
// (the data file is named by its hash and written first, the model last; the
// data files of earlier exports of `path` are removed afterwards). Throws
// cb::Error naming the path.
void export_onnx(const Graph& g, const std::string& path, const ExportOptions& opts = {});

// The <hash> of an external data file name "<anything>.<16 hex digits>.data"
// as export_onnx writes them; nullopt for other names. The importer checks
// such a file's content against it.
std::optional<std::string> external_data_hash(const std::string& file_name);
// The serialized ModelProto, every tensor inline.
std::string export_onnx_bytes(const Graph& g);

// One tensor as a TensorProto (raw_data).
void tensor_to_onnx(const Tensor& t, const std::string& name, onnx::TensorProto* tp);

}  // namespace cb
