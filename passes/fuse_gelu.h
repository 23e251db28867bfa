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
#include <memory>

#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

std::unique_ptr<Pass> make_gelu_fusion_pass();

// Runs the pass once on `g` (not inside subgraphs). Returns true when it
// fused any GELU.
bool fuse_gelu(Graph& g);

}  // namespace cb
