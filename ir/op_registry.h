// The op registry: every op has exactly one schema, which checks a node
// (arity, attributes, input types) and infers its output types.
//
// The same infer function serves the compiler and the runtime: at compile time
// input shapes may be symbolic and only constant inputs have values; at run
// time every shape is concrete and every input value is available, so the
// runtime uses the schema to size each output before calling the kernel.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

class InferContext {
 public:
  InferContext(const Node& node, std::vector<const TensorType*> in_types, std::vector<const Tensor*> in_values)
      : node_(node),
        in_types_(std::move(in_types)),
        in_values_(std::move(in_values)),
        out_types_(node.outputs.size()) {}

  const Node& node() const { return node_; }
  size_t num_inputs() const { return in_types_.size(); }
  size_t num_outputs() const { return out_types_.size(); }
  bool has_input(size_t i) const { return i < in_types_.size() && in_types_[i]; }
  const TensorType& input_type(size_t i) const;  // throws if the input is absent
  DType input_dtype(size_t i) const { return input_type(i).dtype; }
  const Shape& input_shape(size_t i) const { return input_type(i).shape; }
  // The value of input i when known (constant, or always at run time); else null.
  const Tensor* input_value(size_t i) const {
    if (i >= in_values_.size()) return nullptr;
    values_read_ |= uint64_t(1) << (i < 63 ? i : 63);
    return in_values_[i];
  }
  // Bit i: the inference asked for input i's value (bit 63: for some input >= 63).
  // The runtime reuses inferred types only while those values stay the same.
  uint64_t values_read() const { return values_read_; }

  void set_output(size_t i, DType dtype, Shape shape) {
    if (i < out_types_.size()) out_types_[i] = TensorType{dtype, std::move(shape)};
  }
  const std::vector<TensorType>& output_types() const { return out_types_; }

  // Throws cb::Error prefixed with the node's op and name.
  [[noreturn]] void fail(const std::string& msg) const;
  void check(bool cond, const std::string& msg) const {
    if (!cond) fail(msg);
  }
  // Normalises a possibly negative axis against `rank`, failing if out of range.
  int64_t axis(int64_t a, int64_t rank, const char* what = "axis") const;

 private:
  const Node& node_;
  std::vector<const TensorType*> in_types_;
  std::vector<const Tensor*> in_values_;
  std::vector<TensorType> out_types_;
  mutable uint64_t values_read_ = 0;
};

struct OpSchema {
  std::string domain;  // "" = ai.onnx
  std::string name;
  int min_inputs = 0, max_inputs = 0;
  int min_outputs = 1, max_outputs = 1;
  std::function<void(InferContext&)> infer;
  // Data-dependent outputs (Loop, If): the runtime does not pre-allocate them;
  // the kernel sets *ctx.outputs[i] itself.
  bool kernel_sizes_outputs = false;
  std::string doc;
};

// A schema for the default (ai.onnx) domain from its arity and infer function.
OpSchema make_op_schema(const char* name, int min_inputs, int max_inputs, int min_outputs, int max_outputs,
                        std::function<void(InferContext&)> infer, const char* doc = "");

class OpRegistry {
 public:
  // The registry with every built-in op (populated on first use).
  static const OpRegistry& global();
  void add(OpSchema s);
  const OpSchema* find(const std::string& domain, const std::string& name) const;
  std::vector<const OpSchema*> all() const;

 private:
  std::map<std::pair<std::string, std::string>, OpSchema> ops_;
};

// Checks arity against the schema and runs shape inference for `node`, given
// its inputs' types and whatever input values are known. Throws cb::Error.
// `values_read`, when given, receives InferContext::values_read().
std::vector<TensorType> infer_node(const Node& node, const std::vector<const TensorType*>& in_types,
                                   const std::vector<const Tensor*>& in_values, uint64_t* values_read = nullptr);

// Shape helpers shared by schemas.
// Numpy-style multidirectional broadcast; fails naming both shapes if incompatible.
Shape broadcast_shapes(const InferContext& ctx, const Shape& a, const Shape& b);

// Registration functions, one per op family (ir/ops/*.cpp).
void register_elementwise_ops(OpRegistry& r);
void register_tensor_ops(OpRegistry& r);
void register_reduction_ops(OpRegistry& r);
void register_nn_ops(OpRegistry& r);
void register_control_ops(OpRegistry& r);
void register_codebook_ops(OpRegistry& r);
void register_grad_ops(OpRegistry& r);       // ir/ops/grad.cpp: backward ops, domain codebook.grad
void register_optim_ops(OpRegistry& r);      // ir/ops/optim.cpp: fused optimizer updates, domain codebook.train
void register_placement_ops(OpRegistry& r);  // ir/ops/placement.cpp: codebook.CopyToDevice / CopyToHost

}  // namespace cb
