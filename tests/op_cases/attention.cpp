// codebook.Attention (ir/attention.h). The cpu kernel
// (backends/cpu/attention_kernel.cpp) against the reference on random Q, K,
// V and the masks exporters build: causal, local windows, left padding
// (fully masked rows, recomputed exactly: uniform with the lowest float, NaN
// or 0 with -inf), moderate mask values that skip nothing, masks broadcast
// over heads, rows or keys, Kt/V shared by the heads, no mask, more keys
// than queries; T not a multiple of the 32-row blocks or 64-key blocks, head
// sizes 16/64 and a value size that is not a multiple of 8, more (b, h, row
// block) tasks than threads; the layout attributes (inputs and output as
// rows of wider tensors, keys as rows), an inf in V behind the mask, and
// cached keys and values before the new ones (a decode step, a chunk
// straddling the cache's end, shared by the heads).
#include "ir/attention.h"

#include <limits>
#include <sstream>

#include "ir/codebook.h"
#include "ir/ops/grad.h"
#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

constexpr float kLowest = std::numeric_limits<float>::lowest();
constexpr float kInf = std::numeric_limits<float>::infinity();

// [B, 1, T, S]: 0 where query i (at position S - T + i) may see key j, else
// `masked`: keys after the query, `window` keys back or more (0: global),
// the first pad[b] keys of batch row b (left padding).
Tensor causal_mask(int64_t B, int64_t T, int64_t S, int64_t window, std::vector<int64_t> pad, float masked) {
  pad.resize(size_t(B), 0);
  std::vector<float> m;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < S; ++j) {
        const int64_t pos = S - T + i;
        const bool keep = j <= pos && (window == 0 || j > pos - window) && j >= pad[size_t(b)];
        m.push_back(keep ? 0.f : masked);
      }
  return Tensor::from_vector(m, {B, 1, T, S});
}

// [B, 1, T, P + T] over [cached | new] keys, for T new queries after
// `past` valid cached positions of a cache of P slots: a query sees the
// valid cached keys and the new keys up to itself; cache slots at or after
// `past` are masked (kv_cache.h's layout).
Tensor cached_mask(int64_t B, int64_t T, int64_t P, int64_t past) {
  std::vector<float> m;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < P + T; ++j) m.push_back((j < P ? j < past : j - P <= i) ? 0.f : kLowest);
  return Tensor::from_vector(m, {B, 1, T, P + T});
}

// Attention over P cached keys and values (inputs 4 and 5) and T new ones,
// the new keys given as rows ([B, H, T, dh], k_perm) where `key_rows`.
OpCase cached_attention(const std::string& name, int64_t B, int64_t H, int64_t T, int64_t P, int64_t past, int64_t dh,
                        float scale, bool key_rows = false) {
  OpCase c(name, kAttentionOp, kCodebookDomain);
  if (key_rows) c.attr("k_perm", std::vector<int64_t>{0, 1, 3, 2});
  return c.attr("scale", scale)
      .in({B, H, T, dh}, uniform(-1, 1))
      .in(key_rows ? Dims{B, H, T, dh} : Dims{B, H, dh, T}, uniform(-1, 1))
      .in({B, H, T, dh}, uniform(-1, 1))
      .given(cached_mask(B, T, P, past))
      .in({B, H, dh, P}, uniform(-1, 1))
      .in({B, H, P, dh}, uniform(-1, 1))
      .tol(abs_rel(1e-5, 1e-5));
}

// V [1, 2, 20, 16], uniform in [-1, 1] but for an inf at element 3 of each
// head's last key.
Tensor values_with_inf_at_last_key(std::mt19937& rng) {
  Tensor t = Tensor::zeros(DType::f32, {1, 2, 20, 16});
  std::uniform_real_distribution<float> u(-1, 1);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  for (int64_t h = 0; h < 2; ++h) p[(h * 20 + 19) * 16 + 3] = kInf;
  return t;
}

OpCase attention(const std::string& name, int64_t B, int64_t H, int64_t T, int64_t S, int64_t dh, int64_t dv,
                 float scale) {
  return OpCase(name, kAttentionOp, kCodebookDomain)
      .attr("scale", scale)
      .in({B, H, T, dh}, uniform(-1, 1))
      .in({B, H, dh, S}, uniform(-1, 1))
      .in({B, H, S, dv}, uniform(-1, 1))
      .tol(abs_rel(1e-5, 1e-5));
}

