#include "passes/inference_pipeline.h"

#include "ir/graph_clone.h"
#include "passes/bf16_matmuls.h"
#include "passes/canonicalize.h"
#include "passes/fold_attention_layouts.h"
#include "passes/fuse_attention.h"
#include "passes/fuse_gelu.h"
#include "passes/fuse_matmul_epilogue.h"
#include "passes/place_devices.h"

namespace cb {

bool optimize_for_inference(Graph& g, Precision precision) {
  PassManager pm;
  pm.emplace<FuseAttentionPass>();  // first: the epilogue fusion would take the scores MatMul + mask Add
  pm.emplace<FoldAttentionLayoutsPass>();
  pm.emplace<FuseGeluPass>();
  pm.emplace<FuseMatMulEpiloguePass>();
  pm.add(make_dead_code_elimination_pass());  // the Shape arithmetic of reshapes the fusion removed
  if (precision == Precision::bf16) pm.emplace<Bf16MatMulsPass>();  // last: it marks the fused matmuls
  return pm.run(g);
}

std::shared_ptr<Graph> inference_graph(const std::shared_ptr<Graph>& g, Precision precision) {
  for (auto& n : g->nodes())
    if (pass_util::has_subgraph(*n)) return g;
  std::shared_ptr<Graph> copy = clone_graph(*g);
  optimize_for_inference(*copy, precision);
  return copy;
}

std::shared_ptr<Graph> placed_inference_graph(const std::shared_ptr<Graph>& g, const Backend* device_backend,
                                              CompileOptions& opts, Precision precision) {
  std::shared_ptr<Graph> fused = inference_graph(g, precision);
  if (!device_backend || fused == g) return fused;  // the same graph: it has subgraphs, or nothing to place
  PlaceDevicesPass pass(placement_target(*device_backend));
  PassManager().run(pass, *fused);
  opts.device_backend = device_backend;
  return fused;
}

}  // namespace cb
