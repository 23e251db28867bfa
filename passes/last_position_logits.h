// The last-position-logits pass: when a caller wants the next token only
// (generation, `run --tokens` printing next tokens), the LM head needs to
// see the last position only. The pass slices the unembedding Linear's input
// [B, T, D] to [B, 1, D] (the anatomy's readout: final LayerNorm -> lm_head,
// passes/transformer_anatomy.h), so the logits output becomes [B, 1, vocab]:
// for GPT-2 small at T = 128 that skips 127 of 128 rows of its largest
// matmul (768 x 50257). Everything before the head (codebooks, taps) still
// sees every position.
//
// Run it before the kv-cache pass (which rewires the attention the anatomy
// matches). Throws cb::Error when the graph has no readout the anatomy finds.
#pragma once
#include "passes/pass.h"

namespace cb {

class LastPositionLogitsPass : public Pass {
 public:
  std::string name() const override { return "last-position-logits"; }
  bool run(Graph& g) override;
};

}  // namespace cb
