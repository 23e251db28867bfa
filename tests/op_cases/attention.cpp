// codebook.Attention (ir/attention.h). The cpu kernel
// (backends/cpu/attention_kernel.cpp) against the reference on random Q, K,
// V and the masks exporters build: causal, local windows, left padding
// (fully masked rows, recomputed exactly: uniform with the lowest float, NaN
// or 0 with -inf), moderate mask values that skip nothing, masks broadcast
// over heads, rows or keys, Kt/V shared by the heads, no mask, more keys
// than queries; T not a multiple of the 32-row blocks or 64-key blocks, head
// sizes 16/64 and a value size that is not a multiple of 8, more (b, h, row
// block) tasks than threads.
#include "ir/attention.h"

#include <limits>
#include <sstream>

#include "ir/codebook.h"
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

OpCase attention(const std::string& name, int64_t B, int64_t H, int64_t T, int64_t S, int64_t dh, int64_t dv,
                 float scale) {
  return OpCase(name, kAttentionOp, kCodebookDomain)
      .attr("scale", scale)
      .in({B, H, T, dh}, uniform(-1, 1))
      .in({B, H, dh, S}, uniform(-1, 1))
      .in({B, H, S, dv}, uniform(-1, 1))
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
  return v;
}

const RegisterOpCases kRegistered(attention_cases());

}  // namespace
}  // namespace cb::test
