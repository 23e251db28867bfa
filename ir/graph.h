// The IR: a Graph owns Values (typed edges, possibly constant) and Nodes
// (operations). Nodes are kept in a topological order; passes mutate the graph
// through the small API below. Node inputs may be nullptr for an omitted
// optional input. Op semantics are those of ONNX at the opset the importer
// normalises to (see frontend/onnx_import.cpp); custom ops live in other domains.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ir/dtype.h"
#include "ir/shape.h"
#include "ir/tensor.h"

namespace cb {

class Graph;
struct Node;

struct TensorType {
  DType dtype = DType::undefined;
  Shape shape = Shape::unknown_rank();
  std::string str() const { return std::string(dtype_name(dtype)) + shape.str(); }
  bool operator==(const TensorType& o) const { return dtype == o.dtype && shape == o.shape; }
};

struct Value {
  std::string name;
  TensorType type;
  Node* producer = nullptr;  // null for graph inputs and constants
  int producer_output = -1;
  std::optional<Tensor> constant;  // set for weights and folded constants

  bool is_constant() const { return constant.has_value(); }
};

using AttrValue = std::variant<int64_t, float, std::string, Tensor, std::shared_ptr<Graph>, std::vector<int64_t>,
                               std::vector<float>, std::vector<std::string>>;

struct Node {
  std::string op_type;
  std::string domain;  // "" = ONNX default domain
  std::string name;
  std::vector<Value*> inputs;   // nullptr = omitted optional input
  std::vector<Value*> outputs;  // nullptr = omitted optional output
  std::map<std::string, AttrValue> attrs;

  Value* input(size_t i) const { return i < inputs.size() ? inputs[i] : nullptr; }
  bool has_attr(const std::string& k) const { return attrs.count(k) != 0; }
  int64_t attr_int(const std::string& k, int64_t dflt) const;
  float attr_float(const std::string& k, float dflt) const;
  std::string attr_string(const std::string& k, const std::string& dflt) const;
  std::vector<int64_t> attr_ints(const std::string& k, const std::vector<int64_t>& dflt = {}) const;
  std::vector<float> attr_floats(const std::string& k, const std::vector<float>& dflt = {}) const;
  const Tensor* attr_tensor(const std::string& k) const;
  std::shared_ptr<Graph> attr_graph(const std::string& k) const;
  // "MatMul 'name'" for error messages.
  std::string describe() const;
};

class Graph {
 public:
  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  std::string name = "main";
  std::vector<Value*> inputs;
  std::vector<Value*> outputs;
  std::map<std::string, int64_t> opsets;        // domain -> version ("" = ai.onnx)
  std::map<std::string, std::string> metadata;  // model metadata_props
  int64_t ir_version = 8;
  std::string producer;

  // Values. Names are made unique by appending a suffix if needed.
  Value* add_value(const std::string& name, TensorType type = {});
  Value* add_input(const std::string& name, TensorType type);
  Value* add_constant(const std::string& name, Tensor t);
  Value* find_value(const std::string& name) const;
  std::string unique_name(const std::string& base);

  // Nodes. add_node appends; insert_node_before places it before `pos` in the order.
  Node* add_node(const std::string& op_type, std::vector<Value*> inputs, std::vector<Value*> outputs,
                 std::map<std::string, AttrValue> attrs = {}, const std::string& name = "",
                 const std::string& domain = "");
  Node* insert_node_before(Node* pos, std::unique_ptr<Node> n);
  const std::vector<std::unique_ptr<Node>>& nodes() const { return nodes_; }
  size_t num_nodes() const { return nodes_.size(); }
  const std::vector<std::unique_ptr<Value>>& values() const { return values_; }

  // Rewires every use of `from` (node inputs, graph outputs) to `to`.
  void replace_all_uses(Value* from, Value* to);
  // Removes nodes for which pred is true; their output values stay (unproduced).
  void remove_nodes_if(const std::function<bool(const Node&)>& pred);
  // Drops values that are neither produced, used, nor graph inputs/outputs.
  void remove_unused_values();
  // Sorts nodes topologically (stable). Throws cb::Error on a cycle.
  void toposort();
  // Map from value to the nodes that read it (computed on demand).
  std::map<const Value*, std::vector<Node*>> users() const;

  // Total number of elements in constant values (the model's parameters).
  int64_t num_constant_elements() const;

 private:
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Value>> values_;
  std::map<std::string, Value*> by_name_;
  int64_t name_counter_ = 0;
};

// Values a (sub)graph reads from enclosing scopes: used by its nodes (or by
// nested subgraphs) but neither its inputs, produced inside it, nor constants.
std::vector<Value*> graph_captures(const Graph& g);

}  // namespace cb