// An Attention case whose Q, K, V and output are [B, T, H, d] rows (the
// layout passes/fold_attention_layouts.h gives the exports' attention).
OpCase rows_layout(const std::string& name, float scale) {
  const std::vector<int64_t> heads_of_rows = {0, 2, 1, 3};
  return OpCase(name, kAttentionOp, kCodebookDomain)
      .attr("scale", scale)
      .attr("q_perm", heads_of_rows)
      .attr("k_perm", std::vector<int64_t>{0, 2, 3, 1})
      .attr("v_perm", heads_of_rows)
      .attr("out_perm", heads_of_rows)
      .tol(abs_rel(1e-5, 1e-5));
}

std::vector<OpCase> attention_cases() {
  std::vector<OpCase> v;
  v.push_back(attention("Attention_causal_T37_dh16", 2, 3, 37, 37, 16, 16, 0.25f)
                  .given(causal_mask(2, 37, 37, 0, {}, kLowest)));
  v.push_back(attention("Attention_window8_T70_dh64", 1, 2, 70, 70, 64, 64, 0.125f)
                  .given(causal_mask(1, 70, 70, 8, {}, kLowest)));
  v.push_back(attention("Attention_causal_T130_dh64_many_tasks", 2, 6, 130, 130, 64, 64, 0.125f)
                  .given(causal_mask(2, 130, 130, 0, {}, kLowest)));
  // Left padding: rows before the padding's end see no key; the lowest float
  // makes them uniform over every key, -inf makes them NaN (or 0).
  v.push_back(attention("Attention_left_padding_lowest", 3, 2, 40, 40, 16, 16, 0.25f)
                  .given(causal_mask(3, 40, 40, 0, {0, 5, 11}, kLowest)));
  v.push_back(attention("Attention_left_padding_neg_inf_nan", 2, 2, 16, 16, 16, 16, 0.25f)
                  .given(causal_mask(2, 16, 16, 0, {0, 5}, -kInf)));
  v.push_back(attention("Attention_left_padding_neg_inf_nan_to_zero", 2, 2, 16, 16, 16, 16, 0.25f)
                  .attr("nan_to_zero", int64_t(1))
                  .given(causal_mask(2, 16, 16, 0, {0, 5}, -kInf)));
  // -10000 (older exporters): nothing counts as masked, nothing is skipped.
  v.push_back(
      attention("Attention_mask_minus_1e4", 1, 2, 33, 33, 16, 16, 0.25f).given(causal_mask(1, 33, 33, 0, {}, -1e4f)));
  // The last queries of a longer sequence (S > T), local window; value size 24.
  v.push_back(attention("Attention_window_S_gt_T_dv24", 2, 2, 5, 67, 16, 24, 0.25f)
                  .given(causal_mask(2, 5, 67, 20, {}, kLowest)));
  v.push_back(attention("Attention_no_mask", 2, 3, 9, 70, 16, 12, 0.3f).omitted());
  // Kt and V shared by the heads, a [T, S] mask.
  v.push_back(OpCase("Attention_shared_kv_rank2_mask", kAttentionOp, kCodebookDomain)
                  .attr("scale", 0.25f)
                  .in({2, 3, 19, 16}, uniform(-1, 1))
                  .in({2, 1, 16, 19}, uniform(-1, 1))
                  .in({2, 1, 19, 16}, uniform(-1, 1))
                  .given(causal_mask(1, 19, 19, 0, {}, kLowest).reshaped({19, 19}))
                  .tol(abs_rel(1e-5, 1e-5)));
  // A mask broadcast along the keys ([B, H, T, 1]: a per-row offset) and a
  // random additive mask with a per-head dim.
  v.push_back(attention("Attention_row_mask", 1, 2, 11, 11, 16, 16, 0.5f).in({1, 2, 11, 1}, uniform(-2, 2)));
  v.push_back(attention("Attention_random_mask", 2, 2, 13, 21, 16, 8, 0.5f).in({1, 2, 13, 21}, uniform(-3, 3)));
  // Layouts (ir/attention.h, what passes/fold_attention_layouts.h writes).
  // GPT-2's fused QKV rows: each input [B, T, 3H, dh], heads at offsets 0, H,
  // 2H, output [B, T, H, dv]; left padding, more than one key block.
  v.push_back(rows_layout("Attention_layout_heads_of_qkv_rows", 0.25f)
                  .attr("num_heads", int64_t(3))
                  .attr("head_offsets", std::vector<int64_t>{0, 3, 6})
                  .in({2, 70, 9, 16}, uniform(-1, 1))
                  .in({2, 70, 9, 16}, uniform(-1, 1))
                  .in({2, 70, 9, 16}, uniform(-1, 1))
                  .given(causal_mask(2, 70, 70, 0, {0, 9}, kLowest)));
  // GPT-NeoX's keys [B, H, S, dh] (its Kt a Transpose of them), head size 12
  // (not a multiple of the 8 x 8 transposes).
  v.push_back(OpCase("Attention_layout_key_rows_dh12", kAttentionOp, kCodebookDomain)
                  .attr("scale", 0.3f)
                  .attr("k_perm", std::vector<int64_t>{0, 1, 3, 2})
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .given(causal_mask(1, 70, 70, 0, {}, kLowest))
                  .tol(abs_rel(1e-5, 1e-5)));
  // GPT-Neo's separate projections as rows [B, T, H, d], a local window,
  // S > T, value size 24.
  v.push_back(rows_layout("Attention_layout_rows_window_dv24", 0.125f)
                  .in({2, 5, 2, 64}, uniform(-1, 1))
                  .in({2, 67, 2, 64}, uniform(-1, 1))
                  .in({2, 67, 2, 24}, uniform(-1, 1))
                  .given(causal_mask(2, 5, 67, 20, {}, kLowest)));
  // Cached keys and values (a kv-cache graph's attention): one decode step
  // (cache slots after the valid ones masked), and a chunk of new tokens
  // whose key blocks straddle the cache's end (67 slots: not a multiple of
  // the 8 x 8 transposes nor of the 64-key blocks) with new keys as rows.
  v.push_back(cached_attention("Attention_cached_decode_step", 1, 3, 1, 40, 29, 16, 0.25f));
  v.push_back(cached_attention("Attention_cached_chunk_key_rows", 2, 2, 37, 67, 50, 16, 0.25f, true));
  // Cached keys and values shared by the heads, and no mask.
  v.push_back(OpCase("Attention_cached_shared_heads_no_mask", kAttentionOp, kCodebookDomain)
                  .attr("scale", 0.3f)
                  .in({1, 2, 3, 16}, uniform(-1, 1))
                  .in({1, 2, 16, 3}, uniform(-1, 1))
                  .in({1, 2, 3, 8}, uniform(-1, 1))
                  .omitted()
                  .in({1, 1, 16, 70}, uniform(-1, 1))
                  .in({1, 1, 70, 8}, uniform(-1, 1))
                  .tol(abs_rel(1e-5, 1e-5)));
  // Fewer rows than are worth packing keys for, keys as rows, a per-row
  // mask broadcast along the keys.
  v.push_back(OpCase("Attention_few_rows_key_rows_row_mask", kAttentionOp, kCodebookDomain)
                  .attr("scale", 0.3f)
                  .attr("k_perm", std::vector<int64_t>{0, 1, 3, 2})
                  .in({1, 2, 2, 12}, uniform(-1, 1))
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .in({1, 2, 2, 1}, uniform(-2, 2))
                  .tol(abs_rel(1e-5, 1e-5)));
  // An inf in V at the last key: causal rows before it give it probability 0
  // and stay finite (recomputed exactly), the last row sees it.
  v.push_back(attention("Attention_inf_value_at_masked_key", 1, 2, 20, 20, 16, 16, 0.25f)
                  .given(causal_mask(1, 20, 20, 0, {}, kLowest)));
  v.back().inputs[2].make = values_with_inf_at_last_key;
  // The gradient rule (one AttentionGrad node) against finite differences,
  // in f32 (the op is f32 only): causal, and Kt shared by the heads under a
  // [T, S] mask (its gradient summed back over the heads).
  v.push_back(attention("Attention_grad_causal", 2, 2, 5, 5, 4, 3, 0.5f)
                  .given(causal_mask(2, 5, 5, 0, {}, kLowest))
                  .gradient_in(DType::f32, 1e-2, 1e-2));
  v.push_back(OpCase("Attention_grad_shared_keys_rank2_mask", kAttentionOp, kCodebookDomain)
                  .attr("scale", 0.7f)
                  .in({1, 2, 4, 3}, uniform(-1, 1))
                  .in({1, 1, 3, 6}, uniform(-1, 1))
                  .in({1, 2, 6, 2}, uniform(-1, 1))
                  .given(causal_mask(1, 4, 6, 0, {}, kLowest).reshaped({4, 6}))
                  .tol(abs_rel(1e-5, 1e-5))
                  .gradient_in(DType::f32, 1e-2, 1e-2));
  // With the layouts the training graph folds (train/training_graph.cpp):
  // Q, K, V and the output as [B, T, H, d] rows (GPT-2, GPT-Neo), and keys
  // as rows [B, H, S, dh] (GPT-NeoX): AttentionGrad reads and writes them.
  v.push_back(rows_layout("Attention_grad_rows_layout", 0.5f)
                  .in({2, 5, 2, 4}, uniform(-1, 1))
                  .in({2, 5, 2, 4}, uniform(-1, 1))
                  .in({2, 5, 2, 3}, uniform(-1, 1))
                  .given(causal_mask(2, 5, 5, 0, {}, kLowest))
                  .gradient_in(DType::f32, 1e-2, 1e-2));
  v.push_back(OpCase("Attention_grad_key_rows", kAttentionOp, kCodebookDomain)
                  .attr("scale", 0.6f)
                  .attr("k_perm", std::vector<int64_t>{0, 1, 3, 2})
                  .in({1, 2, 5, 4}, uniform(-1, 1))
                  .in({1, 2, 5, 4}, uniform(-1, 1))
                  .in({1, 2, 5, 3}, uniform(-1, 1))
                  .given(causal_mask(1, 5, 5, 0, {}, kLowest))
                  .tol(abs_rel(1e-5, 1e-5))
                  .gradient_in(DType::f32, 1e-2, 1e-2));
  return v;
}

