// Fast CPU kernel of codebook.Codebook (contract in ir/codebook.h; the
// reference kernel in backends/reference/codebook.cpp is its oracle).
//
// Work split: tokens are cut into blocks of at most kMaxBlockRows (smaller
// when there would be fewer tasks than threads), and every (member g, token
// block) is one task of a loop on the thread pool (support/thread_pool.h)
// over ctx.num_threads threads, handed out one at a time. Big
// blocks stream each member's packed codebook from memory once per call.
// A task layer-normalises its tokens' chunks, then sweeps member g's
// codebook panel by panel. A panel is kPanel codes packed [Dg][kPanel], so
// the microkernel broadcasts one u value and multiplies it with 16 codes at
// once; it keeps a (up to) 6-token x 16-code score tile in registers and
// compares every score with its token's threshold, the score of the L-th
// best code so far (L = k, or k + m under Mode A's disable_topk). Only
// scores above the threshold leave the registers and enter the token's small
// sorted list, so the [tokens x K] score matrix never exists. Codes are
// visited in id order and must beat the threshold strictly: ties go to the
// lower code id, as the contract says. The microkernel runs at about the
// FMA peak (AVX2; portable C++ without it); what it costs beyond that is
// the list insertions (~L * (1 + ln(K / L)) per token), kept branch-free
// for lists of up to 16 entries.
//
// Why not oneDNN: its matmul on these tile shapes (a few dozen tokens x
// Dg = 64 x 1-2k codes, transposed codes) measured ~50 GFLOP/s per core
// here against ~85 for this fused kernel, and it would write the scores to
// memory before the selection reads them back.
//
// Ranking scores: inner_product multiplies by the row-normalised codebook
// (u . C/|C|, a zero code scores 0); euclidean ranks by u . C - |C|^2/2,
// which orders codes like -|u - C|. The padding codes of the last panel
// score -inf and are never selected. The reported scores are recomputed
// exactly (u . C/|C| or -|u - C|) for the final ids, forced ones included.
//
// The packed codebook (normalised rows or |C|^2/2 biases) is built on the
// first run when the codes input is a constant and reused; otherwise it is
// rebuilt on every call, since training updates the codes.
//
// Interventions act inside the sweep and after it, per (g, t): Mode A skips
// ablated codes when they would enter a list (and fills with them, in code
// order, when fewer than k + m others exist), then keeps ranks m..m+k-1;
// Mode B keeps the plain top-k and blocks slots afterwards; forced codes are
// written last, in record order.
#include "backends/cpu/codebook_kernel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

// The AVX2 paths are chosen at run time (score_tiles().avx2);
// CB_MAX_CPU_ISA=portable runs the portable ones (support/cpu_features.h).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_CODEBOOK_X86 1
#endif

#include "backends/cpu/score_tile.h"
#include "ir/codebook.h"
#include "support/cpu_features.h"
#include "support/error.h"
#include "support/threads.h"

namespace cb {

namespace {

constexpr int kPanel = kScorePanel;        // codes per packed panel
constexpr int kTileRows = kScoreTileRows;  // tokens per microkernel tile
constexpr int64_t kMaxBlockRows = 128;     // tokens per task (their u rows stay in L1/L2)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------------------
// Packed codebook.

struct PackedCodebook {
  int64_t G = 0, K = 0, Dg = 0, panels = 0;
  CodebookMetric metric = CodebookMetric::inner_product;
  std::shared_ptr<Buffer> panel_buf;  // [G][panels][Dg][kPanel] ranking rows
  std::shared_ptr<Buffer> bias_buf;   // [G][panels][kPanel] added to every score
  std::vector<float> inv_norm;        // [G][K] 1/|C_c| (0 for a zero code), inner_product only

