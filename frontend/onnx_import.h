// ONNX import: a ModelProto (ai.onnx opsets 1..28, kMaxOnnxOpset) becomes one cb::Graph.
// Older-opset forms are upgraded to the latest semantics (attributes that
// became inputs, legacy Softmax), model-local functions are inlined,
// initializers become constant values (external data is memory-mapped, not
// copied), graph inputs keep their symbolic dims (dim_param) and the graph is
// type-checked and canonicalised (constant and shape folding, CSE, DCE).
// Anything unsupported fails here, naming the op, the node and the opset.
#pragma once
#include <memory>
#include <string>

#include "ir/graph.h"

namespace onnx {
class ModelProto;
class TensorProto;
}  // namespace onnx

namespace cb {

struct ImportOptions {
  bool canonicalize = true;  // run the canonicalisation pipeline after import
  // Unknown (unnamed) dims of graph inputs get names "<input>_dim<i>" so that
  // every run binds them; keeps symbolic shape reasoning possible.
  bool name_unknown_input_dims = true;
};

std::shared_ptr<Graph> import_onnx(const std::string& path, const ImportOptions& opts = {});
// `base_dir` resolves external-data locations; `what` names the source in errors.
std::shared_ptr<Graph> import_onnx_bytes(const std::string& bytes, const std::string& base_dir, const std::string& what,
                                         const ImportOptions& opts = {});
// Imports an already parsed model. Initializer bytes are moved out of `model`
// (it is left without them).
std::shared_ptr<Graph> import_onnx_model(onnx::ModelProto& model, const std::string& base_dir, const std::string& what,
                                         const ImportOptions& opts = {});

// One TensorProto as a Tensor: raw_data is taken over (no copy; `tp` loses it),
// external data is memory-mapped from `base_dir`. Unsupported element types
// (float8, int4, string, complex, ...) throw cb::Error naming `what` and the type.
Tensor tensor_from_onnx(onnx::TensorProto& tp, const std::string& base_dir, const std::string& what);

}  // namespace cb
