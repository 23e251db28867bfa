// Builder: the one way code writes IR nodes by hand (model builders, gradient
// rules, lowerings, the training step), in the spirit of MLIR's OpBuilder.
// It owns node creation, naming, the insertion point and constants:
//
//   - insertion point: the end of the graph (default), or just before / just
//     after an anchor node (a lowering places its replacement before the node
//     it replaces, so the order stays topological);
//   - names: nodes are "<scope>/<Op>_<n>" ("<Op>_<n>" without a scope), n
//     counting this builder's nodes across scopes; outputs are named after
//     their node (BuilderNaming says how); named_op and the `name` arguments
//     give explicit names "<scope>/<name>" instead. Value names are made
//     unique by the graph (a "_<k>" suffix);
//   - types: left to infer_types/canonicalize, or inferred node by node as it
//     is created (BuilderOptions::infer_types) when the caller looks at the
//     shapes of what it built (gradient rules).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

// How outputs and unnamed constants are named (the node is "<scope>/<Op>_<n>").
struct BuilderNaming {
  // Output i of a node with several outputs: "<node><output_suffix><i>".
  std::string output_suffix = "_";
  // Whether a node's only output carries the suffix too ("<node>_out0")
  // instead of the node's name.
  bool suffix_single_output = false;
  // Unnamed constants: "<scope>/const" (false), or numbered with the nodes,
  // "<scope>/const_<n>" (true).
  bool numbered_constants = false;
};

struct BuilderOptions {
  BuilderNaming naming;
  // Infer each new node's output types right away (infer_node_types).
  bool infer_types = false;
  // Accept null inputs (omitted optional inputs); otherwise a null input is
  // a caller's bug and an error naming the op and scope.
  bool allow_omitted_inputs = false;
};

class Builder {
 public:
  using Attrs = std::map<std::string, AttrValue>;

  explicit Builder(Graph& g, BuilderOptions opts = {}) : g_(g), opts_(std::move(opts)) {}
  Graph& graph() { return g_; }

  // Insertion point. After an anchor, each new node follows the previous one.
  void set_insertion_point_to_end() { mode_ = Insert::end, anchor_ = nullptr; }
  void set_insertion_point_before(Node* anchor) { mode_ = Insert::before, anchor_ = anchor; }
  void set_insertion_point_after(Node* anchor) { mode_ = Insert::after, anchor_ = anchor; }

  // Name scope: "" or a prefix such as "transformer.h.0.attn" or "grad/<node>".
  void set_scope(const std::string& name) { scope_ = name; }
  const std::string& scope_name() const { return scope_; }
  // "<scope>/<name>", or name without a scope.
  std::string scoped(const std::string& name) const { return scope_.empty() ? name : scope_ + "/" + name; }
  // Sets the scope until the returned guard is destroyed.
  class Scope {
   public:
    Scope(Builder& b, const std::string& name) : b_(b), saved_(b.scope_) { b.scope_ = name; }
    ~Scope() { b_.scope_ = saved_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Builder& b_;
    std::string saved_;
  };
  Scope scope(const std::string& name) { return Scope(*this, name); }

  // Node creation; every other helper ends here.
  // A node with the given output values; an empty name numbers it.
  Node* create(const std::string& type, std::vector<Value*> inputs, std::vector<Value*> outputs, Attrs attrs = {},
               const std::string& name = "", const std::string& domain = "");
  // A node with `num_outputs` new outputs named after it. used[i] false leaves
  // output i omitted (null; trailing omitted outputs are dropped from the
  // node, as the schemas count outputs); declared_like[i] declares output i
  // with that value's type before inference (for outputs whose shape comes
  // from a run-time Shape value).
  std::vector<Value*> op_n(const std::string& type, std::vector<Value*> inputs, size_t num_outputs, Attrs attrs = {},
                           const std::string& domain = "", const std::vector<bool>& used = {},
                           const std::vector<const Value*>& declared_like = {});
  Value* op(const std::string& type, std::vector<Value*> inputs, Attrs attrs = {}, const std::string& domain = "");
  // One node whose output and itself are named "<scope>/<name>" (made unique).
  Value* named_op(const std::string& type, std::vector<Value*> inputs, const std::string& name, Attrs attrs = {},
                  const std::string& domain = "");
  // The nodes this builder created, in order.
  const std::vector<Node*>& created_nodes() const { return created_; }

