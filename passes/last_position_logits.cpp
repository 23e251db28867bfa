// The last-position-logits pass (see last_position_logits.h). The head is a
// Linear in one of the forms the anatomy accepts:
//   MatMul(x, W) [+ b]                         -> MatMul(x[:, -1:], W) [+ b]
//   Reshape(Gemm(Reshape(x, [-1, D]), W), S)   -> the same on x[:, -1:], S = [-1, 1, vocab]
// (S is often computed from x's old length, so it is replaced).
#include "passes/last_position_logits.h"

#include <limits>

#include "ir/builder.h"
#include "passes/canonicalize.h"
#include "passes/transformer_anatomy.h"
#include "support/error.h"

namespace cb {

namespace {

using pass_util::is_onnx_op;

}  // namespace

bool LastPositionLogitsPass::run(Graph& g) {
  const ModelAnatomy a = analyze_model(g);
  CB_CHECK(a.logits && a.final_norm,
           "last-position-logits: no final LayerNorm -> unembedding readout found in graph '" << g.name << "'");
  Value* logits = a.logits;
  CB_CHECK(logits->type.shape.rank_known && logits->type.shape.rank() == 3,
           "last-position-logits: the logits %" << logits->name << " are " << logits->type.str()
                                                << ", expected [batch, seq, vocab]");
  Builder b(g);
  b.set_scope("last_position");
  Value* sliced = nullptr;
  auto last = [&](Value* x) {
    // Added at the end of the graph; toposort puts it before the head.
    return sliced = b.named_op("Slice", {x, b.i64s({-1}), b.i64s({std::numeric_limits<int64_t>::max()}), b.i64s({1})},
                               "last_position");
  };
  Node* head = logits->producer;
  if (is_onnx_op(head, "Add")) {  // bias: find the MatMul operand
    Node* mm = nullptr;
    for (Value* in : head->inputs)
      if (in && is_onnx_op(in->producer, "MatMul")) mm = in->producer;
    head = mm;
  }
  if (is_onnx_op(head, "MatMul")) {
    head->inputs[0] = last(head->inputs[0]);
  } else if (is_onnx_op(head, "Reshape") && head->input(0) && is_onnx_op(head->input(0)->producer, "Gemm") &&
             is_onnx_op(head->input(0)->producer->input(0) ? head->input(0)->producer->input(0)->producer : nullptr,
                        "Reshape")) {
    Node* flatten = head->input(0)->producer->input(0)->producer;
    flatten->inputs[0] = last(flatten->inputs[0]);
    const int64_t vocab = logits->type.shape[2].is_static() ? logits->type.shape[2].value : -1;
    CB_CHECK(vocab > 0, "last-position-logits: the logits %" << logits->name << " have no static vocabulary size");
    head->inputs[1] = b.i64s({-1, 1, vocab}, "logits_shape");
  } else {
    CB_FAIL("last-position-logits: the unembedding producing %" << logits->name << " is "
                                                                << (head ? head->describe() : std::string("(none)"))
                                                                << ", not a MatMul or Reshape(Gemm(Reshape))");
  }
  g.toposort();
  pass_util::reinfer_types_from(g, {sliced});
  return true;
}

}  // namespace cb
