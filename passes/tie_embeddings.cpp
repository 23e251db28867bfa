#include "passes/tie_embeddings.h"

#include <cstring>

#include "passes/canonicalize.h"

namespace cb {
namespace {

using pass_util::constant_value;

// True when w [D, V] equals table [V, D] transposed (transposed = true), or
// table itself (transposed = false), bit for bit.
bool same_matrix(const Tensor& w, const Tensor& table, bool transposed) {
  if (w.dtype() != DType::f32 || table.dtype() != DType::f32 || w.rank() != 2 || table.rank() != 2) return false;
  int64_t V = table.dim(0), D = table.dim(1);
  if (!transposed)
    return w.dims() == table.dims() && std::memcmp(w.data<float>(), table.data<float>(), size_t(V * D) * 4) == 0;
  if (w.dim(0) != D || w.dim(1) != V) return false;
  const float* a = w.data<float>();
  const float* b = table.data<float>();
  for (int64_t v = 0; v < V; ++v)
    for (int64_t d = 0; d < D; ++d)
      if (std::memcmp(&a[d * V + v], &b[v * D + d], 4) != 0) return false;
  return true;
}

}  // namespace

int tie_embeddings(Graph& g) {
  // Embedding tables: constant data of a Gather along axis 0.
  std::vector<Value*> tables;
  for (auto& n : g.nodes())
    if (n->op_type == "Gather" && n->domain.empty() && n->attr_int("axis", 0) == 0 && constant_value(g, n->input(0)) &&
        n->input(0)->constant->rank() == 2)
      tables.push_back(n->input(0));
  int tied = 0;
  std::vector<Node*> projections;
  for (auto& n : g.nodes())
    if ((n->op_type == "MatMul" || n->op_type == "Gemm") && n->domain.empty() && n->inputs.size() >= 2)
      projections.push_back(n.get());
  for (Node* n : projections) {
    const Tensor* w = constant_value(g, n->input(1));
    if (!w) continue;
    bool trans_b = n->op_type == "Gemm" && n->attr_int("transB", 0) != 0;
    for (Value* table : tables) {
      if (table == n->input(1)) break;  // already tied
      if (!same_matrix(*w, *table->constant, !trans_b)) continue;
      Value* replacement = table;
      if (!trans_b) {
        replacement = g.add_value(table->name + "_transposed");
        auto t = std::make_unique<Node>();
        t->op_type = "Transpose";
        t->name = g.unique_name(table->name + "_transpose");
        t->attrs["perm"] = std::vector<int64_t>{1, 0};
        t->inputs = {table};
        t->outputs = {replacement};
        g.insert_node_before(n, std::move(t));
      }
      n->inputs[1] = replacement;
      ++tied;
      break;
    }
  }
  if (tied) g.remove_unused_values();
  return tied;
}

}  // namespace cb
