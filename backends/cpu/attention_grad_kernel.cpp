// Fast CPU kernel of codebook.grad.AttentionGrad (ir/ops/grad.h): the
// backward of codebook.Attention, in the layouts of its attributes (inputs
// and dy read, gradients written through strides: AttentionGradTensors),
// the reference kernel (backends/reference/attention.cpp) its oracle.
//
// One task per head (b, h), parallel over heads; a task's result does not
// depend on the thread count. A task
//  1. finds each query row's live keys from the mask (live_keys: first and
//     last key whose entry is above kAttentionMasked, as the forward kernel);
//     masked keys count as -inf, so the causal upper triangle is neither
//     scored nor differentiated;
//  2. lays out the head's keys as rows Kr [S][dh] and its values as
//     columns Vt [dv][S] once;
//  3. for each block of kRows query rows, over the union [lo, hi) of their
//     live keys: recomputes the scores S = Q Kt and P = Softmax(scale S +
//     mask) (never stored between forward and backward), dP = dy Vt, and
//     dS = P (dP - rowsum(P dP)) (0 where P is 0, so an inf or NaN value
//     behind the mask passes nothing), then adds dQ = scale dS Kr,
//     dKr += scale dS^T Q and dV += P^T dy;
//  4. writes dKt = dKr^T (dKr's rows where the keys were given as rows).
// Every product is one register-tiled loop (gemm_tile: 4 rows x 2 vectors,
// broadcasts of A times rows of B). A head with a row whose keys are all
// masked, or whose live keys are all nearly masked (a maximum below
// kLiveRowMax, where skipping would not be exact), is computed by the
// reference (attention_grad_head_reference), as the forward kernel
// recomputes such rows.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backends/cpu/attention_kernel.h"
#include "backends/cpu/vec_math.h"
#include "backends/reference/attention.h"
#include "ir/ops/grad.h"
#include "support/threads.h"

