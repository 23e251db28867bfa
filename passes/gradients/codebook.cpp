// Gradient rule of codebook.Codebook: the original's straight-through
// estimator as one codebook.grad.CodebookGrad node (loss modes in
// ir/ops/grad.h). The backward needs the ids the forward selected, so the
// rule makes the forward node's ids output exist; interventions (Mode A and
// B masks, forced and blocked slots) are then just different ids.
#include "ir/codebook.h"

#include "ir/ops/grad.h"
#include "ir/verifier.h"
#include "passes/gradients/gradient_rule.h"
#include "support/error.h"

namespace cb {
namespace {

// The forward node's ids output, created (named "<node>/ids") when absent.
Value* ensure_ids_output(Graph& g, Node& n) {
  if (n.outputs.size() > 1 && n.outputs[1]) return n.outputs[1];
  if (n.outputs.size() < 2) n.outputs.resize(2, nullptr);
  Value* ids = g.add_value(n.name.empty() ? "codebook_ids" : n.name + "/ids");
  n.outputs[1] = ids;
  ids->producer = &n;
  ids->producer_output = 1;
  infer_node_types(n);
  return ids;
}

std::vector<Value*> codebook_grad(GradientContext& c) {
  auto r = c.none();
  Node& n = c.node;
  CB_CHECK(!(c.dy.size() > 2 && c.dy[2]),
           "autodiff: " << n.describe() << ": the scores output is not differentiable; only y carries gradients");
  const CodebookAttrs attrs = CodebookAttrs::from_node(n);
  const std::string loss = n.attr_string("loss", "aeloss");
  codebook_loss_of(n);  // an unknown mode fails here, naming the node
  Value* ids = ensure_ids_output(c.b.graph(), n);
  Value* dy = c.dy_or_zeros(0);
  bool want_x = c.want(0), want_codes = c.want(1), want_scale = c.want(2), want_bias = c.want(3);
  GradBuilder::Attrs a{{"k", attrs.k}, {"epsilon", attrs.epsilon}, {"loss", loss}};
  std::vector<Value*> g = c.b.op_n("CodebookGrad", {dy, c.in(0), c.in(1), c.in(2), c.in(3), ids}, 4, a, kGradDomain,
                                   {want_x, want_codes, want_scale, want_bias});
  for (size_t i = 0; i < 4; ++i) r[i] = g[i];
  return r;
}

}  // namespace

void register_codebook_gradients(GradientTable& t) { t.add(kCodebookOp, codebook_grad, kCodebookDomain); }

}  // namespace cb
