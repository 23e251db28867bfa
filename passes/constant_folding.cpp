// Constant folding. Algorithm: walk the nodes in topological order; a node
// whose inputs are all compile-time constants (graph inputs with a default
// value do not count: callers may override them) and whose op is
// deterministic is evaluated on the spot: the op's schema (infer_node) sizes
// its outputs from the constant inputs, the reference backend's kernel fills
// them, and the outputs become constant values (keeping their names). Because
// the walk is in order, a chain of constant nodes folds in one run. The node
// is then removed; values it read that become unused are left to DCE.
//
// A node is skipped, never failed, when folding it is impossible or unwise:
// random ops and Dropout in training mode, nodes with subgraphs, ops without
// a reference kernel (kernels are still being written) or whose kernel sizes
// its own outputs (If, Loop), nodes whose schema or kernel rejects the inputs
// (the error is left for run time), and folds that would bloat the model:
// outputs over 64 MiB, or over 1 MiB and more than twice the bytes of the
// inputs (Expand, Tile, ConstantOfShape, Range blowing up). Weight transposes
// and other size-preserving ops fold.
#include <cstring>
#include <set>

#include "backends/reference/reference_backend.h"
#include "ir/op_registry.h"
#include "passes/canonicalize.h"

namespace cb {

namespace {

using namespace pass_util;

constexpr size_t kMaxFoldedBytes = size_t(64) << 20;
constexpr size_t kGrowthFloorBytes = size_t(1) << 20;

bool shares_buffer(const Tensor& t, const std::vector<const Tensor*>& inputs) {
  for (const Tensor* in : inputs)
    if (in && in->buffer() && in->buffer() == t.buffer()) return true;
  return false;
}

// Evaluates `n` if possible; returns its output tensors (undefined for omitted outputs).
std::optional<std::vector<Tensor>> evaluate(const Graph& g, const Node& n, KernelFn kernel) {
  std::vector<const Tensor*> in_values;
  std::vector<TensorType> in_types_storage(n.inputs.size());
  std::vector<const TensorType*> in_types;
  size_t in_bytes = 0;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    const Value* v = n.inputs[i];
    if (!v) {
      in_values.push_back(nullptr);
      in_types.push_back(nullptr);
      continue;
    }
    const Tensor* t = constant_value(g, v);
    if (!t) return std::nullopt;
    in_values.push_back(t);
    in_types_storage[i] = TensorType{t->dtype(), Shape::of(t->dims())};
    in_types.push_back(&in_types_storage[i]);
    in_bytes += t->nbytes();
  }
  for (auto& [k, a] : n.attrs)
    if (auto t = std::get_if<Tensor>(&a)) in_bytes += t->nbytes();

  std::vector<TensorType> out_types;
  try {
    out_types = infer_node(n, in_types, in_values);
  } catch (const std::exception&) {
    return std::nullopt;  // invalid here; the error surfaces when the graph runs
  }
  size_t out_bytes = 0;
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    if (!n.outputs[i]) continue;
    const TensorType& t = out_types[i];
    if (t.dtype == DType::undefined || !t.shape.is_static()) return std::nullopt;
    const DType declared = n.outputs[i]->type.dtype;
    if (declared != DType::undefined && declared != t.dtype) return std::nullopt;
    size_t numel = 1;
    for (int64_t d : t.shape.sizes()) numel *= size_t(d);
    out_bytes += numel * dtype_size(t.dtype);
  }
  if (out_bytes > kMaxFoldedBytes || (out_bytes > kGrowthFloorBytes && out_bytes > 2 * in_bytes)) return std::nullopt;

  std::vector<Tensor> outs(n.outputs.size());
  std::vector<Tensor*> out_ptrs(n.outputs.size(), nullptr);
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    if (!n.outputs[i]) continue;
    outs[i] = Tensor::empty(out_types[i].dtype, out_types[i].shape.sizes());
    out_ptrs[i] = &outs[i];
  }
  try {
    KernelContext ctx{n, in_values, out_ptrs, 1};
    kernel(ctx);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    if (!n.outputs[i]) continue;
    Tensor& t = outs[i];
    if (t.dtype() != out_types[i].dtype || t.dims() != out_types[i].shape.sizes()) return std::nullopt;
    // A kernel may return a view of an input (Reshape); constants own their bytes.
    if (shares_buffer(t, in_values)) t = t.clone();
  }
  return outs;
}

class ConstantFolding : public Pass {
 public:
  std::string name() const override { return "constant-folding"; }

  bool run(Graph& g) override {
    const KernelTable& kernels = reference_kernels();
    std::set<const Node*> folded;
    for (auto& node : g.nodes()) {
      const Node& n = *node;
      if (!is_deterministic(g, n) || has_subgraph(n)) continue;
      bool has_output = false;
      for (Value* o : n.outputs) has_output |= o != nullptr;
      if (!has_output) continue;
      KernelFn kernel = kernels.find(n.domain, n.op_type);
      const OpSchema* schema = OpRegistry::global().find(n.domain, n.op_type);
      if (!kernel || !schema || schema->kernel_sizes_outputs) continue;  // (data-dependent sizes)
      auto outs = evaluate(g, n, kernel);
      if (!outs) continue;
      for (size_t i = 0; i < n.outputs.size(); ++i) {
        Value* v = n.outputs[i];
        if (!v) continue;
        v->type = TensorType{(*outs)[i].dtype(), Shape::of((*outs)[i].dims())};
        v->constant = std::move((*outs)[i]);
      }
      folded.insert(&n);
    }
    if (folded.empty()) return false;
    g.remove_nodes_if([&](const Node& n) { return folded.count(&n) != 0; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> make_constant_folding_pass() { return std::make_unique<ConstantFolding>(); }

}  // namespace cb
