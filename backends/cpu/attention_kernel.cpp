// Fast CPU kernel of codebook.Attention (contract in ir/attention.h; the
// reference kernel in backends/reference/attention.cpp is its oracle).
//
// Work split: every (b, h, chunk of kTaskRows query rows) is one task of
// parallel_chunks (support/threads.h); a task's result does not depend on
// the thread count. A task
//  1. finds each row's live keys from the mask: the first and last key whose
//     mask entry is above kAttentionMasked (all keys without a mask). Keys
//     outside [first, last] and masked keys inside it count as -inf: for a
//     masked key scale * s + m rounds to m <= -1e30, whose exp relative to a
//     row maximum >= kLiveRowMax is exactly 0. The causal upper triangle and
//     the keys left of a local window are so never scored;
//  2. packs the keys its rows see once, in blocks of kKeys keys [dh][kKeys]
//     (Kt's and Kt_past's columns, or key rows transposed 8 x 8), and the V
//     rows (where they are rows of a wider tensor, as the folded layouts of
//     passes/fold_attention_layouts.h read them, or partly cached);
//  3. for each block of kRows rows, walks the union of their live ranges
//     block by block: a register-tiled microkernel computes the
//     [rows x keys] score tile (kTileRows rows x 2 vectors of keys), each row
//     scales it, adds the mask, updates its running maximum and sum of exp
//     (rescaling its output accumulator by exp(old max - new max)) and
//     leaves its probabilities in the tile, then a second microkernel of the
//     same shape adds P V to the accumulators;
//  4. divides by the sum. A row with no live key, with a maximum below
//     kLiveRowMax (every live key nearly masked: skipping would not be exact),
//     with a NaN or infinite sum, or with a non-finite accumulator (an inf or
//     NaN in V, perhaps at a key of probability 0) is recomputed by the
//     reference row (attention_row_reference), which reproduces the unfused
//     graph: e.g. the uniform or NaN rows of fully masked (left-padded) query
//     positions.
// A task of fewer than kPackRows rows (a decode step's one row) packs
// nothing: each row computes its scores straight from the keys where they lie
// (a cached head's keys are one contiguous [dh][P] block), in runs of key
// blocks, skipping blocks the mask removes whole (unwritten cache slots),
// through the same online softmax and step 4. The work splits over threads
// when the flops or the bytes of keys and values read are large enough.
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

constexpr int64_t kTaskRows = 128;             // query rows per task (their keys packed once)
constexpr int64_t kRows = 32;                  // query rows per block of a task
constexpr int64_t kKeys = 64;                  // keys per block: the score tile is kRows x kKeys
constexpr int64_t kTileRows = 4;               // rows of the microkernels' register tiles (8 accumulators;
                                               // 6 rows measured 1.7x slower)