  float* panel(int64_t g, int64_t p) const {
    return static_cast<float*>(panel_buf->data()) + ((g * panels + p) * Dg) * kPanel;
  }
  float* bias(int64_t g, int64_t p) const { return static_cast<float*>(bias_buf->data()) + (g * panels + p) * kPanel; }
};

// Packs codes [G, K, Dg] for the sweep: inner_product stores C_c/|C_c| with
// bias 0, euclidean stores C_c with bias -|C_c|^2/2; padding codes are zero
// rows with bias -inf.
void pack_codebook(const float* codes, int64_t G, int64_t K, int64_t Dg, CodebookMetric metric, int threads,
                   PackedCodebook& pc) {
  pc.G = G;
  pc.K = K;
  pc.Dg = Dg;
  pc.metric = metric;
  pc.panels = (K + kPanel - 1) / kPanel;
  size_t panel_bytes = size_t(G * pc.panels * Dg * kPanel) * sizeof(float);
  size_t bias_bytes = size_t(G * pc.panels * kPanel) * sizeof(float);
  if (!pc.panel_buf || pc.panel_buf->size() < panel_bytes) pc.panel_buf = buffer_allocate(panel_bytes);
  if (!pc.bias_buf || pc.bias_buf->size() < bias_bytes) pc.bias_buf = buffer_allocate(bias_bytes);
  pc.inv_norm.assign(metric == CodebookMetric::inner_product ? size_t(G * K) : 0, 0.0f);
  const int64_t jobs = G * pc.panels;
  parallel_ranges(jobs, threads, [&](int64_t job_begin, int64_t job_end) {
    for (int64_t job = job_begin; job < job_end; ++job) {
      const int64_t g = job / pc.panels, p = job % pc.panels;
      float* dst = pc.panel(g, p);
      float* bias = pc.bias(g, p);
      for (int j = 0; j < kPanel; ++j) {
        const int64_t c = p * kPanel + j;
        if (c >= K) {
          for (int64_t d = 0; d < Dg; ++d) dst[d * kPanel + j] = 0.0f;
          bias[j] = kNegInf;
          continue;
        }
        const float* row = codes + (g * K + c) * Dg;
        double norm2 = 0;
        for (int64_t d = 0; d < Dg; ++d) norm2 += double(row[d]) * row[d];
        float scale = 1.0f;
        if (metric == CodebookMetric::inner_product) {
          scale = norm2 > 0 ? float(1.0 / std::sqrt(norm2)) : 0.0f;
          pc.inv_norm[size_t(g * K + c)] = scale;
          bias[j] = 0.0f;
        } else {
          bias[j] = float(-0.5 * norm2);
        }
        for (int64_t d = 0; d < Dg; ++d) dst[d * kPanel + j] = row[d] * scale;
      }
    }
  });
}

// The scoring microkernels are backends/cpu/score_tile.h's (shared with k-means).

// ---------------------------------------------------------------------------
// Interventions resolved per (member, position).

struct SiteInterventions {
  int64_t m = 0;                                   // largest disable_topk
  std::vector<int32_t> ablated;                    // sorted, unique
  std::vector<std::pair<int64_t, int64_t>> force;  // (slot in [0, k), code or -1), in record order

  bool is_ablated(int32_t c) const { return std::binary_search(ablated.begin(), ablated.end(), c); }
};

class InterventionPlan {
 public:
  InterventionPlan(const CodebookAttrs& a, int64_t G, int64_t T) : T_(T), sites_(size_t(G * T)) {
    for (int64_t g = 0; g < G; ++g)
      for (int64_t t = 0; t < T; ++t) {
        SiteInterventions& s = sites_[size_t(g * T + t)];
        for (auto& r : a.ablate)
          if (group_matches(r.group, g) && position_matches(r.position, t, T)) s.ablated.push_back(int32_t(r.code));
        std::sort(s.ablated.begin(), s.ablated.end());
        s.ablated.erase(std::unique(s.ablated.begin(), s.ablated.end()), s.ablated.end());
        for (auto& r : a.disable_topk)
          if (group_matches(r.group, g) && position_matches(r.position, t, T)) s.m = std::max(s.m, r.m);
        for (auto& r : a.force)
          if (group_matches(r.group, g) && position_matches(r.position, t, T))
            s.force.emplace_back(r.slot < 0 ? r.slot + a.k : r.slot, r.code);
      }
  }
  const SiteInterventions& at(int64_t g, int64_t t) const { return sites_[size_t(g * T_ + t)]; }

