#include "ir/op_registry.h"

#include "ir/fused_matmul.h"
#include "support/checked_size.h"
#include "support/error.h"

namespace cb {

const TensorType& InferContext::input_type(size_t i) const {
  if (!has_input(i)) fail("required input " + std::to_string(i) + " is missing");
  return *in_types_[i];
}

void InferContext::fail(const std::string& msg) const { throw Error(node_.describe() + ": " + msg); }

int64_t InferContext::axis(int64_t a, int64_t rank, const char* what) const {
  if (a < -rank || a >= std::max<int64_t>(rank, 1) || (rank == 0 && a != 0 && a != -1))
    fail(std::string(what) + " " + std::to_string(a) + " is out of range for rank " + std::to_string(rank));
  return a < 0 ? a + rank : a;
}

OpSchema make_op_schema(const char* name, int min_inputs, int max_inputs, int min_outputs, int max_outputs,
                        std::function<void(InferContext&)> infer, const char* doc) {
  OpSchema s;
  s.name = name;
  s.min_inputs = min_inputs;
  s.max_inputs = max_inputs;
  s.min_outputs = min_outputs;
  s.max_outputs = max_outputs;
  s.infer = std::move(infer);
  s.doc = doc;
  return s;
}

void OpRegistry::add(OpSchema s) {
  auto key = std::make_pair(s.domain, s.name);
  ops_[key] = std::move(s);
}

const OpSchema* OpRegistry::find(const std::string& domain, const std::string& name) const {
  auto it = ops_.find({domain == "ai.onnx" ? "" : domain, name});
  return it == ops_.end() ? nullptr : &it->second;
}

std::vector<const OpSchema*> OpRegistry::all() const {
  std::vector<const OpSchema*> v;
  for (auto& [k, s] : ops_) v.push_back(&s);
  return v;
}

const OpRegistry& OpRegistry::global() {
  static const OpRegistry reg = [] {
    OpRegistry r;
    register_elementwise_ops(r);
    register_tensor_ops(r);
    register_reduction_ops(r);
    register_nn_ops(r);
    register_control_ops(r);
    register_codebook_ops(r);
    register_fused_matmul_op(r);
    register_grad_ops(r);
    register_optim_ops(r);
    register_placement_ops(r);
    return r;
  }();
  return reg;
}

std::vector<TensorType> infer_node(const Node& node, const std::vector<const TensorType*>& in_types,
                                   const std::vector<const Tensor*>& in_values, uint64_t* values_read) {
  const OpSchema* s = OpRegistry::global().find(node.domain, node.op_type);
  CB_CHECK(s, "unknown op " << node.describe());
  int nin = int(node.inputs.size());
  while (nin > 0 && !node.inputs[size_t(nin) - 1]) --nin;  // trailing omitted inputs
  CB_CHECK(nin >= s->min_inputs && nin <= s->max_inputs,
           node.describe() << ": has " << nin << " inputs, expected " << s->min_inputs << ".." << s->max_inputs);
  int nout = int(node.outputs.size());
  CB_CHECK(nout >= s->min_outputs && nout <= s->max_outputs,
           node.describe() << ": has " << nout << " outputs, expected " << s->min_outputs << ".." << s->max_outputs);
  InferContext ctx(node, in_types, in_values);
  s->infer(ctx);
  // Every inferred shape is allocated by the runtime: its static dims must
  // multiply to a size a tensor can have (a broadcast or Reshape to
  // [2^40,2^40] would otherwise wrap around).
  for (const TensorType& t : ctx.output_types()) {
    int64_t n = 1;
    for (const Dim& d : t.shape.dims)
      CB_CHECK(!d.is_static() || mul_size(n, d.value),
               node.describe() << ": output shape " << t.shape.str() << " has more than 2^62 elements");
  }
  if (values_read) *values_read = ctx.values_read();
  return ctx.output_types();
}

Shape broadcast_shapes(const InferContext& ctx, const Shape& a, const Shape& b) {
  if (!a.rank_known || !b.rank_known) return Shape::unknown_rank();
  size_t r = std::max(a.rank(), b.rank());
  Shape out;
  out.dims.resize(r);
  for (size_t i = 0; i < r; ++i) {
    const Dim* da = i < r - a.rank() ? nullptr : &a.dims[i - (r - a.rank())];
    const Dim* db = i < r - b.rank() ? nullptr : &b.dims[i - (r - b.rank())];
    if (!da) {
      out.dims[i] = *db;
      continue;
    }
    if (!db) {
      out.dims[i] = *da;
      continue;
    }
    if (da->is_static() && da->value == 1) {
      out.dims[i] = *db;
      continue;
    }
    if (db->is_static() && db->value == 1) {
      out.dims[i] = *da;
      continue;
    }
    if (da->same_as(*db)) {
      out.dims[i] = *da;
      continue;
    }
    if (da->is_static() && db->is_static()) ctx.fail("cannot broadcast shapes " + a.str() + " and " + b.str());
    // One static (not 1) and one symbolic: the static one wins (the other must equal it).
    out.dims[i] = da->is_static() ? *da : db->is_static() ? *db : Dim::unknown();
  }
  return out;
}

}  // namespace cb
