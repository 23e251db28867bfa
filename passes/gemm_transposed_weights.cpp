// MatMul of a transposed matrix as a Gemm (passes/gemm_transposed_weights.h).
#include "passes/gemm_transposed_weights.h"

#include <vector>

#include "ir/builder.h"
#include "ir/verifier.h"

namespace cb {

int gemm_for_transposed_weights(Graph& g) {
  std::vector<Node*> matmuls;
  for (auto& n : g.nodes())
    if (n->domain.empty() && n->op_type == "MatMul" && n->inputs.size() == 2 && n->outputs.size() == 1)
      matmuls.push_back(n.get());
  int rewritten = 0;
  for (Node* mm : matmuls) {
    Value* a = mm->input(0);
    const Node* t = mm->input(1) ? mm->input(1)->producer : nullptr;
    if (!t || !t->domain.empty() || t->op_type != "Transpose" || !t->input(0)) continue;
    Value* w = t->input(0);
    const Shape &as = a->type.shape, &ws = w->type.shape;
    if (a->type.dtype != DType::f32 || w->type.dtype != DType::f32 || !as.rank_known || as.rank() < 2 ||
        !ws.rank_known || ws.rank() != 2 || !ws.is_static() || !as.dims.back().is_static() ||
        as.dims.back().value != ws.dims[1].value)
      continue;
    const std::vector<int64_t> perm = t->attr_ints("perm", {1, 0});
    if (perm != std::vector<int64_t>{1, 0}) continue;
    Value* out = mm->outputs[0];
    Builder b(g);
    b.set_insertion_point_before(mm);
    auto scope = b.scope(mm->name);
    const int64_t K = ws.dims[1].value, N = ws.dims[0].value;
    if (as.rank() == 2) {
      b.create("Gemm", {a, w}, {out}, {{"transB", int64_t(1)}});
    } else {
      Value* rows = b.reshape(a, {-1, K});
      Value* y = b.op("Gemm", {rows, w}, {{"transB", int64_t(1)}});
      Value* lead = b.slice(b.shape_of(a), {0}, {int64_t(as.rank()) - 1}, {0});
      b.create("Reshape", {y, b.concat({lead, b.i64s({N})}, 0)}, {out});
    }
    mm->outputs[0] = nullptr;
    ++rewritten;
  }
  if (rewritten) {
    g.remove_nodes_if([](const Node& n) { return n.domain.empty() && n.op_type == "MatMul" && !n.outputs[0]; });
    g.remove_unused_values();
    infer_types(g);
  }
  return rewritten;
}

}  // namespace cb
