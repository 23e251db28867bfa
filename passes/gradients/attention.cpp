// Gradient rule of codebook.Attention (ir/attention.h): one
// codebook.grad.AttentionGrad node (ir/ops/grad.h), which recomputes the
// probabilities from Q, Kt, V and the mask instead of keeping the [T, S]
// matrix of every head alive from the forward to the backward, as the
// unfused graph's Softmax output was. The training graph fuses attention
// before autodiff (train/training_graph.cpp), so this is its backward.
#include "ir/attention.h"

#include "ir/codebook.h"
#include "ir/ops/grad.h"
#include "passes/gradients/gradient_rule.h"
#include "support/error.h"

namespace cb {
namespace {

std::vector<Value*> attention_grad(GradientContext& c) {
  auto r = c.none();
  const Node& n = c.node;
  CB_CHECK(attention_layout(n).num_heads == 0,
           "autodiff: " << n.describe() << ": no gradient with head offsets (num_heads, head_offsets)");
  CB_CHECK(!(n.inputs.size() > kAttentionPastKeysInput && n.inputs[kAttentionPastKeysInput]),
           "autodiff: " << n.describe() << ": no gradient through cached keys and values");
  CB_CHECK(!(n.inputs.size() > kAttentionMaskInput && n.inputs[kAttentionMaskInput] && c.want(kAttentionMaskInput)),
           "autodiff: " << n.describe() << ": the mask is not differentiable");
  if (!c.want(0) && !c.want(1) && !c.want(2)) return r;
  Value* mask = n.inputs.size() > kAttentionMaskInput ? n.inputs[kAttentionMaskInput] : nullptr;
  std::vector<Value*> in = {c.dy_or_zeros(0), c.in(0), c.in(1), c.in(2)};
  if (mask) in.push_back(mask);
  // The forward's perms (fold-attention-layouts): the backward reads and
  // writes the same layouts.
  Builder::Attrs attrs = {{"scale", n.attr_float("scale", 1.f)}, {"nan_to_zero", n.attr_int("nan_to_zero", 0)}};
  for (const char* perm : {"q_perm", "k_perm", "v_perm", "out_perm"})
    if (n.has_attr(perm)) attrs[perm] = n.attr_ints(perm, {});
  std::vector<Value*> g = c.b.op_n(kAttentionGradOp, in, 3, attrs, kGradDomain);
  // The outputs have the broadcast [B, H] in each input's layout: summed
  // back where an input broadcast.
  for (size_t i = 0; i < 3; ++i)
    if (c.want(i)) r[i] = c.b.sum_to(g[i], c.in(i));
  return r;
}

}  // namespace

void register_attention_gradients(GradientTable& t) { t.add(kAttentionOp, attention_grad, kCodebookDomain); }

}  // namespace cb
