// codebook.Attention: masked scaled dot-product attention as one op, the
// target of the fuse-attention pass (passes/fuse_attention.h).
//
//   inputs   Q     f32 [B, H, T, dh]   queries
//            Kt    f32 [B, H, dh, S]   keys, transposed (as the scores MatMul of
//                                      every exporter reads them)
//            V     f32 [B, H, S, dv]   values
//            mask  f32, optional, broadcastable to [B, H, T, S]: added to the
//                                      scaled scores (0 keeps, a large negative
//                                      value or -inf masks)
//   attrs    scale        float (default 1)
//            nan_to_zero  int 0/1 (default 0): NaN probabilities count as 0
//                         (the Where(IsNaN(p), 0, p) some exporters put after
//                         the Softmax, so fully masked rows give 0, not NaN)
//   output   f32 [B, H, T, dv]
//
//   out[b,h,i,:] = sum_j p[i,j] V[b,h,j,:],
//   p[i,:] = Softmax_j(scale * (Q[b,h,i,:] . Kt[b,h,:,j]) + mask[b,h,i,j])
//
// exactly the Softmax of the ONNX graph it replaces (a row of -inf gives NaN);
// a key whose probability is 0 adds nothing, even where its V row is inf or
// NaN (the unfused MatMul would add 0 * inf = NaN).
// The B and H dims of Q, Kt, V and the mask broadcast (size 1 or the full
// size). A mask entry <= kAttentionMasked (-1e30) absorbs any finite score
// in f32 (scale * s + m rounds to m while |scale * s| < 1e22), so kernels may
// skip the score of such a key; the CPU kernel skips whole blocks of them
// (the causal upper triangle, keys outside a local window), and recomputes
// exactly the rows where that shortcut would not be exact (every key masked).
#pragma once
#include <cstdint>

namespace cb {

inline constexpr const char* kAttentionOp = "Attention";  // in kCodebookDomain (ir/codebook.h)
inline constexpr float kAttentionMasked = -1e30f;

// The dims of one call, from its inputs' shapes (B, H the broadcast sizes).
struct AttentionDims {
  int64_t B = 0, H = 0, T = 0, S = 0, dh = 0, dv = 0;
};

}  // namespace cb
