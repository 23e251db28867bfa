// GELU fusion: replaces the decomposed GELUs that model builders
// (ir/builder.h gelu_tanh / gelu_erf) and torch's ONNX exporters
// emit, chains of Mul/Div/Pow/Add around a Tanh or an Erf, by one ONNX Gelu
// node (approximate = "tanh" or "none"): the CPU backend then runs one
// vectorised pass forward, and autodiff one codebook.grad.GeluGrad backward
// instead of a dozen elementwise ops over the MLP's widest activation.
//
// Not part of canonicalize(): a fused graph is no longer the model as
// exported. Training graphs run it (train/training_graph.cpp).
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Fuses the GELUs of `g` (not inside subgraphs). Returns true when it fused any.
bool fuse_gelu(Graph& g);

// fuse_gelu as a pass ("fuse-gelu").
class FuseGeluPass : public Pass {
 public:
  std::string name() const override { return "fuse-gelu"; }
  bool run(Graph& g) override { return fuse_gelu(g); }
};

}  // namespace cb