// codebook.grad.AttentionGrad(dy, Q, Kt, V, mask?): the cpu kernel
// (backends/cpu/attention_grad_kernel.cpp) against the reference on the
// masks of the forward cases: causal with T not a multiple of the 16-row
// blocks nor of the 16-column tiles, more heads than threads, a local window,
// no mask with S > T, a mild mask that skips nothing, fully masked rows (the
// reference's heads: uniform rows, NaN rows, NaN rows dropped by
// nan_to_zero), Kt and V shared by the heads, an inf in V behind the mask,
// and the layouts of the training graph.
OpCase attention_grad(const std::string& name, int64_t B, int64_t H, int64_t T, int64_t S, int64_t dh, int64_t dv,
                      float scale) {
  return OpCase(name, kAttentionGradOp, kGradDomain)
      .attr("scale", scale)
      .in({B, H, T, dv}, uniform(-1, 1))
      .in({B, H, T, dh}, uniform(-1, 1))
      .in({B, H, dh, S}, uniform(-1, 1))
      .in({B, H, S, dv}, uniform(-1, 1))
      .outs({true, true, true})
      .tol(near_rms(2e-5));
}

std::vector<OpCase> attention_grad_cases() {
  std::vector<OpCase> v;
  v.push_back(attention_grad("AttentionGrad_causal_T37_dh16", 2, 3, 37, 37, 16, 16, 0.25f)
                  .given(causal_mask(2, 37, 37, 0, {}, kLowest)));
  v.push_back(attention_grad("AttentionGrad_causal_T130_dh64_many_heads", 2, 6, 130, 130, 64, 64, 0.125f)
                  .given(causal_mask(2, 130, 130, 0, {}, kLowest)));
  v.push_back(attention_grad("AttentionGrad_window8_T70_dh32", 1, 2, 70, 70, 32, 32, 0.2f)
                  .given(causal_mask(1, 70, 70, 8, {}, kLowest)));
  v.push_back(attention_grad("AttentionGrad_no_mask_S_gt_T_dv12", 2, 3, 9, 70, 16, 12, 0.3f));
  v.push_back(attention_grad("AttentionGrad_mask_minus_1e4", 1, 2, 33, 33, 16, 16, 0.25f)
                  .given(causal_mask(1, 33, 33, 0, {}, -1e4f)));
  v.push_back(attention_grad("AttentionGrad_left_padding_lowest", 3, 2, 40, 40, 16, 16, 0.25f)
                  .given(causal_mask(3, 40, 40, 0, {0, 5, 11}, kLowest)));
  v.push_back(attention_grad("AttentionGrad_left_padding_neg_inf_nan_to_zero", 2, 2, 16, 16, 16, 16, 0.25f)
                  .attr("nan_to_zero", int64_t(1))
                  .given(causal_mask(2, 16, 16, 0, {0, 5}, -kInf)));
  v.push_back(attention_grad("AttentionGrad_random_mask_dv8", 2, 2, 13, 21, 16, 8, 0.5f)
                  .given(causal_mask(2, 13, 21, 0, {}, kLowest)));
  v.push_back(OpCase("AttentionGrad_shared_kv_rank2_mask", kAttentionGradOp, kGradDomain)
                  .attr("scale", 0.25f)
                  .in({2, 3, 19, 16}, uniform(-1, 1))
                  .in({2, 3, 19, 16}, uniform(-1, 1))
                  .in({2, 1, 16, 19}, uniform(-1, 1))
                  .in({2, 1, 19, 16}, uniform(-1, 1))
                  .given(causal_mask(1, 19, 19, 0, {}, kLowest).reshaped({19, 19}))
                  .outs({true, true, true})
                  .tol(near_rms(2e-5)));
  // (The last row's gradients are NaN: an element-wise tolerance, not one
  // relative to the rms.)
  v.push_back(attention_grad("AttentionGrad_inf_value_at_masked_key", 1, 2, 20, 20, 16, 16, 0.25f)
                  .given(causal_mask(1, 20, 20, 0, {}, kLowest))
                  .tol(abs_rel(1e-6, 1e-4)));
  v.back().inputs[3].make = values_with_inf_at_last_key;
  // Layouts: dy, Q, K, V and the gradients as [B, T, H, d] rows (the causal
  // half over several 16-row blocks, T not a multiple of them), and keys as
  // rows [B, H, S, dh] with a head size not a multiple of the 8 x 8 transposes.
  const std::vector<int64_t> heads_of_rows = {0, 2, 1, 3};
  v.push_back(OpCase("AttentionGrad_rows_layout_T37", kAttentionGradOp, kGradDomain)
                  .attr("scale", 0.25f)
                  .attr("q_perm", heads_of_rows)
                  .attr("k_perm", std::vector<int64_t>{0, 2, 3, 1})
                  .attr("v_perm", heads_of_rows)
                  .attr("out_perm", heads_of_rows)
                  .in({2, 37, 3, 24}, uniform(-1, 1))
                  .in({2, 37, 3, 16}, uniform(-1, 1))
                  .in({2, 37, 3, 16}, uniform(-1, 1))
                  .in({2, 37, 3, 24}, uniform(-1, 1))
                  .given(causal_mask(2, 37, 37, 0, {}, kLowest))
                  .outs({true, true, true})
                  .tol(near_rms(2e-5)));
  v.push_back(OpCase("AttentionGrad_key_rows_dh12", kAttentionGradOp, kGradDomain)
                  .attr("scale", 0.3f)
                  .attr("k_perm", std::vector<int64_t>{0, 1, 3, 2})
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .in({1, 2, 70, 12}, uniform(-1, 1))
                  .given(causal_mask(1, 70, 70, 0, {}, kLowest))
                  .outs({true, true, true})
                  .tol(near_rms(2e-5)));
  return v;
}

const RegisterOpCases kRegistered(attention_cases());
const RegisterOpCases kRegisteredGrad(attention_grad_cases());

}  // namespace
}  // namespace cb::test