 private:
  int64_t T_;
  std::vector<SiteInterventions> sites_;
};

// ---------------------------------------------------------------------------
// One task: a block of tokens against one member's codebook.

struct Problem {
  const float* x;
  const float* codes;  // raw rows [G, K, Dg] (y and the reported scores)
  const float* ln_scale;
  const float* ln_bias;
  int64_t N, T, D, G, K, Dg;
  const CodebookAttrs* attrs;
  const PackedCodebook* packed;
  const InterventionPlan* plan;  // null without interventions
  int64_t list_capacity;         // the largest L = k + m of any token
  bool vector_lists;             // lists of <= kVectorList entries, AVX2 insertion
  int64_t list_stride;           // floats per row of the list buffers
  int64_t block_rows;            // tokens per task
  float* y;
  int64_t* ids;   // may be null
  float* scores;  // may be null
};

// Per-thread buffers for one task.
struct Scratch {
  std::vector<float> u;           // [rows][Dg] LayerNorm outputs
  std::vector<float> list_score;  // [rows][list_stride] best scores so far, descending
  std::vector<int32_t> list_id;   // their codes
  std::vector<int64_t> count, limit;
  std::vector<float> thr;                      // [rows] entry threshold of each list
  std::vector<const SiteInterventions*> skip;  // Mode A rows with ablated codes, else null
  std::vector<int64_t> final_ids;              // [rows][k] the selected (or forced) codes
  alignas(32) float tile[kTileRows * kPanel];
  uint32_t masks[kTileRows];

  Scratch(int64_t rows, int64_t Dg, int64_t list_stride, int64_t k)
      : u(size_t(rows * Dg)),
        list_score(size_t(rows * list_stride)),
        list_id(size_t(rows * list_stride)),
        count(size_t(rows)),
        limit(size_t(rows)),
        thr(size_t(rows)),
        skip(size_t(rows)),
        final_ids(size_t(rows * k)) {}
};

// u = LayerNorm(x) * scale + bias (biased variance); sums in double over
// 8 independent lanes so that they vectorise.
void layer_norm_row(const float* x, const float* scale, const float* bias, int64_t n, float eps, float* u) {
  constexpr int kLanes = 8;
  double lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lane[l] += x[i + l];
  double mean = 0;
  for (; i < n; ++i) mean += x[i];
  for (double v : lane) mean += v;
  mean /= double(n);
  double sq[kLanes] = {};
  for (i = 0; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) sq[l] += (x[i + l] - mean) * (x[i + l] - mean);
  double var = 0;
  for (; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  for (double v : sq) var += v;
  var /= double(n);
  const float inv = float(1.0 / std::sqrt(var + double(eps)));
  const float fmean = float(mean);
  for (int64_t i = 0; i < n; ++i) u[i] = (x[i] - fmean) * inv * scale[i] + bias[i];
}

// Inserts (score, code) into a descending list of `limit` entries, after
// entries with an equal score (they have lower codes); the caller checked
// that it beats the threshold. Returns the new threshold.
inline float list_insert(float* s, int32_t* id, int64_t& n, int64_t limit, float score, int32_t code) {
  int64_t i = std::min(n, limit - 1);  // a full list drops its last entry
  if (n < limit) ++n;
  while (i > 0 && s[i - 1] < score) {
    s[i] = s[i - 1];
    id[i] = id[i - 1];
    --i;
  }
  s[i] = score;
  id[i] = code;
  return n == limit ? s[limit - 1] : kNegInf;
}

// The same for lists of at most kVectorList entries kept in a row of
// 2 * kVectorList floats whose unused entries start at -inf (so the
// threshold is simply s[limit - 1]): the position is a popcount of one
// vector compare and the shift two unaligned vector moves, with no
// data-dependent branch. Entries past `limit` become scratch.
constexpr int64_t kVectorList = 16;
#ifdef CB_CODEBOOK_X86
__attribute__((target("avx2,popcnt"))) inline float list_insert_avx2(float* s, int32_t* id, int64_t limit, float score,
                                                                     int32_t code) {
  const __m256 v = _mm256_set1_ps(score);
  const uint32_t not_below = uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s), v, _CMP_GE_OQ))) |
                             uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(s + 8), v, _CMP_GE_OQ))) << 8;
  const int pos = __builtin_popcount(not_below & ((1u << limit) - 1));
  const __m256 s_lo = _mm256_loadu_ps(s + pos), s_hi = _mm256_loadu_ps(s + pos + 8);
  const __m256i id_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(id + pos));
  const __m256i id_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(id + pos + 8));
  _mm256_storeu_ps(s + pos + 1, s_lo);
  _mm256_storeu_ps(s + pos + 9, s_hi);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(id + pos + 1), id_lo);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(id + pos + 9), id_hi);
  s[pos] = score;
  id[pos] = code;
  return s[limit - 1];
}
#endif

