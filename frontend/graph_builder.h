// A small helper for writing IR graphs by hand (model builders such as
// frontend/hf_import.cpp): each call appends one node, or a few for a named
// layer (linear, layer_norm, the GELUs), to a Graph and returns its output
// value. Node names are "<scope>/<Op>_<n>" under the current scope (e.g.
// "transformer.h.0.attn/Softmax_12"), so a printed graph still reads like the
// model's module tree. Output types are left for infer_types/canonicalize.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

class GraphBuilder {
 public:
  explicit GraphBuilder(Graph& g) : g_(g) {}
  Graph& graph() { return g_; }

  // Names nodes "<name>/..." until the returned guard is destroyed.
  class Scope {
   public:
    Scope(GraphBuilder& b, const std::string& name) : b_(b), saved_(b.scope_) { b.scope_ = name; }
    ~Scope() { b_.scope_ = saved_; }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    GraphBuilder& b_;
    std::string saved_;
  };
  Scope scope(const std::string& name) { return Scope(*this, name); }

  // One node with `num_outputs` outputs / with one output. Outputs are named
  // after the node, or `output_name` (made unique) when given.
  std::vector<Value*> op_n(const std::string& type, std::vector<Value*> inputs, size_t num_outputs,
                           std::map<std::string, AttrValue> attrs = {});
  Value* op(const std::string& type, std::vector<Value*> inputs, std::map<std::string, AttrValue> attrs = {},
            const std::string& output_name = "");

  // Constants. `parameter` keeps its exact name (weights); the others are
  // named after the scope.
  Value* parameter(const std::string& name, Tensor t);
  Value* constant(Tensor t);
  Value* f32(float v);                        // f32 scalar
  Value* i64(int64_t v);                      // i64 scalar
  Value* i64s(const std::vector<int64_t>& v); // i64 [n]

  // Elementwise and tensor ops (ONNX semantics, numpy broadcasting).
  Value* add(Value* a, Value* b) { return op("Add", {a, b}); }
  Value* sub(Value* a, Value* b) { return op("Sub", {a, b}); }
  Value* mul(Value* a, Value* b) { return op("Mul", {a, b}); }
  Value* div(Value* a, Value* b) { return op("Div", {a, b}); }
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
  std::string node_name(const std::string& type);

  Graph& g_;
  std::string scope_;
  int64_t counter_ = 0;
};

}  // namespace cb
