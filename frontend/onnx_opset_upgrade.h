// Normalising older-opset ONNX node forms into the latest ones, which are the
// IR's semantics: attributes that later became inputs (axes, split, pads,
// min/max, starts/ends, ratio, k, shape) become constant inputs, legacy
// coerce-to-2D Softmax/LogSoftmax/Hardmax is rewritten, renamed ops get their
// new names. Kept free of protobuf: it works on NodeDrafts that the importer
// then adds to the graph, so it can be tested and reused on its own.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

// The highest ai.onnx opset whose op definitions this importer knows.
constexpr int64_t kMaxOnnxOpset = 28;

// A node before it is added to a graph.
struct NodeDraft {
  std::string op_type;
  std::string domain;
  std::string name;
  std::vector<Value*> inputs;   // nullptr = omitted
  std::vector<Value*> outputs;  // nullptr = omitted
  std::map<std::string, AttrValue> attrs;

  Value* input(size_t i) const { return i < inputs.size() ? inputs[i] : nullptr; }
};

// What the upgrader needs from the graph under construction: fresh constant and
// intermediate values whose names do not clash with any of the model's names.
class UpgradeSink {
 public:
  virtual ~UpgradeSink() = default;
  virtual Value* constant(const std::string& base_name, Tensor t) = 0;
  virtual Value* intermediate(const std::string& base_name) = 0;
};

// The version (since_version) of the ai.onnx definition of `op_type` in effect
// at `opset`: 0 when the op is not defined yet at that opset, -1 when this
// table does not know the op at all.
int onnx_op_version(const std::string& op_type, int64_t opset);

// The opset from which an op is deprecated (removed), or 0 if it never was.
int onnx_op_removed_in(const std::string& op_type);

// Rewrites `node`, an ai.onnx node of a model at `opset`, into its latest-opset
// form. Returns the nodes to add, in order (helper nodes may precede or follow
// the node). Input types (dtype, rank) are read from node.inputs where an
// upgrade depends on them. Throws cb::Error naming the op, the node and the
// opset for ops that are not defined, or were removed, at that opset.
std::vector<NodeDraft> upgrade_onnx_node(NodeDraft node, int64_t opset, UpgradeSink& sink);

}  // namespace cb