// Completes a list that the sweep left short: with Mode A's ablated codes
// skipped when fewer than k + m others exist (they all score -inf, so they
// follow in code order), or when NaN scores entered nothing. Unlisted codes
// come in code order, the skipped (ablated) ones last.
void fill_in_code_order(int32_t* list, int64_t& n, int64_t limit, int64_t K, const SiteInterventions* skipped) {
  const int64_t listed = n;
  auto unlisted = [&](int32_t c) { return std::find(list, list + listed, c) == list + listed; };
  for (int32_t c = 0; c < K && n < limit; ++c)
    if (unlisted(c) && !(skipped && skipped->is_ablated(c))) list[n++] = c;
  for (int32_t c = 0; skipped && c < K && n < limit; ++c)
    if (unlisted(c) && skipped->is_ablated(c)) list[n++] = c;
}

void run_task(const Problem& P, int64_t g, int64_t first_token, Scratch& S) {
  const CodebookAttrs& a = *P.attrs;
  const PackedCodebook& pc = *P.packed;
  const int64_t rows = std::min(P.block_rows, P.N - first_token);
  const int64_t Dg = P.Dg, stride = P.list_stride;
  const bool mode_a = a.keep_k_codes;

  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = first_token + r;
    layer_norm_row(P.x + token * P.D + g * Dg, P.ln_scale + g * Dg, P.ln_bias + g * Dg, Dg, a.epsilon,
                   S.u.data() + r * Dg);
    const SiteInterventions* site = P.plan ? &P.plan->at(g, token % P.T) : nullptr;
    S.limit[size_t(r)] = a.k + (mode_a && site ? site->m : 0);
    S.count[size_t(r)] = 0;
    std::fill_n(S.list_score.data() + r * stride, stride, kNegInf);
    S.thr[size_t(r)] = kNegInf;
    S.skip[size_t(r)] = mode_a && site && !site->ablated.empty() ? site : nullptr;
  }

  // The sweep: every code of member g against every row, in code order.
  const ScoreTiles& kernels = score_tiles();
  const int64_t panel_floats = Dg * kPanel;
  for (int64_t p = 0; p < pc.panels; ++p) {
    const float* panel = pc.panel(g, p);
    const float* bias = pc.bias(g, p);
    // A panel is one 4 KiB page at Dg = 64, and hardware prefetchers stop at
    // page boundaries: fetch the next panel while this one is scored.
    if (p + 1 < pc.panels) {
      for (int64_t i = 0; i < panel_floats; i += 16) __builtin_prefetch(panel + panel_floats + i);
      __builtin_prefetch(bias + kPanel);
    }
    for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) {
      const int R = int(std::min<int64_t>(kTileRows, rows - r0));
      if (!kernels.by_rows[R - 1](S.u.data() + r0 * Dg, Dg, panel, bias, Dg, S.thr.data() + r0, S.tile, S.masks))
        continue;
      for (int rr = 0; rr < R; ++rr) {
        const size_t row = size_t(r0 + rr);
        for (uint32_t mask = S.masks[rr]; mask; mask &= mask - 1) {
          const int j = __builtin_ctz(mask);
          const float s = S.tile[rr * kPanel + j];
          if (!(s > S.thr[row])) continue;  // the threshold rose since the tile was scored
          const int32_t code = int32_t(p * kPanel + j);
          if (S.skip[row] && S.skip[row]->is_ablated(code)) continue;
          float* list_score = S.list_score.data() + row * stride;
          int32_t* list_id = S.list_id.data() + row * stride;
#ifdef CB_CODEBOOK_X86
          if (P.vector_lists) {
            S.thr[row] = list_insert_avx2(list_score, list_id, S.limit[row], s, code);
            S.count[row] += S.count[row] < S.limit[row];
            continue;
          }
#endif
          S.thr[row] = list_insert(list_score, list_id, S.count[row], S.limit[row], s, code);
        }
      }
    }
  }

  // Selection and interventions for every row first, prefetching the
  // chosen codes' rows (the sweep has evicted them), then y and the outputs.
  const int64_t k = a.k;
  const float* Cg = P.codes + g * P.K * Dg;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = first_token + r;
    const SiteInterventions* site = P.plan ? &P.plan->at(g, token % P.T) : nullptr;
    int32_t* list = S.list_id.data() + r * stride;
    int64_t n = S.count[size_t(r)];
    int64_t* ids = S.final_ids.data() + r * k;
    if (n < S.limit[size_t(r)]) fill_in_code_order(list, n, S.limit[size_t(r)], P.K, S.skip[size_t(r)]);
    if (mode_a) {
      const int64_t m = site ? site->m : 0;
      for (int64_t j = 0; j < k; ++j) ids[j] = list[m + j];
    } else {
      for (int64_t j = 0; j < k; ++j) {
        const int32_t c = list[j];
        ids[j] = site && (j < site->m || site->is_ablated(c)) ? -1 : c;
      }
    }
    if (site)
      for (auto& [slot, code] : site->force) ids[slot] = code;
    for (int64_t j = 0; j < k; ++j)
      if (ids[j] != -1)
        for (int64_t d = 0; d < Dg; d += 16) __builtin_prefetch(Cg + ids[j] * Dg + d);
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = first_token + r;
    const int64_t* ids = S.final_ids.data() + r * k;
    const float* u = S.u.data() + r * Dg;
    float* yg = P.y + token * P.D + g * Dg;
    std::fill(yg, yg + Dg, 0.0f);
    const int64_t slot0 = (token * P.G + g) * k;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t c = ids[j];
      float score = kNegInf;
      if (c != -1) {
        const float* row = Cg + c * Dg;
        for (int64_t d = 0; d < Dg; ++d) yg[d] += row[d];
        if (P.scores) {
          float acc = 0;
          if (a.metric == CodebookMetric::inner_product) {
            for (int64_t d = 0; d < Dg; ++d) acc += u[d] * row[d];
            score = acc * pc.inv_norm[size_t(g * P.K + c)];
          } else {
            for (int64_t d = 0; d < Dg; ++d) acc += (u[d] - row[d]) * (u[d] - row[d]);
            score = -std::sqrt(acc);
          }
        }
      }
      if (P.ids) P.ids[slot0 + j] = c;
      if (P.scores) P.scores[slot0 + j] = score;
    }
    const float fk = float(k);
    for (int64_t d = 0; d < Dg; ++d) yg[d] /= fk;
  }
}