constexpr int64_t kTileKeys = 2 * kWidth;      // keys of the register tile
constexpr float kLiveRowMax = -1e29f;          // a row maximum below this is recomputed exactly
constexpr int64_t kPackRows = 4;               // fewer rows read the keys and values where they are
constexpr int64_t kMinParallelWork = 1 << 20;  // flops, or bytes of keys and values read
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// scores[r][j] = sum_e q[r][e] kt[e][j] for R rows of q (ldq apart) and n <= kTileKeys keys;
// kt points at the block's first key, rows of Kt `ld` apart.
template <int R>
void score_tile(const float* q, int64_t ldq, int64_t dh, const float* kt, int64_t ld, int64_t n, float* scores,
                int64_t ld_scores) {
  Vec acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = splat(0.f);
  const int64_t n0 = std::min(n, kWidth), n1 = n - n0;
  for (int64_t e = 0; e < dh; ++e) {
    const float* k = kt + e * ld;
    Vec k0 = load_n(k, n0);
    Vec k1 = n1 > 0 ? load_n(k + kWidth, n1) : splat(0.f);
    pin(k0);
    pin(k1);
    for (int r = 0; r < R; ++r) {
      const Vec qe = splat(q[r * ldq + e]);
      acc[r][0] = madd(qe, k0, acc[r][0]);
      acc[r][1] = madd(qe, k1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    store_n(scores + r * ld_scores, acc[r][0], n0);
    if (n1 > 0) store_n(scores + r * ld_scores + kWidth, acc[r][1], n1);
  }
}

// One row's state across key blocks.
struct RowState {
  int64_t lo = 0, hi = 0;  // live keys [lo, hi); lo == hi: none
  float max = kNegInf, sum = 0;
};

// The keys [from, to) of a block of n keys from j0 that some of `rows` rows
// (states st[0, rows)) see: what a register tile of those rows computes.
struct KeyRange {
  int64_t from, to;
};
KeyRange tile_keys(const RowState* st, int64_t rows, int64_t j0, int64_t n) {
  KeyRange k{n, 0};
  for (int64_t t = 0; t < rows; ++t) {
    k.from = std::min(k.from, std::max<int64_t>(st[t].lo - j0, 0));
    k.to = std::max(k.to, std::min<int64_t>(st[t].hi - j0, n));
  }
  return k;
}

// The score tile of `rows` rows (<= kRows) and the keys [j0, j0 + n) (n <=
// kKeys); each group of kTileRows rows stops at the last key one of them
// sees (the causal diagonal), leaving the rest of its tile unwritten.
void score_block(const float* q, int64_t ldq, const RowState* st, int64_t rows, int64_t dh, const float* kt, int64_t ld,
                 int64_t j0, int64_t n, float* scores) {
  for (int64_t r = 0; r < rows; r += kTileRows) {
    const int64_t tile = std::min(kTileRows, rows - r);
    const KeyRange keys = tile_keys(st + r, tile, j0, n);
    for (int64_t j = 0; j < keys.to; j += kTileKeys) {
      const int64_t nj = std::min(kTileKeys, n - j);
      if (tile == kTileRows) {
        score_tile<kTileRows>(q + r * ldq, ldq, dh, kt + j, ld, nj, scores + r * kKeys + j, kKeys);
      } else {
        for (int64_t t = r; t < r + tile; ++t)
          score_tile<1>(q + t * ldq, ldq, dh, kt + j, ld, nj, scores + t * kKeys + j, kKeys);
      }
    }
  }
}

// acc[r][0, ne) += sum_{j in [from, to)} p[r][j] v[j][0, ne) for R rows and
// ne <= kTileKeys columns: the probabilities' register tile, as score_tile.
// p rows are kKeys apart, acc rows ld_acc, v rows ld_v.
template <int R>
void pv_tile(const float* p, int64_t from, int64_t to, const float* v, int64_t ld_v, int64_t ne, float* acc,
             int64_t ld_acc) {
  Vec a[R][2];
  const int64_t n0 = std::min(ne, kWidth), n1 = ne - n0;
  for (int r = 0; r < R; ++r) {
    a[r][0] = load_n(acc + r * ld_acc, n0);
    a[r][1] = n1 > 0 ? load_n(acc + r * ld_acc + kWidth, n1) : splat(0.f);
  }
  for (int64_t j = from; j < to; ++j) {
    const float* vr = v + j * ld_v;
    Vec v0 = load_n(vr, n0);
    Vec v1 = n1 > 0 ? load_n(vr + kWidth, n1) : splat(0.f);
    pin(v0);
    pin(v1);
    for (int r = 0; r < R; ++r) {
      const Vec pj = splat(p[r * kKeys + j]);
      a[r][0] = madd(pj, v0, a[r][0]);
      a[r][1] = madd(pj, v1, a[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    store_n(acc + r * ld_acc, a[r][0], n0);
    if (n1 > 0) store_n(acc + r * ld_acc + kWidth, a[r][1], n1);
  }
}

// kp[e][j] = key j's element e (kp rows kKeys apart) for n keys `ld` apart
// whose elements are `step` apart: 8 x 8 register transposes where the
// elements are contiguous.
void pack_key_rows(const float* key, int64_t ld, int64_t step, int64_t n, int64_t dh, float* kp) {
  int64_t j = 0;
  if (step == 1 && dh % 8 == 0)  // 8 x 8 blocks cover whole keys only when dh is a multiple of 8
    for (; j + 8 <= n; j += 8)
      for (int64_t e = 0; e < dh; e += 8) transpose8x8(key + j * ld + e, ld, kp + e * kKeys + j, kKeys);
  for (; j < n; ++j)
    for (int64_t e = 0; e < dh; ++e) kp[e * kKeys + j] = key[j * ld + e * step];
}

// The keys [j0, j0 + n) of head (b, h) as at most two runs of one layout
// each, the cached ones (below d.P, Kt_past's columns) and the new ones:
// fn(k, k_e, k_s, count, at) for keys [at, at + count) of the range, whose
// key j has its element e at k[e * k_e + j * k_s].
template <typename Fn>
void key_runs(const AttentionCall& c, int64_t b, int64_t h, int64_t j0, int64_t n, Fn&& fn) {
  const int64_t P = c.d.P;
  const int64_t cached = std::clamp<int64_t>(P - j0, 0, n);
  if (cached > 0) fn(c.k_past_head(b, h) + j0, P, int64_t(1), cached, int64_t(0));
  if (cached < n) fn(c.k_head(b, h) + (j0 + cached - P) * c.k_s, c.k_e, c.k_s, n - cached, cached);
}

// Keys [j0, j0 + n) of head (b, h) packed into kp [dh][kKeys].
void pack_keys(const AttentionCall& c, int64_t b, int64_t h, int64_t j0, int64_t n, float* kp) {
  const int64_t dh = c.d.dh;
  key_runs(c, b, h, j0, n, [&](const float* k, int64_t k_e, int64_t k_s, int64_t count, int64_t at) {
    if (k_s == 1) {
      for (int64_t e = 0; e < dh; ++e) std::memcpy(kp + e * kKeys + at, k + e * k_e, size_t(count) * sizeof(float));
    } else {
      pack_key_rows(k, k_s, k_e, count, dh, kp + at);
    }
  });
}

// Scratch of one task, reused by the tasks a thread runs.
struct Scratch {
  std::vector<float> scores, acc, mask_row, kt_pack, v_pack, q_pack;
  std::vector<RowState> rows;
};

// Keys of row i whose mask entry is above kAttentionMasked: [lo, hi).
void live_range(const AttentionCall& c, const float* m, RowState& st) {
  const LiveKeys k = live_keys(m, 1, c.d.S);  // m is contiguous (contiguous_mask_row)
  st.lo = k.lo;
  st.hi = k.hi;
}

// Row r of a block of n keys from j0: x = scale * s + m (-inf where masked
// or outside the row's live range), then the online-softmax update of the
// row's state (its accumulator rescaled to the new maximum). Leaves the
// row's probabilities in s[0, n): exp(x - max), 0 outside the live range.
// `m` is the row's mask, contiguous along the keys. The row is walked in
// whole vectors from [from, to) rounded out to kWidth: s must have room for
// n rounded up to kWidth floats. Lanes outside [from, to) select -inf, whose
// exp is 0.
void softmax_row(const AttentionCall& c, RowState& st, float* s, const float* m, int64_t j0, int64_t n, float* acc) {
  const int64_t from = std::max<int64_t>(st.lo - j0, 0), to = std::min<int64_t>(st.hi - j0, n);
  if (from >= to) {
    std::fill(s, s + n, 0.f);
    return;
  }
  const int64_t from8 = from / kWidth * kWidth, to8 = (to + kWidth - 1) / kWidth * kWidth;
  std::fill(s, s + from8, 0.f);
  if (to8 < n) std::fill(s + to8, s + n, 0.f);
  const Vec scale = splat(c.scale), neg_inf = splat(kNegInf), masked = splat(kAttentionMasked);
  // Pass 1: x and the block's maximum (NaN lanes ignored: their exp makes the sum NaN).
  Vec vmax = neg_inf;
  for (int64_t j = from8; j < to8; j += kWidth) {
    Vec x = load(s + j) * scale;
    if (m) {
      const Vec mv = load_n(m + j0 + j, to - j);  // no read past the row's live keys
      x = select(greater_equal(masked, mv), neg_inf, x + mv);
    }
    if (j < from || j + kWidth > to) x = select(lanes_in(from - j, to - j), x, neg_inf);
    store(s + j, x);
    vmax = max_ignoring_nan(x, vmax);
  }
  const float new_max = std::max(st.max, reduce_max(vmax));
  if (new_max == kNegInf) {  // nothing live yet
    std::fill(s + from8, s + to8, 0.f);
    return;
  }
  const int64_t dv = c.d.dv;
  if (new_max > st.max) {
    if (st.max != kNegInf) {  // before the first live key the accumulator is 0
      const float corr = std::exp(st.max - new_max);
      st.sum *= corr;
      const Vec cv = splat(corr);
      int64_t e = 0;
      for (; e + kWidth <= dv; e += kWidth) store(acc + e, load(acc + e) * cv);
      if (e < dv) store_n(acc + e, load_n(acc + e, dv - e) * cv, dv - e);
    }
    st.max = new_max;
  }
  // Pass 2: p = exp(x - max) in place, and their sum (a NaN x makes it NaN).
  const Vec mx = splat(new_max);
  Vec vsum = splat(0.f);
  for (int64_t j = from8; j < to8; j += kWidth) {
    const Vec p = exp_approx(load(s + j) - mx);
    store(s + j, p);
    vsum = vsum + p;
  }
  st.sum += reduce_add(vsum);
}

// acc[r] += sum_j p[r][j] V[j] for the block's rows [0, rows) (p rows kKeys
// apart, acc rows dv apart), in register tiles of kTileRows rows x
// kTileKeys columns over the keys some row of the tile sees.
void pv_block(const float* p, const RowState* st, int64_t rows, int64_t j0, int64_t n, const float* v, int64_t ld_v,
              int64_t dv, float* acc) {
  for (int64_t r = 0; r < rows; r += kTileRows) {
    const int64_t tile = std::min(kTileRows, rows - r);
    const auto [from, to] = tile_keys(st + r, tile, j0, n);
    if (from >= to) continue;
    for (int64_t e = 0; e < dv; e += kTileKeys) {
      const int64_t ne = std::min(kTileKeys, dv - e);
      if (tile == kTileRows) {
        pv_tile<kTileRows>(p + r * kKeys, from, to, v + e, ld_v, ne, acc + r * dv + e, dv);
      } else {
        for (int64_t t = r; t < r + tile; ++t)
          pv_tile<1>(p + t * kKeys, from, to, v + e, ld_v, ne, acc + t * dv + e, dv);
      }
    }
  }
}

// Output row (b, h, i) = acc / sum, or the reference row where that would
// not be exact (step 4 above).
void finish_row(const AttentionCall& c, const RowState& st, const float* acc, int64_t b, int64_t h, int64_t i) {
  const int64_t dv = c.d.dv;
  float* out = c.out_row(b, h, i);
  // A non-finite accumulator: an inf or NaN in V, which may sit at a key of
  // probability 0 (0 * inf = NaN in the tile, nothing in the graph).
  float finite = 0;
  for (int64_t e = 0; e < dv; ++e) finite += acc[e] * 0.f;
  const bool exact =
      st.max >= kLiveRowMax && st.sum > 0 && st.sum < std::numeric_limits<float>::infinity() && finite == 0;
  if (!exact) {
    attention_row_reference(c, b, h, i, out);
    return;
  }
  const float inv = 1.f / st.sum;
  for (int64_t e = 0; e < dv; ++e) out[e] = acc[e] * inv;
}

// s[j] = q . key j0 + j of head (b, h) for n keys, read where they are.
void row_scores(const AttentionCall& c, int64_t b, int64_t h, const float* q, int64_t j0, int64_t n, float* s) {
  const int64_t dh = c.d.dh;
  key_runs(c, b, h, j0, n, [&](const float* k, int64_t k_e, int64_t k_s, int64_t count, int64_t at) {
    float* out = s + at;
    if (k_s == 1) {  // keys along a contiguous axis: one row of elements at a time
      std::fill(out, out + count, 0.f);
      for (int64_t e = 0; e < dh; ++e) {
        const float qe = q[e];
        const float* row = k + e * k_e;
        for (int64_t j = 0; j < count; ++j) out[j] += qe * row[j];
      }
      return;
    }
    for (int64_t j = 0; j < count; ++j) {
      const float* key = k + j * k_s;
      float dot = 0;
      for (int64_t e = 0; e < dh; ++e) dot += q[e] * key[e * k_e];
      out[j] = dot;
    }
  });
}

// Rows [i0, i1) of head (b, h), fewer than kPackRows (a decode step): each
// row reads the keys and values where they are, which it would read once
// to pack them anyway, block by block through the same online softmax.
void attention_rows_direct(const AttentionCall& c, int64_t b, int64_t h, int64_t i0, int64_t i1, Scratch& sc) {
  const AttentionDims& d = c.d;
  sc.scores.resize(size_t(d.S + kWidth));  // softmax_row walks whole vectors
  sc.acc.resize(size_t(d.dv));
  if (c.mask && c.m_j != 1) sc.mask_row.resize(size_t(d.S));
  float* s = sc.scores.data();
  float* acc = sc.acc.data();
  for (int64_t i = i0; i < i1; ++i) {
    const float* m = contiguous_mask_row(c, b, h, i, sc.mask_row.data());
    RowState st;
    live_range(c, m, st);
    std::fill(acc, acc + d.dv, 0.f);
    const float* q = c.q_row(b, h, i);
    // Runs of key blocks, each read whole (a cached head's keys are one
    // contiguous [dh][P] block); a block of masked keys changes nothing (the
    // cache slots after the valid ones): neither its keys nor its values
    // are read.
    auto masked_block = [&](int64_t j) {
      return m && std::all_of(m + j, m + std::min(j + kKeys, st.hi), [](float x) { return !(x > kAttentionMasked); });
    };
    for (int64_t j0 = st.lo, end; j0 < st.hi; j0 = end) {
      if (masked_block(j0)) {
        end = std::min(j0 + kKeys, st.hi);
        continue;
      }
      end = j0;
      while (end < st.hi && (end == j0 || !masked_block(end))) end = std::min(end + kKeys, st.hi);
      const int64_t n = end - j0;
      row_scores(c, b, h, q, j0, n, s);
      softmax_row(c, st, s, m, j0, n, acc);
      for (int64_t j = 0; j < n; ++j) {
        const float p = s[j];
        if (p == 0.f) continue;
        const float* v = c.value_row(b, h, j0 + j);
        for (int64_t e = 0; e < d.dv; ++e) acc[e] += p * v[e];
      }
    }
    finish_row(c, st, acc, b, h, i);
  }
}

// Rows [i0, i1) of head (b, h), at most kTaskRows: the keys they see are
// packed once, then each block of kRows rows walks them block by block.
void attention_task(const AttentionCall& c, int64_t b, int64_t h, int64_t i0, int64_t i1, Scratch& sc) {
  const AttentionDims& d = c.d;
  const int64_t rows = i1 - i0;
  if (rows < kPackRows) {
    attention_rows_direct(c, b, h, i0, i1, sc);
    return;
  }
  sc.scores.resize(size_t(kRows * kKeys));
  const bool pack_q = c.q_t != d.dh;  // rows of a wider tensor: copied together, off a few L1 sets
  if (pack_q) sc.q_pack.resize(size_t(rows * d.dh));
  sc.acc.assign(size_t(rows * d.dv), 0.f);
  sc.rows.assign(size_t(rows), RowState{});
  // Q's rows [i0, i1): read where they are when contiguous, else copied together.
  const float* q = pack_q ? sc.q_pack.data() : c.q_row(b, h, i0);
  const float* masks[kTaskRows];
  const bool copy_masks = c.mask && c.m_j != 1;
  if (copy_masks) sc.mask_row.resize(size_t(rows * d.S));
  int64_t lo = d.S, hi = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (pack_q) std::memcpy(sc.q_pack.data() + r * d.dh, c.q_row(b, h, i0 + r), size_t(d.dh) * sizeof(float));
    const float* m = contiguous_mask_row(c, b, h, i0 + r, copy_masks ? sc.mask_row.data() + r * d.S : nullptr);
    masks[r] = m;
    RowState& st = sc.rows[size_t(r)];
    live_range(c, m, st);
    if (st.lo < st.hi) {
      lo = std::min(lo, st.lo);
      hi = std::max(hi, st.hi);
    }
  }
  if (lo >= hi) lo = hi = 0;
  // The keys [lo, hi) packed in blocks of [dh][kKeys]: Kt's rows are S
  // floats apart, a multiple of 4 KiB for long sequences, which would map
  // every row of a block to the same L1 set; keys given as rows (a
  // [B, S, H, dh] input) are transposed into it. V rows further apart than a
  // row (read out of wider [B, T, ...] rows), or some cached and some new,
  // are copied together likewise.
  const int64_t key_blocks = (hi - lo + kKeys - 1) / kKeys;
  sc.kt_pack.resize(size_t(key_blocks * d.dh * kKeys));
  for (int64_t kb = 0; kb < key_blocks; ++kb) {
    const int64_t j0 = lo + kb * kKeys;
    pack_keys(c, b, h, j0, std::min(kKeys, hi - j0), sc.kt_pack.data() + kb * d.dh * kKeys);
  }
  const float* vs = c.value_row(b, h, lo);  // V rows [lo, hi), ld_v apart
  int64_t ld_v = hi <= d.P ? d.dv : c.v_s;
  if (lo < d.P ? hi > d.P : c.v_s != d.dv) {
    sc.v_pack.resize(size_t((hi - lo) * d.dv));
    for (int64_t j = lo; j < hi; ++j)
      std::memcpy(sc.v_pack.data() + (j - lo) * d.dv, c.value_row(b, h, j), size_t(d.dv) * sizeof(float));
    vs = sc.v_pack.data();
    ld_v = d.dv;
  }
  for (int64_t rb = 0; rb < rows; rb += kRows) {
    const int64_t block_rows = std::min(kRows, rows - rb);
    for (int64_t kb = 0; kb < key_blocks; ++kb) {
      const int64_t j0 = lo + kb * kKeys, n = std::min(kKeys, hi - j0);
      // Rows of this row block whose live range meets this key block, as one run [r0, r1).
      int64_t r0 = rb + block_rows, r1 = rb;
      for (int64_t r = rb; r < rb + block_rows; ++r) {
        const RowState& st = sc.rows[size_t(r)];
        if (st.lo < j0 + n && st.hi > j0) {
          r0 = std::min(r0, r);
          r1 = r + 1;
        }
      }
      if (r0 >= r1) continue;
      float* scores = sc.scores.data() + (r0 - rb) * kKeys;
      score_block(q + r0 * d.dh, d.dh, sc.rows.data() + r0, r1 - r0, d.dh, sc.kt_pack.data() + kb * d.dh * kKeys, kKeys,
                  j0, n, scores);
      for (int64_t r = r0; r < r1; ++r)
        softmax_row(c, sc.rows[size_t(r)], scores + (r - r0) * kKeys, masks[r], j0, n, sc.acc.data() + r * d.dv);
      pv_block(scores, sc.rows.data() + r0, r1 - r0, j0, n, vs + (j0 - lo) * ld_v, ld_v, d.dv,
               sc.acc.data() + r0 * d.dv);
    }
  }
  for (int64_t r = 0; r < rows; ++r) finish_row(c, sc.rows[size_t(r)], sc.acc.data() + r * d.dv, b, h, i0 + r);
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
  const int64_t blocks = (d.T + kTaskRows - 1) / kTaskRows;
  const int64_t tasks = d.B * d.H * blocks;
  const size_t flops = size_t(d.B * d.H) * size_t(d.T) * size_t(d.S) * size_t(d.dh + d.dv);
  const size_t bytes = size_t(d.B * d.H) * size_t(d.S) * size_t(d.dh + d.dv) * sizeof(float);
  parallel_chunks(tasks, std::max(flops, bytes), size_t(kMinParallelWork), ctx.num_threads,
                  [&](int64_t begin, int64_t end) {
                    thread_local Scratch sc;
                    for (int64_t t = begin; t < end; ++t) {
                      const int64_t blk = t % blocks, bh = t / blocks;
                      const int64_t i0 = blk * kTaskRows;
                      attention_task(c, bh / d.H, bh % d.H, i0, std::min(d.T, i0 + kTaskRows), sc);
                    }
                  });
}

}  // namespace

void register_cpu_attention_kernels(KernelFactoryTable& t) {
  t.add(
      kAttentionOp, [](const Node&) { return make_function_kernel(attention_kernel); }, kCodebookDomain);
}

}  // namespace cb