  // Constants. An empty name gives the default ("<scope>/const", see
  // BuilderNaming), else "<scope>/<name>"; `parameter` keeps its exact name
  // (weights) and refuses a taken one.
  Value* constant(Tensor t, const std::string& name = "");
  Value* parameter(const std::string& name, Tensor t);
  Value* f32(float v, const std::string& name = "");                         // f32 scalar
  Value* i64(int64_t v, const std::string& name = "");                       // i64 scalar
  Value* i64s(const std::vector<int64_t>& v, const std::string& name = "");  // i64 [n]
  Value* filled(DType dtype, const std::vector<int64_t>& dims, double v);    // every element v
  Value* scalar(DType dtype, double v) { return filled(dtype, {}, v); }

  // Elementwise and tensor ops (ONNX semantics, numpy broadcasting). A
  // non-empty name names the node and output as named_op does.
  Value* add(Value* a, Value* b, const std::string& name = "") { return binary("Add", a, b, name); }
  Value* sub(Value* a, Value* b, const std::string& name = "") { return binary("Sub", a, b, name); }
  Value* mul(Value* a, Value* b, const std::string& name = "") { return binary("Mul", a, b, name); }
  Value* div(Value* a, Value* b, const std::string& name = "") { return binary("Div", a, b, name); }
  Value* neg(Value* a) { return op("Neg", {a}); }
  Value* matmul(Value* a, Value* b) { return op("MatMul", {a, b}); }
  Value* where(Value* cond, Value* a, Value* b) { return op("Where", {cond, a, b}); }
  Value* cast(Value* x, DType to);
  Value* gather(Value* data, Value* indices, int64_t axis = 0);
  Value* reshape(Value* x, const std::vector<int64_t>& shape);  // 0 copies the input dim
  Value* reshape(Value* x, Value* shape) { return op("Reshape", {x, shape}); }
  Value* transpose(Value* x, const std::vector<int64_t>& perm);
  Value* unsqueeze(Value* x, const std::vector<int64_t>& axes);
  // x[starts:ends] along `axes` (static bounds; INT64_MAX for "to the end").
  Value* slice(Value* x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
               const std::vector<int64_t>& axes);
  std::vector<Value*> split(Value* x, int64_t axis, const std::vector<int64_t>& sizes);
  Value* concat(std::vector<Value*> xs, int64_t axis);
  Value* softmax(Value* x, int64_t axis = -1);
  Value* shape_of(Value* x) { return op("Shape", {x}); }

  // Layers.
  // x @ w (+ bias): w is [in, out] (MatMul layout); bias may be null.
  Value* linear(Value* x, Value* w, Value* bias);
  Value* layer_norm(Value* x, Value* weight, Value* bias, float epsilon);
  // 0.5 x (1 + erf(x / sqrt 2)): exact GELU.
  Value* gelu_erf(Value* x);
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): the tanh approximation.
  Value* gelu_tanh(Value* x);
  Value* relu(Value* x) { return op("Relu", {x}); }
  Value* silu(Value* x) { return mul(x, op("Sigmoid", {x})); }

 private:
  enum class Insert { end, before, after };
  void check_inputs(const std::string& type, const std::vector<Value*>& inputs) const;
  std::string next_name(const std::string& what) { return scoped(what + "_" + std::to_string(++counter_)); }
  Value* binary(const char* type, Value* a, Value* b, const std::string& name) {
    return name.empty() ? op(type, {a, b}) : named_op(type, {a, b}, name);
  }

  Graph& g_;
  BuilderOptions opts_;
  Insert mode_ = Insert::end;
  Node* anchor_ = nullptr;  // before: the fixed anchor; after: the last node placed
  std::string scope_;
  int64_t counter_ = 0;
  std::vector<Node*> created_;
};

}  // namespace cb