// ---------------------------------------------------------------------------

class CodebookKernel : public Kernel {
 public:
  explicit CodebookKernel(const Node& node) : codes_constant_(node.input(1) && node.input(1)->is_constant()) {}

  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor& x = ctx.in(0);
    const Tensor& codes = ctx.in(1);
    const Tensor& ln_scale = ctx.in(2);
    const Tensor& ln_bias = ctx.in(3);
    CB_CHECK(x.dtype() == DType::f32 && codes.dtype() == DType::f32 && ln_scale.dtype() == DType::f32 &&
                 ln_bias.dtype() == DType::f32,
             node.describe() << ": the codebook kernel takes f32 inputs");
    CB_CHECK(x.rank() == 3 && codes.rank() == 3, node.describe() << ": x " << dims_str(x.dims()) << " and codes "
                                                                 << dims_str(codes.dims()) << " must have rank 3");
    const int64_t B = x.dim(0), T = x.dim(1), D = x.dim(2);
    const int64_t G = codes.dim(0), K = codes.dim(1), Dg = codes.dim(2);
    CB_CHECK(G * Dg == D && ln_scale.numel() == G * Dg && ln_bias.numel() == G * Dg,
             node.describe() << ": x " << dims_str(x.dims()) << ", codes " << dims_str(codes.dims()) << ", ln_scale "
                             << dims_str(ln_scale.dims()) << " and ln_bias " << dims_str(ln_bias.dims())
                             << " do not agree on [G, D/G]");
    CB_CHECK(K < (int64_t(1) << 31), node.describe() << ": " << K << " codes exceed the kernel's int32 code ids");
    if (!attrs_ || attrs_G_ != G || attrs_K_ != K) {
      attrs_ = CodebookAttrs::from_node(node, G, K);
      attrs_G_ = G;
      attrs_K_ = K;
    }
    const CodebookAttrs& a = *attrs_;
    const int64_t N = B * T;
    if (N == 0 || D == 0) return;
    const int threads = std::max(1, ctx.num_threads);

