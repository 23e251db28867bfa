// LayerNorm fusion: replaces the decomposed LayerNorms that exporters write at
// opsets below 17 (which have no LayerNormalization op: TorchScript and
// Optimum at opset 14, the default of many tools),
//
//   mean = ReduceMean(x) over the last axis; d = x - mean
//   y = d / Sqrt(ReduceMean(d^2) + eps) * scale + bias
//
// in its usual spellings (passes/fuse_layer_norm.cpp lists them), by one
// LayerNormalization(x, scale, bias) {axis = -1, epsilon = eps}. The
// structural matcher (passes/transformer_anatomy.h) recognises layers by their
// LayerNormalization nodes, so it runs before the anatomy (analyze_model) and
// in training graphs (train/training_graph.cpp); a graph with no decomposed
// LayerNorm is left as it is.
#pragma once
#include <cstdint>

#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Fuses the decomposed LayerNorms of `g` (not inside subgraphs). Returns how
// many it fused.
int64_t fuse_layer_norm(Graph& g);

// fuse_layer_norm as a pass ("fuse-layer-norm"); fused() counts the
// LayerNorms the last run replaced.
class FuseLayerNormPass : public Pass {
 public:
  std::string name() const override { return "fuse-layer-norm"; }
  bool run(Graph& g) override {
    fused_ = fuse_layer_norm(g);
    return fused_ > 0;
  }
  int64_t fused() const { return fused_; }

 private:
  int64_t fused_ = 0;
};

}  // namespace cb