namespace cb {

namespace {

using namespace simd;

constexpr int64_t kRows = 16;                  // query rows per block (32: 2-5% slower, more of the triangle)
constexpr int64_t kTileRows = 4;               // rows of the register tile
constexpr int64_t kTileCols = 2 * kWidth;      // columns of the register tile
constexpr float kLiveRowMax = -1e29f;          // as the forward kernel: below it, the reference
constexpr int64_t kMinParallelWork = 1 << 20;  // flops
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// How A(r, k) is stored: rows (A(r, k) = a[r * lda + k]) or columns
// (A(r, k) = a[r + k * lda], the transposed products dS^T Q and P^T dy).
// A compile-time choice, so the tile's addresses are one add per row.
enum class ALayout { rows, columns };

// c[r][0, n) (+)= sum_{k in [k0, k1)} A(r, k) b[k][0, n) for R rows and
// n <= kTileCols (n == kTileCols when `full`: plain loads in the loop); b
// rows ldb apart, c rows ldc apart; `add`: onto c, else into it.
template <ALayout layout, int R, bool full>
void gemm_tile(const float* a, int64_t lda, int64_t k0, int64_t k1, const float* b, int64_t ldb, int64_t n, float* c,
               int64_t ldc, bool add) {
  Vec acc[R][2];
  const int64_t n0 = std::min(n, kWidth), n1 = n - n0;
  for (int r = 0; r < R; ++r) {
    acc[r][0] = add ? load_n(c + r * ldc, n0) : splat(0.f);
    acc[r][1] = add && n1 > 0 ? load_n(c + r * ldc + kWidth, n1) : splat(0.f);
  }
  const float* ar[R];
  for (int r = 0; r < R; ++r) ar[r] = layout == ALayout::rows ? a + r * lda : a + r;
  const int64_t a_k = layout == ALayout::rows ? 1 : lda;
  for (int64_t k = k0; k < k1; ++k) {
    const float* br = b + k * ldb;
    Vec b0 = full ? load(br) : load_n(br, n0);
    Vec b1 = full ? load(br + kWidth) : n1 > 0 ? load_n(br + kWidth, n1) : splat(0.f);
    pin(b0);
    pin(b1);
    for (int r = 0; r < R; ++r) {
      const Vec x = splat(ar[r][k * a_k]);
      acc[r][0] = madd(x, b0, acc[r][0]);
      acc[r][1] = madd(x, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < R; ++r) {
    store_n(c + r * ldc, acc[r][0], n0);
    if (n1 > 0) store_n(c + r * ldc + kWidth, acc[r][1], n1);
  }
}

// C[m][0, n) (+)= sum_{k in [k0, k1)} A(m, k) B[k][0, n) for m in [0, M).
template <ALayout layout>
void gemm(int64_t M, int64_t n, const float* a, int64_t lda, int64_t k0, int64_t k1, const float* b, int64_t ldb,
          float* c, int64_t ldc, bool add) {
  const int64_t step = layout == ALayout::rows ? lda : 1;  // from row m of A to row m + 1
  for (int64_t j = 0; j < n; j += kTileCols) {
    const int64_t nj = std::min(kTileCols, n - j);
    int64_t r = 0;
    if (nj == kTileCols)
      for (; r + kTileRows <= M; r += kTileRows)
        gemm_tile<layout, kTileRows, true>(a + r * step, lda, k0, k1, b + j, ldb, nj, c + r * ldc + j, ldc, add);
    for (; r + kTileRows <= M; r += kTileRows)
      gemm_tile<layout, kTileRows, false>(a + r * step, lda, k0, k1, b + j, ldb, nj, c + r * ldc + j, ldc, add);
    for (; r < M; ++r)
      gemm_tile<layout, 1, false>(a + r * step, lda, k0, k1, b + j, ldb, nj, c + r * ldc + j, ldc, add);
  }
}

// dst[c][r] = src[r][c] for a rows x cols block (src rows lds apart, dst
// rows ldd apart): 8 x 8 register transposes, element by element at the edges.
void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd) {
  const int64_t r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int64_t r0 = 0; r0 < r8; r0 += 8)
    for (int64_t c0 = 0; c0 < c8; c0 += 8) transpose8x8(src + r0 * lds + c0, lds, dst + c0 * ldd + r0, ldd);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = r < r8 ? c8 : 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}

// Key j's gradient, row j of dkr [S, dh], into head (b, h) of t's dKt:
// transposed where Kt's keys are its columns, row by row where keys are
// given as rows.
void write_key_grads(const AttentionGradTensors& t, int64_t b, int64_t h, const float* dkr, int64_t S, int64_t dh) {
  float* out = t.dk_head(b, h);
  if (t.dk_s == 1) return transpose(dkr, dh, S, dh, out, t.dk_e);
  for (int64_t j = 0; j < S; ++j) {
    if (t.dk_e == 1) {
      std::memcpy(out + j * t.dk_s, dkr + j * dh, size_t(dh) * sizeof(float));
      continue;
    }
    for (int64_t e = 0; e < dh; ++e) out[e * t.dk_e + j * t.dk_s] = dkr[j * dh + e];
  }
}

// Scratch of one task, reused by the tasks a thread runs.
struct Scratch {
  std::vector<float> kr, kc, vt, dkr, p, ds, mask_row;
  std::vector<LiveKeys> live;
};

// Each query row's live keys of head (b, h) into `live`; false when a row has none.
bool live_ranges(const AttentionCall& c, int64_t b, int64_t h, std::vector<LiveKeys>& live) {
  live.resize(size_t(c.d.T));
  for (int64_t i = 0; i < c.d.T; ++i) {
    live[size_t(i)] = live_keys(c.mask_row(b, h, i), c.m_j, c.d.S);
    if (live[size_t(i)].lo == live[size_t(i)].hi) return false;
  }
  return true;
}

// One head's gradients; false when a row needs the reference (see the top).
// `shared`: the rows' live keys when the mask is the same for every head
// (found once per call), else null.
bool head_grad(const AttentionCall& c, const AttentionGradTensors& t, int64_t b, int64_t h, const Scratch* shared,
               Scratch& s) {
  const AttentionDims& d = c.d;
  const int64_t T = d.T, S = d.S, dh = d.dh, dvn = d.dv;
  // 1. live keys of each row
  if (!shared && !live_ranges(c, b, h, s.live)) return false;
  const std::vector<LiveKeys>& live = shared ? shared->live : s.live;
  // 2. keys as rows Kr and as Kt's columns (kt, rows kt_ld apart), values as columns
  const float* kt = c.k_head(b, h);
  int64_t kt_ld = c.k_e;
  const float* v = c.v_head(b, h);  // rows v_s apart
  s.kr.resize(size_t(S * dh));
  s.vt.resize(size_t(dvn * S));
  if (c.k_s == 1) {  // Kt as [dh][S] rows (the default layout)
    transpose(kt, c.k_e, dh, S, s.kr.data(), dh);
  } else {  // keys given as rows (k_perm folded the transpose into Kt): copied, then transposed once
    for (int64_t j = 0; j < S; ++j) {
      float* row = s.kr.data() + j * dh;
      if (c.k_e == 1)
        std::memcpy(row, kt + j * c.k_s, size_t(dh) * sizeof(float));
      else
        for (int64_t e = 0; e < dh; ++e) row[e] = kt[j * c.k_s + e * c.k_e];
    }
    s.kc.resize(size_t(dh * S));
    transpose(s.kr.data(), dh, S, dh, s.kc.data(), S);
    kt = s.kc.data();
    kt_ld = S;
  }
  transpose(v, c.v_s, S, dvn, s.vt.data(), S);
  s.dkr.assign(size_t(S * dh), 0.f);
  for (int64_t j = 0; j < S; ++j) std::fill_n(t.dv_row(b, h, j), dvn, 0.f);
  s.p.resize(size_t(kRows * (S + kWidth)));
  if (c.mask && c.m_j != 1) s.mask_row.resize(size_t(S));
  s.ds.resize(size_t(kRows * (S + kWidth)));
  const Vec scale = splat(c.scale), neg_inf = splat(kNegInf), masked = splat(kAttentionMasked), zero = splat(0.f);
  float lane_index[kWidth];
  for (int64_t k = 0; k < kWidth; ++k) lane_index[k] = float(k);
  const Vec iota = load(lane_index);
  float lanes[kWidth];
  // 3. blocks of query rows
  for (int64_t i0 = 0; i0 < T; i0 += kRows) {
    const int64_t R = std::min(kRows, T - i0);
    int64_t lo = S, hi = 0;
    for (int64_t r = 0; r < R; ++r) {
      lo = std::min(lo, live[size_t(i0 + r)].lo);
      hi = std::max(hi, live[size_t(i0 + r)].hi);
    }
    // The block's keys; p and ds rows are ld apart, a whole number of
    // vectors, so each row is walked in whole vectors (lanes outside the
    // row's live keys select -inf) with no masked loads or stores.
    const int64_t L = hi - lo, ld = (L + kWidth - 1) / kWidth * kWidth;
    const float* q = c.q_row(b, h, i0);
    const float* g = t.dy_row(b, h, i0);  // rows t.dy_t apart
    // Scores: p = Q Kt over the block's keys (Kt's columns lo.. are contiguous rows of length S).
    gemm<ALayout::rows>(R, L, q, c.q_t, 0, dh, kt + lo, kt_ld, s.p.data(), ld, false);
    // dP = dy Vt
    gemm<ALayout::rows>(R, L, g, t.dy_t, 0, dvn, s.vt.data() + lo, S, s.ds.data(), ld, false);
    for (int64_t r = 0; r < R; ++r) {
      float* pr = s.p.data() + r * ld;
      float* dsr = s.ds.data() + r * ld;
      const float* m = contiguous_mask_row(c, b, h, i0 + r, s.mask_row.data());
      const int64_t from = live[size_t(i0 + r)].lo - lo, to = live[size_t(i0 + r)].hi - lo;
      const int64_t from8 = from / kWidth * kWidth, to8 = (to + kWidth - 1) / kWidth * kWidth;
      const Vec vfrom = splat(float(from)), vto = splat(float(to));
      // x = scale * s + m, -inf where masked or outside [from, to); the row's maximum
      Vec vmax = neg_inf;
      for (int64_t j = from8; j < to8; j += kWidth) {
        const Vec idx = splat(float(j)) + iota;
        const Mask live = and_masks(greater_equal(idx, vfrom), less(idx, vto));
        Vec x = load(pr + j) * scale;
        if (m) {
          const float* mp = m + lo + j;
          float tail[kWidth];
          if (lo + j + kWidth > S) {  // the row's last vector: no read past its end
            for (int64_t k = 0; k < kWidth; ++k) tail[k] = lo + j + k < S ? mp[k] : kAttentionMasked;
            mp = tail;
          }
          const Vec mv = load(mp);
          x = select(greater_equal(masked, mv), neg_inf, x + mv);
        }
        x = select(live, x, neg_inf);
        store(pr + j, x);
        vmax = max_or_nan(vmax, x);
      }
      store(lanes, vmax);
      float mx = kNegInf;
      for (float l : lanes) mx = l > mx || std::isnan(l) ? l : mx;
      if (!(mx >= kLiveRowMax) && !std::isnan(mx)) return false;  // nearly masked live keys
      // e = exp(x - max), and the sums of e and of e dP (0 where e is 0)
      const Vec vmx = splat(mx);
      Vec vsum = zero, vedp = zero;
      for (int64_t j = from8; j < to8; j += kWidth) {
        const Vec e = exp_approx(load(pr + j) - vmx);
        store(pr + j, e);
        vsum = vsum + e;
        vedp = vedp + select(not_equal(e, zero), e * load(dsr + j), zero);
      }
      store(lanes, vsum);
      float sum = 0;
      for (float l : lanes) sum += l;
      store(lanes, vedp);
      float edp = 0;
      for (float l : lanes) edp += l;
      // P = e / sum (NaN -> 0 under nan_to_zero); dS = scale P (dP - sum_j P dP), 0 where P is 0
      const Vec inv = splat(1.f / sum), vd = splat(edp / sum);
      for (int64_t j = from8; j < to8; j += kWidth) {
        Vec p = load(pr + j) * inv;
        if (c.nan_to_zero) p = select(equal(p, p), p, zero);
        store(pr + j, p);
        store(dsr + j, select(not_equal(p, zero), p * (load(dsr + j) - vd) * scale, zero));
      }
      std::fill(pr, pr + from8, 0.f);
      std::fill(pr + to8, pr + ld, 0.f);
      std::fill(dsr, dsr + from8, 0.f);
      std::fill(dsr + to8, dsr + ld, 0.f);
    }
    // dQ = dS Kr; dKr += dS^T Q; dV += P^T dy
    gemm<ALayout::rows>(R, dh, s.ds.data(), ld, 0, L, s.kr.data() + lo * dh, dh, t.dq_row(b, h, i0), t.dq_t, false);
    gemm<ALayout::columns>(L, dh, s.ds.data(), ld, 0, R, q, c.q_t, s.dkr.data() + lo * dh, dh, true);
    gemm<ALayout::columns>(L, dvn, s.p.data(), ld, 0, R, g, t.dy_t, t.dv_row(b, h, lo), t.dv_s, true);
  }
  // 4. dKt = dKr^T, or dKr's rows where the keys were given as rows
  write_key_grads(t, b, h, s.dkr.data(), S, dh);
  return true;
}

class AttentionGradKernel : public Kernel {
 public:
  explicit AttentionGradKernel(const Node&) {}
  void run(KernelContext& ctx) override {
    const AttentionCall c = attention_call(ctx, 1);
    const AttentionGradTensors t = attention_grad_tensors(ctx, c);
    const AttentionDims& d = c.d;
    const double flops = 10.0 * double(d.B * d.H) * double(d.T) * double(d.S) * double(std::max(d.dh, d.dv));
    // A mask shared by every head: its rows' live keys, once.
    Scratch shared;
    const bool one_mask = c.m_b == 0 && c.m_h == 0;
    const bool shared_ok = one_mask && live_ranges(c, 0, 0, shared.live);
    parallel_chunks(d.B * d.H, size_t(flops), size_t(kMinParallelWork), ctx.num_threads, [&](int64_t t0, int64_t t1) {
      thread_local Scratch s;  // kept: its buffers are warm and their pages touched
      for (int64_t bh = t0; bh < t1; ++bh) {
        const int64_t b = bh / d.H, h = bh % d.H;
        if (!(one_mask && !shared_ok) && head_grad(c, t, b, h, one_mask ? &shared : nullptr, s)) continue;
        attention_grad_head_reference(c, t, b, h);
      }
    });
  }
};

}  // namespace

void register_cpu_attention_grad_kernel(KernelFactoryTable& t) {
  t.add(kAttentionGradOp, make_kernel<AttentionGradKernel>, kGradDomain);
}

}  // namespace cb
