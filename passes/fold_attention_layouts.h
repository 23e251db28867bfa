// Attention layout folding: the exports put copies around every attention,
// Transposes that split the heads out of [B, T, H * d] rows (and merge them
// back after), and in GPT-2 a Split of the fused QKV projection into Q, K
// and V. This pass makes each codebook.Attention read and write those rows
// where they are, through its layout attributes (ir/attention.h):
//   - an input reached through Transposes, f32 Casts and Identities folds
//     them into its perm (q_perm, k_perm, v_perm), as far back as the head
//     axis stays last; a Mul or Div of Q or Kt by a constant scalar (the
//     Optimum export scales both by 1/sqrt(sqrt(dh))) folds into scale
//     (of Kt only without cached keys, which the cache holds scaled);
//   - inputs that are then Reshapes of the outputs of one Split along the
//     last axis read one [B, T, heads, d] Reshape of the Split's input, at
//     head offsets (num_heads, head_offsets);
//   - an output read only by a Transpose that keeps the head axis last
//     writes the transposed layout (out_perm).
// Shape reads of Transposes and f32 Casts read their input's Shape (through
// a Gather of the perm), so folded layout ops do not stay alive for their
// shape alone (GPT-Neo's local-window slicing reads such shapes). The nodes
// left without readers go with the next dead-code elimination.
// The kernels read the same numbers, so the outputs are those of the
// unfolded graph (up to the rounding of a scale folded from Q and Kt).
//
// After fuse-attention, in inference (passes/inference_pipeline.h) and in
// training's step graph before autodiff (train/training_graph.cpp), which
// folds the Transposes only: the gradient of one input read at three head
// offsets would be three whole-size tensors (codebook.grad.AttentionGrad
// takes no head offsets).
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Folds the layouts around every codebook.Attention of `g` whose layout
// attributes are the defaults (nothing in a graph without one), the QKV
// Split too where `fold_splits`. Returns how many nodes it changed
// (Attention and Shape nodes).
int fold_attention_layouts(Graph& g, bool fold_splits = true);

class FoldAttentionLayoutsPass : public Pass {
 public:
  explicit FoldAttentionLayoutsPass(bool fold_splits = true) : fold_splits_(fold_splits) {}
  std::string name() const override { return "fold-attention-layouts"; }
  bool run(Graph& g) override { return fold_attention_layouts(g, fold_splits_) > 0; }

 private:
  bool fold_splits_;
};

}  // namespace cb
