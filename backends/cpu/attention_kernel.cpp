// Fast CPU kernel of codebook.Attention (contract in ir/attention.h; the
// reference kernel in backends/reference/attention.cpp is its oracle).
//
// Work split: every (b, h, block of kRows query rows) is one task of
// parallel_chunks (support/threads.h); a task's result does not depend on
// the thread count. A task
//  1. finds each row's live keys from the mask: the first and last key whose
//     mask entry is above kAttentionMasked (all keys without a mask). Keys
//     outside [first, last] and masked keys inside it count as -inf: for a
//     masked key scale * s + m rounds to m <= -1e30, whose exp relative to a
//     row maximum >= kLiveRowMax is exactly 0. The causal upper triangle and
//     the keys left of a local window are so never scored;
//  2. walks the union of its rows' live ranges in blocks of kKeys keys: a
//     register-tiled microkernel computes the [rows x keys] score tile
//     (kTileRows rows x 2 vectors of keys, from the block's Kt columns packed
//     contiguously), then each row scales it, adds the mask, and updates its running
//     maximum, its sum of exp and its output accumulator (rescaled by
//     exp(old max - new max)), adding p_j V[j, :] vectorised along dv;
//  3. divides by the sum. A row with no live key, with a maximum below
//     kLiveRowMax (every live key nearly masked: skipping would not be exact)
//     or with a NaN or infinite sum is recomputed by the reference row
//     (attention_row_reference), which reproduces the unfused graph: e.g. the
//     uniform or NaN rows of fully masked (left-padded) query positions.
// Vectors are simd::Vec (backends/cpu/vec_math.h: 8 lanes with AVX2, one
// float in portable builds); exp is simd::exp_approx (< 1 ulp).
#include "backends/cpu/attention_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/cpu/vec_math.h"
#include "backends/reference/attention.h"
#include "ir/codebook.h"
#include "support/threads.h"

