#include "passes/bf16_matmuls.h"

#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "ir/precision.h"

namespace cb {

namespace {

// A product with a weight: Gemm, FusedMatMul, or a MatMul whose B is 2-D.
// A MatMul of two batched activations (attention's QKt and probs V in
// graphs where attention is not fused) stays f32, as in the fused kernel.
bool is_weight_matmul(const Node& n) {
  if (n.domain == kCodebookDomain) return n.op_type == kFusedMatMulOp;
  if (!n.domain.empty()) return false;
  if (n.op_type == "Gemm") return true;
  const Value* b = n.input(1);
  return n.op_type == "MatMul" && b && b->type.shape.rank_known && b->type.shape.rank() <= 2;
}

bool is_f32(const Value* v) { return v && v->type.dtype == DType::f32; }

}  // namespace

bool Bf16MatMulsPass::run(Graph& g) {
  bool changed = false;
  for (auto& n : g.nodes()) {
    if (!is_weight_matmul(*n) || !is_f32(n->input(0)) || !is_f32(n->input(1))) continue;
    if (node_precision(*n) == Precision::bf16) continue;
    n->attrs[kPrecisionAttr] = std::string(precision_name(Precision::bf16));
    ++marked_;
    changed = true;
  }
  return changed;
}

}  // namespace cb
