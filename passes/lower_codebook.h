// Lowering of codebook.Codebook (contract in ir/codebook.h) to standard ONNX
// ops, so that any ONNX runtime can run a codebook model (`codebook export
// --standard`). Every node is replaced by a subgraph with the same results,
// interventions included; the outputs keep their values (and names).
//
// Per node, with x [B,T,D], codes [G,K,Dg] (static shape), k, metric:
//   u      = LayerNormalization(x as [B,T,G,Dg], axis -1) * ln_scale + ln_bias
//   dot    = Einsum("btgd,gkd->btgk", u, codes)   (codes read in place)
//   rank   = dot / |C|  (inner_product; a zero code divides by 1, scores 0)
//          = dot - |C|^2/2  (euclidean: same order as -|u - C|, no sqrt)
//   ids    = TopK(rank, k), sorted, ties to the lower index (as the kernels)
//   y      = mean over the k slots of GatherND(codes, (g, id)), blocked = 0
//   scores = recomputed from u and the selected (or forced) codes; -inf at -1.
// Interventions: records are grouped by position (P distinct positions);
// which positions match is found at run time from T = Shape(x)[1] (target p,
// or p + T for p < 0, compared with Range(T)), a [T,P] 0/1 matrix; records
// over every position alone give constants. Then
//   ablate        [T,G,K] mask = MatMul(match [T,P], one-hot [P,G*K]) > 0
//   disable_topk  m[T,G] = max over matching records (ReduceMax)
//   keep_k_codes=1: ablated codes score -inf, TopK(k + max m), keep ranks
//                   m..m+k-1 (GatherElements); =0: TopK(k), then slots with
//                   an ablated code or rank < m become -1 (Where)
//   force         the last matching record per (t, g, slot) wins: max of
//                 (record index + 1) over matches, then Gather of its code.
// Everything is standard ONNX at opset 18 (the exporter's minimum).
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace cb {

// Replaces every codebook node of `g` (not inside subgraphs: a codebook node
// there is an error) and re-infers types. Returns how many were lowered.
// Throws cb::Error naming the node when its codes shape is not static.
int lower_codebooks(Graph& g);

// lower_codebooks as a pass ("lower-codebook"); lowered() counts the nodes.
class LowerCodebookPass : public Pass {
 public:
  std::string name() const override { return "lower-codebook"; }
  bool run(Graph& g) override {
    lowered_ = lower_codebooks(g);
    return lowered_ > 0;
  }
  int lowered() const { return lowered_; }

 private:
  int lowered_ = 0;
};

}  // namespace cb
