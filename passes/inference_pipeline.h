// The fusions that make a graph fast to run, for inference only: applied to
// the final graph right before Executable::compile (after codebook insertion,
// interventions, taps, last-position-logits and kv-cache), never to training
// graphs (autodiff has no rules for the fused ops) nor to graphs that are
// written out (a fused graph is no longer the model as exported).
//
//   fuse-attention         Q Kt MatMul, scale, mask, Softmax, probs V MatMul -> codebook.Attention
//                          (a kv-cache graph's attention over [cache | new] included)
//   fold-attention-layouts the head Transposes and the QKV Split around it -> its layout attributes
//   fuse-gelu              decomposed GELUs -> Gelu
//   fuse-matmul-epilogue   Gemm / MatMul (+ bias Add) (+ Gelu) -> codebook.FusedMatMul
//   dead-code-elimination  the Shape ops that sized the Reshapes around Gemms, the folded Transposes
//   bf16-matmuls           (precision bf16 only) the matmuls multiply bf16 factors
//
// Values that are graph outputs (taps included) are never fused away, so a
// tapped or intervened-on graph computes the same values as the plain one.
#pragma once
#include <memory>

#include "backends/backend.h"
#include "ir/graph.h"
#include "ir/precision.h"
#include "runtime/executable.h"

namespace cb {

// Runs the pipeline through a PassManager (instrumented like every pass:
// --print-after, --time-passes). Returns true when it changed the graph.
bool optimize_for_inference(Graph& g, Precision precision = Precision::f32);

// A copy of `g` (sharing the constants' bytes) with the pipeline applied, for
// Executable::compile; `g` stays as it is, since callers keep reading its
// structure (sites, taps, output names). A graph with subgraphs (If/Loop
// bodies, which clone_graph does not copy) is returned unfused (and in f32).
std::shared_ptr<Graph> inference_graph(const std::shared_ptr<Graph>& g, Precision precision = Precision::f32);

// The inference graph of `g` in `precision` placed on `device_backend` (not
// placed when that is null; docs/cuda.md), with opts.device_backend set to
// compile it. A graph with subgraphs (If/Loop) runs on the host.
std::shared_ptr<Graph> placed_inference_graph(const std::shared_ptr<Graph>& g, const Backend* device_backend,
                                              CompileOptions& opts, Precision precision = Precision::f32);

}  // namespace cb
