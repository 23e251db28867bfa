// The canonicalisation passes and the standard pipeline that runs them. After
// import, a graph is canonicalised once: constants are folded, shape
// arithmetic on symbolic dims is folded into constant Reshape/Expand shapes,
// duplicate computations are merged, Identity nodes and dead code are
// removed, and every value's type is re-inferred. Later passes (and the
// backends) can then rely on simple, static-where-possible graphs.
#pragma once
#include <memory>
#include <optional>
#include <set>

#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Evaluates nodes whose inputs are all constants with the reference kernels
// (passes/constant_folding.cpp). Skips random ops, ops without a kernel and
// folds that would bloat the model.
std::unique_ptr<Pass> make_constant_folding_pass();
// Folds Shape/Gather/Concat/... chains over static and symbolic dims into
// constants and constant Reshape/Expand shapes (passes/shape_folding.cpp).
std::unique_ptr<Pass> make_shape_folding_pass();
// Removes nodes whose outputs reach no graph output, then unused values.
std::unique_ptr<Pass> make_dead_code_elimination_pass();
// Merges nodes with the same op, attributes and inputs, and equal small constants.
std::unique_ptr<Pass> make_common_subexpression_elimination_pass();
// Removes Identity nodes by rewiring their uses (passes/canonicalize.cpp).
std::unique_ptr<Pass> make_identity_elimination_pass();
// Re-infers every value's type (ir/verifier.h); reports no structural change.
std::unique_ptr<Pass> make_type_inference_pass();

// The standard pipeline: type inference, constant folding, shape folding,
// Identity elimination, CSE and DCE, repeated until nothing changes, then a
// final infer_types. Throws cb::Error if the graph does not type-check.
void canonicalize(Graph& g);

// canonicalize as one pass ("canonicalize") of a larger pipeline. It reports
// a change whenever it ran (finding out would mean comparing whole graphs).
class CanonicalizePass : public Pass {
 public:
  std::string name() const override { return "canonicalize"; }
  bool run(Graph& g) override {
    canonicalize(g);
    return true;
  }
};

// Helpers shared by the passes.
namespace pass_util {
// Like Graph::replace_all_uses, and also inside subgraph attributes that
// capture `from` from the enclosing graph.
void replace_all_uses_deep(Graph& g, Value* from, Value* to);
// True when `v` is one of the graph's outputs.
bool is_graph_output(const Graph& g, const Value* v);
bool is_graph_input(const Graph& g, const Value* v);
// A constant whose value is fixed at compile time: graph inputs that carry a
// default (overridable initializers) are not.
const Tensor* constant_value(const Graph& g, const Value* v);
// The value of an f32 constant with one element and rank <= max_rank (so
// that it broadcasts nothing into a value of that rank).
std::optional<double> constant_f32_scalar(const Graph& g, const Value* v, size_t max_rank = 4);
// A node of the ONNX default domain with op type `op`.
inline bool is_onnx_op(const Node* n, const char* op) { return n && n->domain.empty() && n->op_type == op; }
// False for random ops and for Dropout unless its training_mode is a constant
// false (or absent): such nodes must neither be folded nor merged.
bool is_deterministic(const Graph& g, const Node& n);
// True when any attribute of `n` is a subgraph.
bool has_subgraph(const Node& n);
// Forgets the shapes of every value computed from `roots` (keeping dtypes)
// and re-infers the graph's types: for rewrites that change a dimension
// (infer_types keeps a declared shape where inference knows less, so a
// stale "sequence" would survive). Nodes must be in topological order.
void reinfer_types_from(Graph& g, const std::vector<const Value*>& roots);
// The values read from outside g's node list: its outputs and the values its
// nodes' subgraphs capture. A fusion must keep these alive.
std::set<const Value*> externally_read_values(const Graph& g);
}  // namespace pass_util

}  // namespace cb
