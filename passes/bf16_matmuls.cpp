#include "passes/bf16_matmuls.h"

#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "ir/precision.h"

namespace cb {

namespace {

bool is_matmul(const Node& n) {
  return (n.domain.empty() && (n.op_type == "MatMul" || n.op_type == "Gemm")) ||
         (n.domain == kCodebookDomain && n.op_type == kFusedMatMulOp);
}

bool is_f32(const Value* v) { return v && v->type.dtype == DType::f32; }

}  // namespace

bool Bf16MatMulsPass::run(Graph& g) {
  bool changed = false;
  for (auto& n : g.nodes()) {
    if (!is_matmul(*n) || !is_f32(n->input(0)) || !is_f32(n->input(1))) continue;
    if (node_precision(*n) == Precision::bf16) continue;
    n->attrs[kPrecisionAttr] = std::string(precision_name(Precision::bf16));
    ++marked_;
    changed = true;
  }
  return changed;
}

}  // namespace cb
