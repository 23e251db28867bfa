// Re-ties an output projection that an ONNX exporter stored as a copy of the
// token embedding table. Hugging Face GPT-2 (and other models with
// tie_word_embeddings) use one matrix E [vocab, hidden] both as the embedding
// table and, transposed, as the lm_head; torch.onnx writes the lm_head as a
// second initializer holding E^T. For inference the copy is harmless, but when
// the model is fine-tuned the two copies would train apart. This pass finds
// each MatMul/Gemm whose weight is a constant equal (bit for bit) to the
// transpose of a Gather table -- or, for Gemm with transB = 1, to the table
// itself -- and makes it read the table (through a Transpose node where
// needed), so the model has one parameter again and its gradient is the sum of
// both uses. The copy becomes dead (removed by dead-code elimination).
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Returns the number of projections re-tied.
int tie_embeddings(Graph& g);

// tie_embeddings as a pass ("tie-embeddings"); tied() counts the projections.
class TieEmbeddingsPass : public Pass {
 public:
  std::string name() const override { return "tie-embeddings"; }
  bool run(Graph& g) override {
    tied_ = tie_embeddings(g);
    return tied_ > 0;
  }
  int tied() const { return tied_; }

 private:
  int tied_ = 0;
};

}  // namespace cb