namespace cb {

namespace {

using namespace simd;

constexpr int64_t kRows = 32;              // query rows per task
constexpr int64_t kKeys = 64;              // keys per block: the score tile is kRows x kKeys
constexpr int64_t kTileRows = 4;           // rows of the microkernel's register tile
constexpr int64_t kTileKeys = 2 * kWidth;  // keys of the register tile
constexpr float kLiveRowMax = -1e29f;      // a row maximum below this is recomputed exactly
constexpr int64_t kMinParallelFlops = 1 << 20;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Vec load_n(const float* p, int64_t n) { return n >= kWidth ? load(p) : load_partial(p, n); }
void store_n(float* p, Vec x, int64_t n) {
  if (n >= kWidth)
    store(p, x);
  else
    store_partial(p, x, n);
}

// scores[r][j] = sum_e q_r[e] kt[e][j] for R rows and n <= kTileKeys keys;
// kt points at the block's first key, rows of Kt `ld` apart.
template <int R>
void score_tile(const float* const* q, int64_t dh, const float* kt, int64_t ld, int64_t n, float* scores,
                int64_t ld_scores) {
  Vec acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = splat(0.f);
  const int64_t n0 = std::min(n, kWidth), n1 = n - n0;
  for (int64_t e = 0; e < dh; ++e) {
    const float* k = kt + e * ld;
    const Vec k0 = load_n(k, n0);
    const Vec k1 = n1 > 0 ? load_n(k + kWidth, n1) : splat(0.f);
    for (int r = 0; r < R; ++r) {
      const Vec qe = splat(q[r][e]);
      acc[r][0] = madd(qe, k0, acc[r][0]);
      acc[r][1] = madd(qe, k1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    store_n(scores + r * ld_scores, acc[r][0], n0);
    if (n1 > 0) store_n(scores + r * ld_scores + kWidth, acc[r][1], n1);
  }
}

// The score tile of `rows` rows (<= kRows) and `n` keys (<= kKeys).
void score_block(const float* const* q, int64_t rows, int64_t dh, const float* kt, int64_t ld, int64_t n,
                 float* scores) {
  for (int64_t j = 0; j < n; j += kTileKeys) {
    const int64_t nj = std::min(kTileKeys, n - j);
    int64_t r = 0;
    for (; r + kTileRows <= rows; r += kTileRows)
      score_tile<kTileRows>(q + r, dh, kt + j, ld, nj, scores + r * kKeys + j, kKeys);
    for (; r < rows; ++r) score_tile<1>(q + r, dh, kt + j, ld, nj, scores + r * kKeys + j, kKeys);
  }
}

// acc[0, ne) += sum_{j in [from, to)} p[j] v[j * ld, 0..ne) with NV vectors
// of accumulators held in registers (ne <= NV * kWidth).
template <int NV>
void accumulate_pv(const float* p, int64_t from, int64_t to, const float* v, int64_t ld, int64_t ne, float* acc) {
  Vec a[NV];
  for (int k = 0; k < NV; ++k) a[k] = load_n(acc + k * kWidth, ne - k * kWidth);
  for (int64_t j = from; j < to; ++j) {
    if (p[j] == 0.f) continue;  // a masked key: nothing to add
    const Vec pj = splat(p[j]);
    const float* vr = v + j * ld;
    for (int k = 0; k < NV; ++k) a[k] = madd(pj, load_n(vr + k * kWidth, ne - k * kWidth), a[k]);
  }
  for (int k = 0; k < NV; ++k) store_n(acc + k * kWidth, a[k], ne - k * kWidth);
}

constexpr int64_t kPvChunk = 8 * kWidth;  // dv handled per accumulate_pv call
using PvKernel = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*);
constexpr PvKernel kPvKernels[] = {accumulate_pv<1>, accumulate_pv<2>, accumulate_pv<3>, accumulate_pv<4>,
                                   accumulate_pv<5>, accumulate_pv<6>, accumulate_pv<7>, accumulate_pv<8>};

// One row's state across key blocks.
struct RowState {
  int64_t lo = 0, hi = 0;  // live keys [lo, hi); lo == hi: none
  float max = kNegInf, sum = 0;
};

// Scratch of one task, reused by the tasks a thread runs.
struct Scratch {
  std::vector<float> scores, acc, mask_row, kt_pack;
  std::vector<RowState> rows;
};

// Keys of row i whose mask entry is above kAttentionMasked: [lo, hi).
void live_range(const AttentionCall& c, const float* m, RowState& st) {
  const int64_t S = c.d.S;
  if (!m) {
    st.lo = 0;
    st.hi = S;
    return;
  }
  int64_t lo = 0, hi = S;
  while (lo < S && !(m[lo * c.m_j] > kAttentionMasked)) ++lo;
  while (hi > lo && !(m[(hi - 1) * c.m_j] > kAttentionMasked)) --hi;
  st.lo = lo;
  st.hi = hi;
}

// Row r of a block of n keys from j0: x = scale * s + m (-inf where masked
// or outside the row's live range), then the online-softmax update of the
// row's state and accumulator. `m` is the row's mask, contiguous along the keys.
void update_row(const AttentionCall& c, RowState& st, float* s, const float* m, int64_t j0, int64_t n, const float* v,
                float* acc) {
  const int64_t from = std::max<int64_t>(st.lo - j0, 0), to = std::min<int64_t>(st.hi - j0, n);
  if (from >= to) return;
  const Vec scale = splat(c.scale), neg_inf = splat(kNegInf), masked = splat(kAttentionMasked);
  // x = scale * s + m (-inf where m masks), and the block's maximum; lanes
  // past `to` are computed but neither stored nor counted.
  float lanes[kWidth];
  Vec vmax = neg_inf;
  for (int64_t j = from; j < to; j += kWidth) {
    const int64_t w = std::min(kWidth, to - j);
    Vec x = load_n(s + j, w) * scale;
    if (m) {
      const Vec mv = load_n(m + j0 + j, w);
      x = select(greater_equal(masked, mv), neg_inf, x + mv);
    }
    store_n(s + j, x, w);
    if (w == kWidth) {
      vmax = max_or_nan(vmax, x);
    } else {
      store(lanes, x);
      for (int64_t k = 0; k < w; ++k) vmax = max_or_nan(vmax, splat(lanes[k]));
    }
  }
  store(lanes, vmax);
  float block_max = kNegInf;
  for (float l : lanes) block_max = l > block_max ? l : block_max;
  const float new_max = std::max(st.max, block_max);
  if (new_max == kNegInf) return;  // nothing live yet
  const int64_t dv = c.d.dv;
  if (new_max > st.max) {
    const float corr = st.max == kNegInf ? 0.f : std::exp(st.max - new_max);
    st.sum *= corr;
    const Vec cv = splat(corr);
    for (int64_t e = 0; e < dv; e += kWidth) {
      const int64_t w = std::min(kWidth, dv - e);
      store_n(acc + e, load_n(acc + e, w) * cv, w);
    }
    st.max = new_max;
  }
  // p = exp(x - max) in place, and their sum (a NaN x makes it NaN).
  const Vec mx = splat(new_max);
  Vec vsum = splat(0.f);
  float sum = 0;
  for (int64_t j = from; j < to; j += kWidth) {
    const int64_t w = std::min(kWidth, to - j);
    const Vec p = exp_approx(load_n(s + j, w) - mx);
    store_n(s + j, p, w);
    if (w == kWidth) {
      vsum = vsum + p;
    } else {
      for (int64_t k = 0; k < w; ++k) sum += s[j + k];
    }
  }
  store(lanes, vsum);
  for (float l : lanes) sum += l;
  st.sum += sum;
  // acc += sum_j p_j V[j0 + j, :], up to 8 vectors of dv at a time in registers.
  for (int64_t e0 = 0; e0 < dv; e0 += kPvChunk) {
    const int64_t ne = std::min(kPvChunk, dv - e0);
    kPvKernels[(ne + kWidth - 1) / kWidth - 1](s, from, to, v + j0 * dv + e0, dv, ne, acc + e0);
  }
}

// Rows [i0, i1) of head (b, h).
void attention_task(const AttentionCall& c, int64_t b, int64_t h, int64_t i0, int64_t i1, Scratch& sc) {
  const AttentionDims& d = c.d;
  const int64_t rows = i1 - i0;
  sc.scores.resize(size_t(kRows * kKeys));
  sc.kt_pack.resize(size_t(d.dh * kKeys));
  sc.acc.assign(size_t(rows * d.dv), 0.f);
  sc.rows.assign(size_t(rows), RowState{});
  const float* kt = c.kt_head(b, h);
  const float* v = c.v_head(b, h);
  const float* q[kRows];
  const float* masks[kRows];
  const bool contiguous_mask = c.m_j == 1;
  if (c.mask && !contiguous_mask) sc.mask_row.resize(size_t(rows * d.S));
  int64_t lo = d.S, hi = 0;
  for (int64_t r = 0; r < rows; ++r) {
    q[r] = c.q_row(b, h, i0 + r);
    const float* m = c.mask_row(b, h, i0 + r);
    if (m && !contiguous_mask) {  // a mask broadcast along the keys: one contiguous copy
      float* copy = sc.mask_row.data() + r * d.S;
      for (int64_t j = 0; j < d.S; ++j) copy[j] = m[j * c.m_j];
      m = copy;
    }
    masks[r] = m;
    RowState& st = sc.rows[size_t(r)];
    live_range(c, m, st);
    if (st.lo < st.hi) {
      lo = std::min(lo, st.lo);
      hi = std::max(hi, st.hi);
    }
  }
  for (int64_t j0 = lo; j0 < hi; j0 += kKeys) {
    const int64_t n = std::min(kKeys, hi - j0);
    // Rows whose live range meets this block, as one run [r0, r1).
    int64_t r0 = rows, r1 = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const RowState& st = sc.rows[size_t(r)];
      if (st.lo < j0 + n && st.hi > j0) {
        r0 = std::min(r0, r);
        r1 = r + 1;
      }
    }
    if (r0 >= r1) continue;
    // The block's keys packed [dh][kKeys]: Kt's rows are S floats apart, a
    // multiple of 4 KiB for long sequences, which would map every row of the
    // block to the same L1 set.
    float* kp = sc.kt_pack.data();
    for (int64_t e = 0; e < d.dh; ++e) std::memcpy(kp + e * kKeys, kt + e * d.S + j0, size_t(n) * sizeof(float));
    score_block(q + r0, r1 - r0, d.dh, kp, kKeys, n, sc.scores.data() + r0 * kKeys);
    for (int64_t r = r0; r < r1; ++r)
      update_row(c, sc.rows[size_t(r)], sc.scores.data() + r * kKeys, masks[r], j0, n, v, sc.acc.data() + r * d.dv);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const RowState& st = sc.rows[size_t(r)];
    float* out = c.out_row(b, h, i0 + r);
    const bool exact = st.max >= kLiveRowMax && st.sum > 0 && st.sum < std::numeric_limits<float>::infinity();
    if (!exact) {
      attention_row_reference(c, b, h, i0 + r, out);
      continue;
    }
    const float inv = 1.f / st.sum;
    const float* acc = sc.acc.data() + r * d.dv;
    for (int64_t e = 0; e < d.dv; ++e) out[e] = acc[e] * inv;
  }
}

void attention_kernel(KernelContext& ctx) {
  const AttentionCall c = attention_call(ctx);
  const AttentionDims& d = c.d;
  if (d.B == 0 || d.H == 0 || d.T == 0 || d.dv == 0) return;
  if (d.S == 0) {  // no keys: the probs V product over an empty axis is 0, as in the unfused graph
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t h = 0; h < d.H; ++h)
        for (int64_t i = 0; i < d.T; ++i) attention_row_reference(c, b, h, i, c.out_row(b, h, i));
    return;
  }
  const int64_t blocks = (d.T + kRows - 1) / kRows;
  const int64_t tasks = d.B * d.H * blocks;
  const size_t flops = size_t(d.B * d.H) * size_t(d.T) * size_t(d.S) * size_t(d.dh + d.dv);
  parallel_chunks(tasks, flops, size_t(kMinParallelFlops), ctx.num_threads, [&](int64_t begin, int64_t end) {
    thread_local Scratch sc;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t blk = t % blocks, bh = t / blocks;
      const int64_t i0 = blk * kRows;
      attention_task(c, bh / d.H, bh % d.H, i0, std::min(d.T, i0 + kRows), sc);
    }
  });
}

}  // namespace

void register_cpu_attention_kernels(KernelFactoryTable& t) {
  t.add(
      kAttentionOp, [](const Node&) { return make_function_kernel(attention_kernel); }, kCodebookDomain);
}

}  // namespace cb
