// Builder (ir/builder.h): node creation at the insertion point, naming, constants.
#include "ir/builder.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "ir/verifier.h"
#include "support/error.h"

namespace cb {

void Builder::check_inputs(const std::string& type, const std::vector<Value*>& inputs) const {
  if (opts_.allow_omitted_inputs) return;
  for (size_t i = 0; i < inputs.size(); ++i)
    CB_CHECK(inputs[i], "Builder: input " << i << " of a new " << type << " node in '" << scope_ << "' is null");
}

Node* Builder::create(const std::string& type, std::vector<Value*> inputs, std::vector<Value*> outputs, Attrs attrs,
                      const std::string& name, const std::string& domain) {
  check_inputs(type, inputs);
  const std::string node_name = name.empty() ? next_name(type) : name;
  Node* n = nullptr;
  if (mode_ == Insert::end) {
    n = g_.add_node(type, std::move(inputs), std::move(outputs), std::move(attrs), node_name, domain);
  } else {
    auto node = std::make_unique<Node>();
    node->op_type = type;
    node->domain = domain;
    node->name = node_name;
    node->inputs = std::move(inputs);
    node->outputs = std::move(outputs);
    node->attrs = std::move(attrs);
    Node* before = anchor_;
    if (mode_ == Insert::after) {  // the node following anchor_, or the end
      const auto& nodes = g_.nodes();
      auto it = std::find_if(nodes.begin(), nodes.end(), [&](auto& p) { return p.get() == anchor_; });
      CB_CHECK(it != nodes.end(), "Builder: the insertion anchor is not in the graph");
      before = ++it == nodes.end() ? nullptr : it->get();
    }
    n = g_.insert_node_before(before, std::move(node));  // a null position appends
    if (mode_ == Insert::after) anchor_ = n;
  }
  created_.push_back(n);
  if (opts_.infer_types) infer_node_types(*n);
  return n;
}

std::vector<Value*> Builder::op_n(const std::string& type, std::vector<Value*> inputs, size_t num_outputs, Attrs attrs,
                                  const std::string& domain, const std::vector<bool>& used,
                                  const std::vector<const Value*>& declared_like) {
  check_inputs(type, inputs);  // before any output value is made
  const std::string name = next_name(type);
  const BuilderNaming& naming = opts_.naming;
  std::vector<Value*> outs(num_outputs, nullptr);
  for (size_t i = 0; i < num_outputs; ++i) {
    if (i < used.size() && !used[i]) continue;
    TensorType declared;
    if (i < declared_like.size() && declared_like[i]) declared = declared_like[i]->type;
    const bool suffix = num_outputs > 1 || naming.suffix_single_output;
    outs[i] = g_.add_value(suffix ? name + naming.output_suffix + std::to_string(i) : name, declared);
  }
  std::vector<Value*> node_outputs = outs;
  while (!node_outputs.empty() && !node_outputs.back()) node_outputs.pop_back();
  create(type, std::move(inputs), std::move(node_outputs), std::move(attrs), name, domain);
  return outs;
}

Value* Builder::op(const std::string& type, std::vector<Value*> inputs, Attrs attrs, const std::string& domain) {
  return op_n(type, std::move(inputs), 1, std::move(attrs), domain)[0];
}

Value* Builder::named_op(const std::string& type, std::vector<Value*> inputs, const std::string& name, Attrs attrs,
                         const std::string& domain) {
  Value* out = g_.add_value(scoped(name));
  create(type, std::move(inputs), {out}, std::move(attrs), out->name, domain);
  return out;
}

Value* Builder::constant(Tensor t, const std::string& name) {
  if (!name.empty()) return g_.add_constant(scoped(name), std::move(t));
  return g_.add_constant(opts_.naming.numbered_constants ? next_name("const") : scoped("const"), std::move(t));
}

Value* Builder::parameter(const std::string& name, Tensor t) {
  CB_CHECK(!g_.find_value(name), "Builder: two parameters are named '" << name << "'");
  return g_.add_constant(name, std::move(t));
}

Value* Builder::f32(float v, const std::string& name) { return constant(Tensor::scalar(v), name); }
Value* Builder::i64(int64_t v, const std::string& name) { return constant(Tensor::scalar(v), name); }
Value* Builder::i64s(const std::vector<int64_t>& v, const std::string& name) {
  return constant(Tensor::from_vector(v, {int64_t(v.size())}), name);
}

Value* Builder::filled(DType dtype, const std::vector<int64_t>& dims, double v) {
  Tensor t = Tensor::empty(dtype, dims);
  dtype_dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<T>()[i] = from_double<T>(v);
  });
  return constant(std::move(t));
}

Value* Builder::cast(Value* x, DType to) { return op("Cast", {x}, {{"to", int64_t(dtype_to_onnx(to))}}); }

Value* Builder::gather(Value* data, Value* indices, int64_t axis) {
  return op("Gather", {data, indices}, {{"axis", axis}});
}

Value* Builder::reshape(Value* x, const std::vector<int64_t>& shape) { return reshape(x, i64s(shape)); }

Value* Builder::transpose(Value* x, const std::vector<int64_t>& perm) { return op("Transpose", {x}, {{"perm", perm}}); }

Value* Builder::unsqueeze(Value* x, const std::vector<int64_t>& axes) { return op("Unsqueeze", {x, i64s(axes)}); }

Value* Builder::slice(Value* x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                      const std::vector<int64_t>& axes) {
  return op("Slice", {x, i64s(starts), i64s(ends), i64s(axes)});
}

std::vector<Value*> Builder::split(Value* x, int64_t axis, const std::vector<int64_t>& sizes) {
  return op_n("Split", {x, i64s(sizes)}, sizes.size(), {{"axis", axis}});
}

Value* Builder::concat(std::vector<Value*> xs, int64_t axis) { return op("Concat", std::move(xs), {{"axis", axis}}); }

Value* Builder::softmax(Value* x, int64_t axis) { return op("Softmax", {x}, {{"axis", axis}}); }

Value* Builder::linear(Value* x, Value* w, Value* bias) {
  Value* y = matmul(x, w);
  return bias ? add(y, bias) : y;
}

Value* Builder::layer_norm(Value* x, Value* weight, Value* bias, float epsilon) {
  return op("LayerNormalization", {x, weight, bias}, {{"axis", int64_t(-1)}, {"epsilon", epsilon}});
}

Value* Builder::gelu_erf(Value* x) {
  Value* erf = op("Erf", {div(x, f32(float(std::sqrt(2.0))))});
  return mul(mul(x, add(erf, f32(1.0f))), f32(0.5f));
}

Value* Builder::gelu_tanh(Value* x) {
  Value* half_x = mul(x, f32(0.5f));
  Value* cubic = mul(op("Pow", {x, f32(3.0f)}), f32(0.044715f));
  Value* inner = mul(add(x, cubic), f32(float(std::sqrt(2.0 / M_PI))));
  return mul(half_x, add(op("Tanh", {inner}), f32(1.0f)));
}

}  // namespace cb
