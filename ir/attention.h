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
//   layout attrs (passes/fold_attention_layouts.h writes them; defaults: the
//   shapes above), so the head split and merge Transposes and the QKV Split
//   of the exports need not copy:
//            q_perm, k_perm, v_perm  ints[4] (default [0, 1, 2, 3]): the
//                         input as given is P, and the Q, Kt, V above are
//                         Transpose(P, perm), e.g. Q given as [B, T, H, dh]
//                         with q_perm [0, 2, 1, 3]. The head axis stays P's
//                         last: q_perm[3] = v_perm[3] = 3, and k_perm[2] or
//                         k_perm[3] is 3.
//            out_perm     ints[4] (default identity): the output is
//                         Transpose(out, out_perm), e.g. [B, T, H, dv] with
//                         [0, 2, 1, 3]; out_perm[3] = 3.
//            num_heads    int (default 0: H from the inputs' shapes as above)
//            head_offsets ints[3] (default [0, 0, 0]): Q, Kt and V use the
//                         heads [offset, offset + num_heads) of their H axis,
//                         so one [B, T, 3H, dh] view of GPT-2's fused QKV
//                         projection serves as all three inputs. Needs
//                         num_heads; an input with an offset must have at
//                         least offset + num_heads heads.
//   cached keys (optional, both or neither; what passes/kv_cache.h feeds):
//            Kt_past  f32 [B, H, dh, P]   (input 4) keys of P earlier positions
//            V_past   f32 [B, H, P, dv]   (input 5) their values
//            The keys are then [cached | new]: key j < P is Kt_past's column
//            j, key P + j is Kt's column j, likewise the values; S counts
//            both (S = P + Kt's keys) and the mask covers all S.
//   output   f32 [B, H, T, dv] (permuted by out_perm)
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
#include <array>
#include <cstdint>
#include <string>

namespace cb {

inline constexpr const char* kAttentionOp = "Attention";  // in kCodebookDomain (ir/codebook.h)
inline constexpr float kAttentionMasked = -1e30f;

// The dims of one call, from its inputs' shapes (B, H the broadcast sizes;
// S every key, P of them cached).
struct AttentionDims {
  int64_t B = 0, H = 0, T = 0, S = 0, P = 0, dh = 0, dv = 0;
};

// Input indices of the optional inputs.
inline constexpr size_t kAttentionMaskInput = 3, kAttentionPastKeysInput = 4, kAttentionPastValuesInput = 5;

struct Node;

// The layout attributes of one codebook.Attention node.
struct AttentionLayout {
  using Perm = std::array<int64_t, 4>;
  static constexpr Perm kIdentity = {0, 1, 2, 3};
  Perm q_perm = kIdentity, k_perm = kIdentity, v_perm = kIdentity, out_perm = kIdentity;
  int64_t num_heads = 0;
  std::array<int64_t, 3> head_offsets = {0, 0, 0};

  bool is_default() const;
  // perm[i] for input i (0 Q, 1 Kt, 2 V).
  const Perm& perm(size_t input) const { return input == 0 ? q_perm : input == 1 ? k_perm : v_perm; }
};

// The node's layout attributes; a cb::Error naming the node and the
// attribute where they break the rules above (not permutations, the head
// axis moved, offsets without num_heads or negative).
AttentionLayout attention_layout(const Node& n);

}  // namespace cb
