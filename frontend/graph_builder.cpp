// GraphBuilder (frontend/graph_builder.h): appends nodes and constants.
#include "frontend/graph_builder.h"

#include <cmath>

#include "support/error.h"

namespace cb {

std::string GraphBuilder::node_name(const std::string& type) {
  std::string name = type + "_" + std::to_string(++counter_);
  return scope_.empty() ? name : scope_ + "/" + name;
}

std::vector<Value*> GraphBuilder::op_n(const std::string& type, std::vector<Value*> inputs, size_t num_outputs,
                                       std::map<std::string, AttrValue> attrs) {
  for (size_t i = 0; i < inputs.size(); ++i)
    CB_CHECK(inputs[i], "GraphBuilder: input " << i << " of a new " << type << " node in '" << scope_ << "' is null");
  const std::string name = node_name(type);
  std::vector<Value*> outputs;
  for (size_t i = 0; i < num_outputs; ++i)
    outputs.push_back(g_.add_value(num_outputs == 1 ? name : name + "_" + std::to_string(i)));
  g_.add_node(type, std::move(inputs), outputs, std::move(attrs), name);
  return outputs;
}

Value* GraphBuilder::op(const std::string& type, std::vector<Value*> inputs, std::map<std::string, AttrValue> attrs,
                        const std::string& output_name) {
  if (output_name.empty()) return op_n(type, std::move(inputs), 1, std::move(attrs))[0];
  for (size_t i = 0; i < inputs.size(); ++i)
    CB_CHECK(inputs[i], "GraphBuilder: input " << i << " of a new " << type << " node in '" << scope_ << "' is null");
  Value* out = g_.add_value(output_name);
  g_.add_node(type, std::move(inputs), {out}, std::move(attrs), node_name(type));
  return out;
}

Value* GraphBuilder::parameter(const std::string& name, Tensor t) {
  CB_CHECK(!g_.find_value(name), "GraphBuilder: two parameters are named '" << name << "'");
  return g_.add_constant(name, std::move(t));
}

Value* GraphBuilder::constant(Tensor t) {
  return g_.add_constant(scope_.empty() ? "const" : scope_ + "/const", std::move(t));
}
Value* GraphBuilder::f32(float v) { return constant(Tensor::scalar(v)); }
Value* GraphBuilder::i64(int64_t v) { return constant(Tensor::scalar(v)); }
Value* GraphBuilder::i64s(const std::vector<int64_t>& v) {
  return constant(Tensor::from_vector(v, {int64_t(v.size())}));
}

Value* GraphBuilder::cast(Value* x, DType to) { return op("Cast", {x}, {{"to", int64_t(dtype_to_onnx(to))}}); }

Value* GraphBuilder::gather(Value* data, Value* indices, int64_t axis) {
  return op("Gather", {data, indices}, {{"axis", axis}});
}

Value* GraphBuilder::reshape(Value* x, const std::vector<int64_t>& shape) { return reshape(x, i64s(shape)); }

Value* GraphBuilder::transpose(Value* x, const std::vector<int64_t>& perm) {
  return op("Transpose", {x}, {{"perm", perm}});
}

Value* GraphBuilder::unsqueeze(Value* x, const std::vector<int64_t>& axes) {
  return op("Unsqueeze", {x, i64s(axes)});
}

Value* GraphBuilder::slice(Value* x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                           const std::vector<int64_t>& axes) {
  return op("Slice", {x, i64s(starts), i64s(ends), i64s(axes)});
}

std::vector<Value*> GraphBuilder::split(Value* x, int64_t axis, const std::vector<int64_t>& sizes) {
  return op_n("Split", {x, i64s(sizes)}, sizes.size(), {{"axis", axis}});
}

Value* GraphBuilder::concat(std::vector<Value*> xs, int64_t axis) {
  return op("Concat", std::move(xs), {{"axis", axis}});
}

Value* GraphBuilder::softmax(Value* x, int64_t axis) { return op("Softmax", {x}, {{"axis", axis}}); }

Value* GraphBuilder::linear(Value* x, Value* w, Value* bias) {
  Value* y = matmul(x, w);
  return bias ? add(y, bias) : y;
}

Value* GraphBuilder::layer_norm(Value* x, Value* weight, Value* bias, float epsilon) {
  return op("LayerNormalization", {x, weight, bias}, {{"axis", int64_t(-1)}, {"epsilon", epsilon}});
}

Value* GraphBuilder::gelu_erf(Value* x) {
  Value* erf = op("Erf", {div(x, f32(float(std::sqrt(2.0))))});
  return mul(mul(x, add(erf, f32(1.0f))), f32(0.5f));
}

Value* GraphBuilder::gelu_tanh(Value* x) {
  Value* half_x = mul(x, f32(0.5f));
  Value* cubic = mul(op("Pow", {x, f32(3.0f)}), f32(0.044715f));
  Value* inner = mul(add(x, cubic), f32(float(std::sqrt(2.0 / M_PI))));
  return mul(half_x, add(op("Tanh", {inner}), f32(1.0f)));
}

}  // namespace cb