    if (!codes_constant_ || packed_from_ != codes.raw() || packed_.G != G || packed_.K != K || packed_.Dg != Dg ||
        packed_.metric != a.metric) {
      pack_codebook(codes.data<float>(), G, K, Dg, a.metric, threads, packed_);
      packed_from_ = codes.raw();
    }
    std::optional<InterventionPlan> plan;
    if (a.has_interventions()) plan.emplace(a, G, T);

    Problem P{};
    P.x = x.data<float>();
    P.codes = codes.data<float>();
    P.ln_scale = ln_scale.data<float>();
    P.ln_bias = ln_bias.data<float>();
    P.N = N;
    P.T = T;
    P.D = D;
    P.G = G;
    P.K = K;
    P.Dg = Dg;
    P.attrs = &a;
    P.packed = &packed_;
    P.plan = plan ? &*plan : nullptr;
    P.list_capacity = a.k + (a.keep_k_codes ? a.max_disable_topk() : 0);
    P.vector_lists = score_tiles().avx2 && P.list_capacity <= kVectorList;
    P.list_stride = P.vector_lists ? 2 * kVectorList : P.list_capacity;
    P.y = ctx.out(0).data<float>();
    P.ids = ctx.outputs.size() > 1 && ctx.outputs[1] ? ctx.outputs[1]->data<int64_t>() : nullptr;
    P.scores = ctx.outputs.size() > 2 && ctx.outputs[2] ? ctx.outputs[2]->data<float>() : nullptr;

    // Token blocks: as few as the block size allows, more (down to one tile
    // of rows) while there are fewer tasks than threads.
    int64_t blocks = (N + kMaxBlockRows - 1) / kMaxBlockRows;
    const int64_t max_blocks = (N + kTileRows - 1) / kTileRows;
    while (G * blocks < threads && blocks < max_blocks) ++blocks;
    P.block_rows = ((N + blocks - 1) / blocks + kTileRows - 1) / kTileRows * kTileRows;
    blocks = (N + P.block_rows - 1) / P.block_rows;
    const int64_t tasks = G * blocks;
    const int team = int(std::min<int64_t>(threads, tasks));
    std::vector<std::optional<Scratch>> scratch(static_cast<size_t>(team));  // one per worker, made on its first task
    ThreadPool::instance().run(tasks, team, [&](int64_t task) {
      std::optional<Scratch>& mine = scratch[size_t(parallel_worker_index())];
      if (!mine) mine.emplace(P.block_rows, Dg, P.list_stride, a.k);
      run_task(P, task / blocks, (task % blocks) * P.block_rows, *mine);
    });
  }

 private:
  bool codes_constant_;
  PackedCodebook packed_;
  const void* packed_from_ = nullptr;  // the codes buffer packed_ was built from
  std::optional<CodebookAttrs> attrs_;
  int64_t attrs_G_ = -1, attrs_K_ = -1;
};

}  // namespace

void register_cpu_codebook_kernels(KernelFactoryTable& t) {
  t.add(kCodebookOp, make_kernel<CodebookKernel>, kCodebookDomain);
}

}  // namespace cb
