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
// Where the CPU's bf16 dot product is fast (Zen 4: twice the multiply-adds
// of f32 FMAs), the sweep scores in bf16 instead and re-ranks the codes
// that can still be among the best in f32, so the outputs are the same bits
// (see "bf16 scoring" below): 1.6x faster at GPT-2 small's attn_preproj
// codebooks (10,000 codes); below 2,048 codes, or for a while after a call
// whose candidates crowded the re-ranking, f32 stays
// (kMinCodesForBf16Scoring, kF32CallsAfterCrowdedWindows).
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
// The packed codebook (normalised rows or |C|^2/2 biases, f32 or bf16) is built on the
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
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

// The AVX2 paths are chosen at run time (score_tiles().avx2);
// CB_MAX_CPU_ISA=portable runs the portable ones (support/cpu_features.h).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_CODEBOOK_X86 1
#endif

#include "backends/cpu/bf16_convert.h"
#include "backends/cpu/bf16_dot_speed.h"
#include "backends/cpu/score_tile.h"
#include "backends/cpu/score_tile_bf16.h"
#include "backends/cpu/vec_math.h"
#include "ir/codebook.h"
#include "support/cpu_features.h"
#include "support/error.h"
#include "support/threads.h"

namespace cb {

namespace {

constexpr int kPanel = kScorePanel;        // codes per packed panel
constexpr int kTileRows = kScoreTileRows;  // tokens per microkernel tile
constexpr int64_t kPrefetchRows = 8;       // x rows fetched ahead of their LayerNorm
constexpr int64_t kMaxBlockRows = 128;     // tokens per task (their u rows stay in L1/L2)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------------------
// Packed codebook.

struct PackedCodebook {
  int64_t G = 0, K = 0, Dg = 0, panels = 0;
  CodebookMetric metric = CodebookMetric::inner_product;
  // f32 panels [G][panels][Dg][kPanel], or with bf16 scoring bf16 panels
  // [G][panels][Dp][kBf16Panel][2] (score_tile_bf16.h), Dp = ceil(Dg / 2).
  bool bf16 = false;
  int64_t width = kPanel, Dp = 0;     // codes per panel; bf16 row pairs
  std::shared_ptr<Buffer> panel_buf;  // ranking rows, packed
  std::shared_ptr<Buffer> bias_buf;   // [G][panels][width] added to every score
  std::vector<float> inv_norm;        // [G][K] 1/|C_c| (0 for a zero code), inner_product only
  // bf16 scoring only: each code's bias for the exact re-ranking, and per
  // member the largest norm of a packed code and the largest |bias|, which
  // bound how far a bf16 score can be from the f32 one.
  std::vector<float> code_bias;  // [G][K]
  std::vector<double> max_norm, max_abs_bias;

  const float* panel(int64_t g, int64_t p) const {
    return static_cast<const float*>(panel_buf->data()) + ((g * panels + p) * Dg) * kPanel;
  }
  const uint16_t* bf16_panel(int64_t g, int64_t p) const {
    return static_cast<const uint16_t*>(panel_buf->data()) + ((g * panels + p) * Dp) * kBf16Panel * 2;
  }
  const float* bias(int64_t g, int64_t p) const {
    return static_cast<const float*>(bias_buf->data()) + (g * panels + p) * width;
  }
};

// The ranking row of a code: inner_product uses C_c/|C_c| with bias 0,
// euclidean C_c with bias -|C_c|^2/2. The packed value of element d is
// row[d] * scale, computed the same way by both packings and the re-ranking.
struct RankingRow {
  float scale, bias;
  double norm;  // of the scaled row
};
RankingRow ranking_row(const float* row, int64_t Dg, CodebookMetric metric) {
  // |row|^2 in double over 8 interleaved partial sums (each square is exact
  // in double; 8 chains, not one dependent chain of Dg additions: packing an
  // input codebook every training step sums 64 per code).
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= Dg; d += 8)
    for (int i = 0; i < 8; ++i) part[i] += double(row[d + i]) * row[d + i];
  for (; d < Dg; ++d) part[d % 8] += double(row[d]) * row[d];
  const double norm2 = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
  if (metric == CodebookMetric::euclidean) return {1.0f, float(-0.5 * norm2), std::sqrt(norm2)};
  const float scale = norm2 > 0 ? float(1.0 / std::sqrt(norm2)) : 0.0f;
  // Unit length, or zero; NaN for a code that does not scale to a finite
  // unit row (inf or NaN values; so tiny that 1/|C| overflows).
  const double norm = norm2 == 0                                     ? 0.0
                      : std::isfinite(norm2) && std::isfinite(scale) ? 1.0
                                                                     : std::numeric_limits<double>::quiet_NaN();
  return {scale, 0.0f, norm};
}

// Packs codes [G, K, Dg] for the sweep (f32 panels, or bf16 ones when `bf16`);
// padding codes are zero rows with bias -inf.
void pack_codebook(const float* codes, int64_t G, int64_t K, int64_t Dg, CodebookMetric metric, bool bf16, int threads,
                   PackedCodebook& pc) {
  pc.G = G;
  pc.K = K;
  pc.Dg = Dg;
  pc.metric = metric;
  pc.bf16 = bf16;
  pc.width = bf16 ? kBf16Panel : kPanel;
  pc.Dp = (Dg + 1) / 2;
  pc.panels = (K + pc.width - 1) / pc.width;
  const size_t panel_bytes = bf16 ? size_t(G * pc.panels * pc.Dp * kBf16Panel * 2) * sizeof(uint16_t)
                                  : size_t(G * pc.panels * Dg * kPanel) * sizeof(float);
  const size_t bias_bytes = size_t(G * pc.panels * pc.width) * sizeof(float);
  if (!pc.panel_buf || pc.panel_buf->size() < panel_bytes) pc.panel_buf = buffer_allocate(panel_bytes);
  if (!pc.bias_buf || pc.bias_buf->size() < bias_bytes) pc.bias_buf = buffer_allocate(bias_bytes);
  pc.inv_norm.assign(metric == CodebookMetric::inner_product ? size_t(G * K) : 0, 0.0f);
  pc.code_bias.assign(bf16 ? size_t(G * K) : 0, 0.0f);
  const int64_t jobs = G * pc.panels;
  std::vector<double> job_norm(bf16 ? size_t(jobs) : 0), job_bias(bf16 ? size_t(jobs) : 0);
  parallel_ranges(jobs, threads, [&](int64_t job_begin, int64_t job_end) {
    std::vector<float> scaled(bf16 ? size_t(2 * pc.Dp) : 0);  // one code's scaled row, and its bf16 pairs
    std::vector<uint16_t> pairs(scaled.size());
    for (int64_t job = job_begin; job < job_end; ++job) {
      const int64_t g = job / pc.panels, p = job % pc.panels;
      float* bias = const_cast<float*>(pc.bias(g, p));
      float* dst = bf16 ? nullptr : const_cast<float*>(pc.panel(g, p));
      uint16_t* dst16 = bf16 ? const_cast<uint16_t*>(pc.bf16_panel(g, p)) : nullptr;
      double max_norm = 0, max_bias = 0;
      for (int64_t j = 0; j < pc.width; ++j) {
        const int64_t c = p * pc.width + j;
        const float* row = c < K ? codes + (g * K + c) * Dg : nullptr;
        const RankingRow rr = row ? ranking_row(row, Dg, metric) : RankingRow{0.0f, kNegInf, 0.0};
        bias[j] = rr.bias;
        if (c < K) {
          if (metric == CodebookMetric::inner_product) pc.inv_norm[size_t(g * K + c)] = rr.scale;
          if (bf16) pc.code_bias[size_t(g * K + c)] = rr.bias;
          max_norm = std::max(max_norm, rr.norm);
          max_bias = std::max(max_bias, double(std::fabs(rr.bias)));
        }
        if (!bf16) {
          for (int64_t d = 0; d < Dg; ++d) dst[d * kPanel + j] = c < K ? row[d] * rr.scale : 0.0f;
          continue;
        }
        // Scale, round to bf16 pairs (vectorised), then place each pair.
        std::fill(scaled.begin(), scaled.end(), 0.0f);
        if (c < K)
          for (int64_t d = 0; d < Dg; ++d) scaled[size_t(d)] = row[d] * rr.scale;
        convert_to_bf16(scaled.data(), pairs.data(), 2 * pc.Dp);
        for (int64_t i = 0; i < pc.Dp; ++i)
          std::memcpy(dst16 + (i * kBf16Panel + j) * 2, pairs.data() + 2 * i, 2 * sizeof(uint16_t));
      }
      if (bf16) {
        job_norm[size_t(job)] = max_norm;
        job_bias[size_t(job)] = max_bias;
      }
    }
  });
  pc.max_norm.assign(bf16 ? size_t(G) : 0, 0.0);
  pc.max_abs_bias.assign(bf16 ? size_t(G) : 0, 0.0);
  for (int64_t job = 0; bf16 && job < jobs; ++job) {
    const size_t g = size_t(job / pc.panels);
    // std::max drops a NaN (a code with inf or NaN values): keep it, so the
    // member's rows are re-ranked exhaustively (see sweep_bf16).
    if (!(job_norm[size_t(job)] <= pc.max_norm[g])) pc.max_norm[g] = job_norm[size_t(job)];
    if (!(job_bias[size_t(job)] <= pc.max_abs_bias[g])) pc.max_abs_bias[g] = job_bias[size_t(job)];
  }
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

// The sweeps' warm start (warm_start below) scores the first kWarmPanels
// panels whole, where there are at least twice as many.
constexpr int64_t kWarmPanels = 16;

// A code that beat a row's threshold in the bf16 sweep, with its bf16 score.
struct Candidate {
  float approx;
  int32_t code;
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
  // The bf16 sweep's: u in bf16 [rows][2 Dp], the L-th best bf16 score
  // and the window below it that candidates stay within, and the candidates.
  std::vector<uint16_t> u16;
  std::vector<float> tau;
  std::vector<double> window;
  std::vector<std::vector<Candidate>> candidates;
  std::vector<size_t> candidate_cap;
  std::vector<float> warm;  // [rows][kWarmPanels * panel width] the warm start's scores
  int64_t reranked = 0;     // candidates the bf16 sweep re-scored in f32, over this worker's tasks
  alignas(64) float tile[std::max(kTileRows * kPanel, kBf16TileRows* kBf16Panel)];
  uint32_t masks[std::max(kTileRows, kBf16TileRows)];

  Scratch(int64_t rows, int64_t Dg, int64_t list_stride, int64_t k, bool bf16)
      : u(size_t(rows * Dg)),
        list_score(size_t(rows * list_stride)),
        list_id(size_t(rows * list_stride)),
        count(size_t(rows)),
        limit(size_t(rows)),
        thr(size_t(rows)),
        skip(size_t(rows)),
        final_ids(size_t(rows * k)),
        u16(bf16 ? size_t(rows * ((Dg + 1) / 2) * 2) : 0),
        tau(bf16 ? size_t(rows) : 0),
        window(bf16 ? size_t(rows) : 0),
        candidates(bf16 ? size_t(rows) : 0),
        candidate_cap(bf16 ? size_t(rows) : 0) {}
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

// The same for lists of at most 8 entries (k <= 8 without disable_topk, the
// common case): the list stays in one register while it changes, a blend
// of itself and of itself moved down one lane. The vector stores of the
// 16-entry insertion above are unaligned and overlap the next insertion's
// loads, which then wait for them (store-to-load forwarding fails); here
// each insertion loads and stores the same 8 lanes.
__attribute__((target("avx2"))) inline void insert8(__m256& v, __m256& ids, float score, int32_t code) {
  const __m256 x = _mm256_set1_ps(score);
  // Lanes below the new entry: a suffix [pos, 8) of the descending list
  // (entries equal to it keep their place before it).
  const __m256 below = _mm256_cmp_ps(v, x, _CMP_NGE_UQ);
  const __m256i down = _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6);
  const __m256 first = _mm256_castsi256_ps(_mm256_setr_epi32(0, -1, -1, -1, -1, -1, -1, -1));
  const __m256 at = _mm256_andnot_ps(_mm256_and_ps(_mm256_permutevar8x32_ps(below, down), first), below);  // lane pos
  const __m256 new_ids = _mm256_castsi256_ps(_mm256_set1_epi32(code));
  v = _mm256_blendv_ps(_mm256_blendv_ps(v, _mm256_permutevar8x32_ps(v, down), below), x, at);
  ids = _mm256_blendv_ps(_mm256_blendv_ps(ids, _mm256_permutevar8x32_ps(ids, down), below), new_ids, at);
}

__attribute__((target("avx2"))) inline float list_insert8_avx2(float* s, int32_t* id, int64_t limit, float score,
                                                               int32_t code) {
  __m256 v = _mm256_loadu_ps(s), ids = _mm256_loadu_ps(reinterpret_cast<const float*>(id));
  insert8(v, ids, score, code);
  _mm256_storeu_ps(s, v);
  _mm256_storeu_ps(reinterpret_cast<float*>(id), ids);
  return s[limit - 1];
}

// The same for n codes in code order, the list held in registers throughout.
__attribute__((target("avx2"))) inline float list_insert8_batch_avx2(float* s, int32_t* id, int64_t limit,
                                                                     const float* scores, const int32_t* codes, int n) {
  __m256 v = _mm256_loadu_ps(s), ids = _mm256_loadu_ps(reinterpret_cast<const float*>(id));
  for (int i = 0; i < n; ++i) insert8(v, ids, scores[i], codes[i]);
  _mm256_storeu_ps(s, v);
  _mm256_storeu_ps(reinterpret_cast<float*>(id), ids);
  return s[limit - 1];
}
#endif

// The l-th largest of n values (1 <= l <= n <= 32, no NaN): through an
// 8-entry register list where l <= 8 (no data-dependent branch), else by
// selection (reordering v).
inline float lth_largest(float* v, int n, int64_t l) {
#ifdef CB_CODEBOOK_X86
  if (l <= 8) {
    float list[8];
    int32_t ids[8] = {}, codes[32] = {};
    std::fill_n(list, 8, kNegInf);
    return list_insert8_batch_avx2(list, ids, l, v, codes, n);
  }
#endif
  std::nth_element(v, v + l - 1, v + n, std::greater<float>());
  return v[l - 1];
}

// The codes of one row of a score tile that beat the row's threshold when
// the tile was scored (mask bit j: column j, code code0 + j), in code order.
struct TileHits {
  float score[32];
  int32_t code[32];
  int n = 0;
};
inline void collect_hits(const float* tile_row, uint32_t mask, int32_t code0, TileHits& h) {
  int n = 0;
  for (; mask; mask &= mask - 1) {
    const int j = __builtin_ctz(mask);
    h.score[n] = tile_row[j];
    h.code[n] = code0 + j;
    ++n;
  }
  h.n = n;
}

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

// Adds (score, code) to a row's list of its best codes; returns the list's
// new entry threshold (its L-th best score, -inf while it is short).
inline float list_push(const Problem& P, Scratch& S, size_t row, float score, int32_t code) {
  float* list_score = S.list_score.data() + row * P.list_stride;
  int32_t* list_id = S.list_id.data() + row * P.list_stride;
#ifdef CB_CODEBOOK_X86
  if (P.vector_lists) {
    const float thr = S.limit[row] <= 8 ? list_insert8_avx2(list_score, list_id, S.limit[row], score, code)
                                        : list_insert_avx2(list_score, list_id, S.limit[row], score, code);
    S.count[row] += S.count[row] < S.limit[row];
    return thr;
  }
#endif
  return list_insert(list_score, list_id, S.count[row], S.limit[row], score, code);
}

// Whether a row's hits can go into its list all at once (list_push_hits):
// an 8-entry register list with room past its end, so that a hit that no
// longer beats the list's L-th entry lands past it and changes nothing, and
// no ablated codes to skip.
inline bool takes_hits_at_once(const Problem& P, const Scratch& S, size_t row) {
#ifdef CB_CODEBOOK_X86
  return P.vector_lists && S.limit[row] <= 8 && !S.skip[row];
#else
  (void)P, (void)S, (void)row;
  return false;
#endif
}

// list_push of a tile row's hits, in code order, where takes_hits_at_once:
// one per hit, with no test and no branch but the loop's. Returns the new
// threshold.
inline float list_push_hits(const Problem& P, Scratch& S, size_t row, const TileHits& h) {
#ifdef CB_CODEBOOK_X86
  float* list_score = S.list_score.data() + row * P.list_stride;
  int32_t* list_id = S.list_id.data() + row * P.list_stride;
  S.count[row] = std::min(S.count[row] + h.n, S.limit[row]);
  return list_insert8_batch_avx2(list_score, list_id, S.limit[row], h.score, h.code, h.n);
#else
  (void)P, (void)S, (void)row, (void)h;
  return kNegInf;
#endif
}

// Warm start: a running list of the best L of K codes in code order takes
// ~L (1 + ln(K / L)) of them, most early, each a pass through the list and
// its branches. The first kWarmPanels panels are scored whole instead
// (`score_panel(p, out, ld)` writes panel p's scores of every row at out,
// rows ld apart);
// the L-th largest of their column maxima is the score of L distinct codes,
// so the L-th best score of the sweep will be at least that, and the
// threshold can start there (`start(row, tau)`, not for rows that skip
// ablated codes, which might be those). Then each row takes the codes above
// its threshold from the stored scores, in code order (`take(row, scores,
// mask, code0)`), and the sweep goes on from panel kWarmPanels. Returns
// that first panel (0 where there are too few panels or lists too long).
template <typename ScorePanel, typename Start, typename Take>
int64_t warm_start(const Problem& P, Scratch& S, int64_t rows, int64_t panels, int64_t width, ScorePanel&& score_panel,
                   Start&& start, Take&& take) {
  if (panels < 2 * kWarmPanels || P.list_capacity > width) return 0;
  const int64_t ld = kWarmPanels * width;
  S.warm.resize(size_t(rows * ld));
  for (int64_t p = 0; p < kWarmPanels; ++p) score_panel(p, S.warm.data() + p * width, ld);
  for (int64_t r = 0; r < rows; ++r) {
    const size_t row = size_t(r);
    const float* scores = S.warm.data() + r * ld;
    if (!S.skip[row]) {
      float column_max[kBf16Panel];  // the widest panel's
      for (int64_t j = 0; j < width; j += simd::kWidth) {
        simd::Vec m = simd::splat(kNegInf);
        for (int64_t p = 0; p < kWarmPanels; ++p) m = simd::max_ignoring_nan(simd::load(scores + p * width + j), m);
        simd::store(column_max + j, m);
      }
      start(row, lth_largest(column_max, int(width), S.limit[row]));
    }
    for (int64_t p = 0; p < kWarmPanels; ++p) {
      const float* ps = scores + p * width;
      const uint32_t mask = simd::greater_bits(ps, width, S.thr[row]);
      if (mask) take(row, ps, mask, int32_t(p * width));
    }
  }
  return kWarmPanels;
}

// take(score, code) for the bits j of `mask`, in order, whose scores[j]
// still beat the row's threshold (it may have risen since they were
// compared) and whose codes code0 + j the row does not skip.
template <typename Take>
inline void for_each_hit(const Scratch& S, size_t row, const float* scores, uint32_t mask, int32_t code0, Take&& take) {
  for (; mask; mask &= mask - 1) {
    const int j = __builtin_ctz(mask);
    const float s = scores[j];
    if (!(s > S.thr[row])) continue;
    const int32_t code = code0 + j;
    if (S.skip[row] && S.skip[row]->is_ablated(code)) continue;
    take(s, code);
  }
}

// A row's codes code0 + j for the bits j of `mask` (scores[j] beat its
// threshold when they were scored), in code order, into its list of the
// best L; the threshold follows the list's L-th score (max: a warm-started
// threshold stays while the list fills up).
void take_f32_hits(const Problem& P, Scratch& S, size_t row, const float* scores, uint32_t mask, int32_t code0) {
  if (takes_hits_at_once(P, S, row)) {
    TileHits h;
    collect_hits(scores, mask, code0, h);
    S.thr[row] = std::max(S.thr[row], list_push_hits(P, S, row, h));
    return;
  }
  for_each_hit(S, row, scores, mask, code0,
               [&](float s, int32_t code) { S.thr[row] = std::max(S.thr[row], list_push(P, S, row, s, code)); });
}

// The f32 sweep: every code of member g against every row, in code order.
void sweep_f32(const Problem& P, int64_t g, int64_t rows, Scratch& S) {
  const PackedCodebook& pc = *P.packed;
  const int64_t Dg = P.Dg;
  const ScoreTiles& kernels = score_tiles();
  const int64_t panel_floats = Dg * kPanel;
  // Panel p, fetching the next one meanwhile: a panel is one 4 KiB page at
  // Dg = 64, and hardware prefetchers stop at page boundaries.
  auto panel_at = [&](int64_t p) {
    const float* panel = pc.panel(g, p);
    if (p + 1 < pc.panels) {
      for (int64_t i = 0; i < panel_floats; i += 16) __builtin_prefetch(panel + panel_floats + i);
      __builtin_prefetch(pc.bias(g, p + 1));
    }
    return panel;
  };
  // The warm start's scores: the tiles compared with -inf, which keep every
  // score but NaN and -inf (and store none where none is kept: all -inf then).
  auto score_panel = [&](int64_t p, float* out, int64_t ld) {
    const float* panel = panel_at(p);
    float none[kTileRows];
    std::fill_n(none, kTileRows, kNegInf);
    for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) {
      const int R = int(std::min<int64_t>(kTileRows, rows - r0));
      const bool any =
          kernels.by_rows[R - 1](S.u.data() + r0 * Dg, Dg, panel, pc.bias(g, p), Dg, none, S.tile, S.masks);
      for (int rr = 0; rr < R; ++rr) {
        float* dst = out + (r0 + rr) * ld;
        if (any)
          std::copy(S.tile + rr * kPanel, S.tile + (rr + 1) * kPanel, dst);
        else
          std::fill(dst, dst + kPanel, kNegInf);
      }
    }
  };
  // Codes scoring tau enter: the threshold is the float just below it.
  auto start = [&](size_t row, float tau) { S.thr[row] = std::nextafter(tau, kNegInf); };
  auto take = [&](size_t row, const float* scores, uint32_t mask, int32_t code0) {
    take_f32_hits(P, S, row, scores, mask, code0);
  };
  for (int64_t p = warm_start(P, S, rows, pc.panels, kPanel, score_panel, start, take); p < pc.panels; ++p) {
    const float* panel = panel_at(p);
    for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) {
      const int R = int(std::min<int64_t>(kTileRows, rows - r0));
      if (!kernels.by_rows[R - 1](S.u.data() + r0 * Dg, Dg, panel, pc.bias(g, p), Dg, S.thr.data() + r0, S.tile,
                                  S.masks))
        continue;
      for (int rr = 0; rr < R; ++rr)
        if (S.masks[rr]) take_f32_hits(P, S, size_t(r0 + rr), S.tile + rr * kPanel, S.masks[rr], int32_t(p * kPanel));
    }
  }
}

// ---------------------------------------------------------------------------
// bf16 scoring with exact ids (where it is faster: cpu_codebook_scoring()).
//
// The sweep scores every code with VDPBF16PS on bf16 roundings of u and of
// the packed codes (twice the multiply-adds per instruction of f32 FMAs on
// CPUs where bf16 is fast), then the codes that can be among the best L are
// re-scored with the f32 sweep's exact arithmetic, so ids, scores and y are
// bit for bit those of the f32 kernel.
//
// Why that is exact: let E bound |bf16 score - f32 score| for every code of
// the member (bf16_score_error), and tau be the L-th best bf16 score of the
// sweep. The L codes scoring >= tau in bf16 all score >= tau - E in f32, so
// the L-th best f32 score is >= tau - E, and each of the best L codes in f32
// scores >= tau - 2E in bf16. The sweep keeps every code above tau - 2E as
// tau rises (the threshold only rises, so a code it dropped stays below
// it), and the re-ranking orders them by f32 score, ties to the lower code.
// A row whose bound is not finite (u or a code with inf or NaN values) is
// re-ranked over all its codes: slow, and still exact.

// E for a row with |u| = u_norm against member g: bf16 rounding changes each
// factor by at most 2^-8 of itself, so each product by at most (2^-7 +
// 2^-16)|u_d||C_d|; both paths' f32 sums (bias + Dg products, in any order)
// err by at most gamma = (Dg + 2) 2^-24 times the sum of the magnitudes; and
// sum |u_d||C_d| <= |u| |C|. Denormals flushed to zero add < 2^-126 a step.
// 5% more covers the rounding of the bound itself.
double bf16_score_error(double u_norm, double max_norm, double max_abs_bias, int64_t Dg) {
  const double gamma = double(Dg + 2) * std::ldexp(1.0, -24);
  const double e = (std::ldexp(1.0, -7) + std::ldexp(1.0, -16) + 2.1 * gamma) * u_norm * max_norm +
                   2.1 * gamma * max_abs_bias + double(Dg + 2) * std::ldexp(1.0, -120) * (1.0 + max_norm);
  return 1.05 * e;
}

// A float a little below tau - window, never above it (-inf while the list
// is short): the f32 rounding of a double moves it by at most half an ulp
// (2^-24 of it, or 2^-150 below the normal range), less than what is
// subtracted first. Branch-free but for -inf, which is predictable: the
// sweep calls it on most codes that beat the threshold.
inline float window_floor(float tau, double window) {
  if (tau == kNegInf) return kNegInf;
  const double t = double(tau) - window;
  return float(t - std::fabs(t) * 0x1p-22 - 0x1p-126);
}

// Replaces the first n candidates' bf16 scores by the f32 sweep's scores
// of their codes, each in the sweep's order of operations: the bias, then
// one FMA per element of the packed row (row[d] * scale), as the AVX2 tile
// does per lane (bf16 scoring needs the AVX2 path, so the bits are the
// same). Eight codes at a time, one per lane: their rows are read eight
// elements at a time and transposed in registers.
void exact_scores(const Problem& P, int64_t g, const float* u, Candidate* cands, size_t n) {
  const PackedCodebook& pc = *P.packed;
  const int64_t Dg = P.Dg;
  constexpr size_t kChains = 8;
  for (size_t i0 = 0; i0 < n; i0 += kChains) {
    const size_t m = std::min(kChains, n - i0);
    alignas(32) float acc[kChains], scale[kChains];
    const float* row[kChains];
    for (size_t i = 0; i < kChains; ++i) {  // short groups repeat their first code
      const size_t at = size_t(g * P.K + cands[i0 + (i < m ? i : 0)].code);
      acc[i] = pc.code_bias[at];
      scale[i] = pc.metric == CodebookMetric::inner_product ? pc.inv_norm[at] : 1.0f;
      row[i] = P.codes + int64_t(at) * Dg;
    }
    int64_t d = 0;
#ifdef CB_SIMD_AVX2
    __m256 a = _mm256_load_ps(acc);
    const __m256 sv = _mm256_load_ps(scale);
    for (; d + 8 <= Dg; d += 8) {
      __m256 r[8];
      for (size_t i = 0; i < kChains; ++i) r[i] = _mm256_loadu_ps(row[i] + d);
      simd::transpose8x8(r);  // r[e] lane i = row[i][d + e]
      for (int e = 0; e < 8; ++e) a = _mm256_fmadd_ps(_mm256_set1_ps(u[d + e]), _mm256_mul_ps(r[e], sv), a);
    }
    _mm256_store_ps(acc, a);
#endif
    for (; d < Dg; ++d)
      for (size_t i = 0; i < kChains; ++i) acc[i] = std::fma(u[d], row[i][d] * scale[i], acc[i]);
    for (size_t i = 0; i < m; ++i) cands[i0 + i].approx = acc[i];
  }
}

// The first half of re-ranking a row: keeps the candidates still in the
// window (all codes where the row has no bound) at the front of its list,
// returns how many, and prefetches their rows (the sweep read only the bf16
// panels), so that they arrive while the previous row is scored.
size_t gather_candidates(const Problem& P, int64_t g, size_t row, Scratch& S) {
  std::vector<Candidate>& cands = S.candidates[row];
  const bool exhaustive = std::isnan(S.window[row]);
  if (exhaustive) {
    cands.clear();
    for (int32_t c = 0; c < P.K; ++c)
      if (!(S.skip[row] && S.skip[row]->is_ablated(c))) cands.push_back({0.0f, c});
  }
  const float floor = window_floor(S.tau[row], S.window[row]);
  size_t n = 0;
  for (const Candidate& c : cands) {
    if (!exhaustive && c.approx < floor) continue;
    const float* code_row = P.codes + (g * P.K + c.code) * P.Dg;
    for (int64_t d = 0; d < P.Dg; d += 16) __builtin_prefetch(code_row + d);
    cands[n++] = c;
  }
  return n;
}

// The second half: replaces the row's list by its best L of the n gathered
// candidates by exact score, ties to the lower code.
void rerank(const Problem& P, int64_t g, size_t row, size_t n, Scratch& S) {
  std::vector<Candidate>& cands = S.candidates[row];
  exact_scores(P, g, S.u.data() + int64_t(row) * P.Dg, cands.data(), n);
  size_t kept = 0;
  for (size_t i = 0; i < n; ++i)  // NaN and -inf never enter the f32 sweep's list
    if (cands[i].approx > kNegInf) cands[kept++] = cands[i];
  // The best `keep` to the front, descending, by insertion: the candidates
  // are in code order, and each goes after the equal scores before it, so
  // ties go to the lower code. In place: the list's end never passes the
  // candidate being read.
  const size_t keep = std::min(kept, size_t(S.limit[row]));
  size_t len = 0;
  for (size_t i = 0; i < kept && keep > 0; ++i) {
    const Candidate c = cands[i];
    if (len == keep && !(c.approx > cands[len - 1].approx)) continue;
    size_t j = std::min(len, keep - 1);
    len += len < keep;
    for (; j > 0 && cands[j - 1].approx < c.approx; --j) cands[j] = cands[j - 1];
    cands[j] = c;
  }
  float* list_score = S.list_score.data() + row * P.list_stride;
  int32_t* list_id = S.list_id.data() + row * P.list_stride;
  for (size_t i = 0; i < keep; ++i) {
    list_score[i] = cands[i].approx;
    list_id[i] = cands[i].code;
  }
  S.count[row] = int64_t(keep);
}

// Past its capacity, a row's candidate list drops the codes that fell
// below the window (and grows if few did).
inline void drop_below_window(Scratch& S, size_t row) {
  std::vector<Candidate>& cands = S.candidates[row];
  if (cands.size() <= S.candidate_cap[row]) return;
  const float thr = S.thr[row];
  cands.erase(std::remove_if(cands.begin(), cands.end(), [thr](const Candidate& c) { return c.approx < thr; }),
              cands.end());
  if (cands.size() > S.candidate_cap[row] / 2) S.candidate_cap[row] *= 2;
}

// A row's codes code0 + j for the bits j of `mask` (scores[j] beat its
// threshold when they were scored), in code order: each is a candidate and
// goes into its list of the best bf16 scores, whose L-th entry tau moves
// the threshold up to tau less the window.
void take_bf16_hits(const Problem& P, Scratch& S, size_t row, const float* scores, uint32_t mask, int32_t code0) {
  std::vector<Candidate>& cands = S.candidates[row];
  if (takes_hits_at_once(P, S, row)) {
    // Every hit goes into the list (past its end where it no longer beats tau).
    TileHits h;
    collect_hits(scores, mask, code0, h);
    const size_t at = cands.size();
    cands.resize(at + size_t(h.n));
    for (int i = 0; i < h.n; ++i) cands[at + size_t(i)] = {h.score[i], h.code[i]};
    S.tau[row] = list_push_hits(P, S, row, h);
  } else {
    for_each_hit(S, row, scores, mask, code0, [&](float s, int32_t code) {
      cands.push_back({s, code});
      if (s > S.tau[row]) {
        S.tau[row] = list_push(P, S, row, s, code);
        S.thr[row] = std::max(S.thr[row], window_floor(S.tau[row], S.window[row]));
      }
    });
  }
  // max: a warm-started threshold stays while the list fills up.
  S.thr[row] = std::max(S.thr[row], window_floor(S.tau[row], S.window[row]));
  drop_below_window(S, row);
}

void sweep_bf16(const Problem& P, int64_t g, int64_t rows, Scratch& S) {
  const PackedCodebook& pc = *P.packed;
  const int64_t Dg = P.Dg, Dp = pc.Dp;
  for (int64_t r = 0; r < rows; ++r) {
    const float* u = S.u.data() + r * Dg;
    uint16_t* u16 = S.u16.data() + r * 2 * Dp;
    double norm2 = 0;
    for (int64_t d = 0; d < Dg; ++d) norm2 += double(u[d]) * u[d];
    convert_to_bf16(u, u16, Dg);
    if (Dg % 2) u16[Dg] = 0;
    const double window =
        2 * bf16_score_error(std::sqrt(norm2), pc.max_norm[size_t(g)], pc.max_abs_bias[size_t(g)], Dg);
    const size_t row = size_t(r);
    // A NaN threshold admits nothing: such rows are re-ranked over all codes.
    S.window[row] = window < 1e30 ? window : std::numeric_limits<double>::quiet_NaN();
    S.thr[row] = std::isnan(S.window[row]) ? std::numeric_limits<float>::quiet_NaN() : kNegInf;
    S.tau[row] = kNegInf;
    S.candidates[row].clear();
    S.candidate_cap[row] = size_t(4 * S.limit[row] + 32);
  }

  const Bf16ScoreTiles& kernels = *bf16_score_tiles();
  const int64_t panel_words = Dp * kBf16Panel;  // 32-bit words
  // Panel p's codes and biases, fetching the next panel's meanwhile (a
  // panel is one 4 KiB page at Dg = 64: the hardware prefetchers stop there).
  auto panel_at = [&](int64_t p) {
    const uint16_t* panel = pc.bf16_panel(g, p);
    if (p + 1 < pc.panels) {
      for (int64_t i = 0; i < 2 * panel_words; i += 32) __builtin_prefetch(panel + 2 * panel_words + i);
      __builtin_prefetch(pc.bias(g, p + 1));
    }
    return panel;
  };

  auto score_panel = [&](int64_t p, float* out, int64_t ld) {
    const uint16_t* panel = panel_at(p);
    for (int64_t r0 = 0; r0 < rows; r0 += kBf16TileRows) {
      const int R = int(std::min<int64_t>(kBf16TileRows, rows - r0));
      kernels.storing_by_rows[R - 1](S.u16.data() + r0 * 2 * Dp, 2 * Dp, panel, pc.bias(g, p), Dp, out + r0 * ld, ld);
    }
  };
  // tau is a bf16 score, so the threshold is below it by the window (rows
  // re-ranked over all codes keep their NaN threshold, which takes nothing).
  auto start = [&](size_t row, float tau) {
    if (!std::isnan(S.thr[row])) S.thr[row] = window_floor(tau, S.window[row]);
  };
  auto take = [&](size_t row, const float* scores, uint32_t mask, int32_t code0) {
    take_bf16_hits(P, S, row, scores, mask, code0);
  };
  const int64_t first_panel = warm_start(P, S, rows, pc.panels, kBf16Panel, score_panel, start, take);
  for (int64_t p = first_panel; p < pc.panels; ++p) {
    const uint16_t* panel = panel_at(p);
    for (int64_t r0 = 0; r0 < rows; r0 += kBf16TileRows) {
      const int R = int(std::min<int64_t>(kBf16TileRows, rows - r0));
      if (!kernels.by_rows[R - 1](S.u16.data() + r0 * 2 * Dp, 2 * Dp, panel, pc.bias(g, p), Dp, S.thr.data() + r0,
                                  S.tile, S.masks))
        continue;
      for (int rr = 0; rr < R; ++rr)
        if (S.masks[rr])
          take_bf16_hits(P, S, size_t(r0 + rr), S.tile + rr * kBf16Panel, S.masks[rr], int32_t(p * kBf16Panel));
    }
  }
  // Re-ranking, one row ahead in gathering (and prefetching) its candidates.
  size_t next = rows > 0 ? gather_candidates(P, g, 0, S) : 0;
  for (int64_t r = 0; r < rows; ++r) {
    const size_t n = next;
    if (r + 1 < rows) next = gather_candidates(P, g, size_t(r + 1), S);
    rerank(P, g, size_t(r), n, S);
    S.reranked += int64_t(n);
  }
}

void run_task(const Problem& P, int64_t g, int64_t first_token, Scratch& S) {
  const CodebookAttrs& a = *P.attrs;
  const PackedCodebook& pc = *P.packed;
  const int64_t rows = std::min(P.block_rows, P.N - first_token);
  const int64_t Dg = P.Dg, stride = P.list_stride;
  const bool mode_a = a.keep_k_codes;

  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = first_token + r;
    // The rows' slices of member g are D floats apart, a stride the
    // hardware prefetchers do not follow: fetch a few rows ahead.
    if (r + kPrefetchRows < rows)
      for (int64_t d = 0; d < Dg; d += 16) __builtin_prefetch(P.x + (token + kPrefetchRows) * P.D + g * Dg + d);
    layer_norm_row(P.x + token * P.D + g * Dg, P.ln_scale + g * Dg, P.ln_bias + g * Dg, Dg, a.epsilon,
                   S.u.data() + r * Dg);
    const SiteInterventions* site = P.plan ? &P.plan->at(g, token % P.T) : nullptr;
    S.limit[size_t(r)] = a.k + (mode_a && site ? site->m : 0);
    S.count[size_t(r)] = 0;
    std::fill_n(S.list_score.data() + r * stride, stride, kNegInf);
    S.thr[size_t(r)] = kNegInf;
    S.skip[size_t(r)] = mode_a && site && !site->ablated.empty() ? site : nullptr;
  }

  if (pc.bf16)
    sweep_bf16(P, g, rows, S);
  else
    sweep_f32(P, g, rows, S);

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
  explicit CodebookKernel(const Node& node)
      : codes_constant_(node.input(1) && node.input(1)->is_constant()), scoring_(cpu_codebook_scoring()) {}

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

    const bool automatic_bf16 =
        scoring_ == CodebookScoring::automatic && K >= kMinCodesForBf16Scoring && f32_calls_left_ == 0;
    const bool bf16 = scoring_ == CodebookScoring::bf16 || automatic_bf16;
    if (f32_calls_left_ > 0) --f32_calls_left_;
    if (!codes_constant_ || packed_from_ != codes.raw() || packed_.G != G || packed_.K != K || packed_.Dg != Dg ||
        packed_.metric != a.metric || packed_.bf16 != bf16) {
      pack_codebook(codes.data<float>(), G, K, Dg, a.metric, bf16, threads, packed_);
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
    const int64_t tile_rows = bf16 ? kBf16TileRows : kTileRows;
    int64_t blocks = (N + kMaxBlockRows - 1) / kMaxBlockRows;
    const int64_t max_blocks = (N + tile_rows - 1) / tile_rows;
    while (G * blocks < threads && blocks < max_blocks) ++blocks;
    P.block_rows = ((N + blocks - 1) / blocks + tile_rows - 1) / tile_rows * tile_rows;
    blocks = (N + P.block_rows - 1) / P.block_rows;
    const int64_t tasks = G * blocks;
    const int team = int(std::min<int64_t>(threads, tasks));
    std::vector<std::optional<Scratch>> scratch(static_cast<size_t>(team));  // one per worker, made on its first task
    ThreadPool::instance().run(tasks, team, [&](int64_t task) {
      std::optional<Scratch>& mine = scratch[size_t(parallel_worker_index())];
      if (!mine) mine.emplace(P.block_rows, Dg, P.list_stride, a.k, bf16);
      run_task(P, task / blocks, (task % blocks) * P.block_rows, *mine);
    });
    if (automatic_bf16) {
      int64_t reranked = 0;
      for (const std::optional<Scratch>& s : scratch) reranked += s ? s->reranked : 0;
      if (reranked > crowded_window(P.list_capacity) * N * G) f32_calls_left_ = kF32CallsAfterCrowdedWindows;
    }
  }

 private:
  bool codes_constant_;
  CodebookScoring scoring_;  // cpu_codebook_scoring() when the kernel was made
  PackedCodebook packed_;
  const void* packed_from_ = nullptr;  // the codes buffer packed_ was built from
  std::optional<CodebookAttrs> attrs_;
  int64_t attrs_G_ = -1, attrs_K_ = -1;
  int64_t f32_calls_left_ = 0;  // automatic scoring's f32 calls after crowded windows
};

}  // namespace

CodebookScoring cpu_codebook_scoring() {
  // The re-ranking reproduces the AVX2 tile's arithmetic, hence needs that path too.
  const bool can = bf16_score_tiles() && score_tiles().avx2;
  const char* choice = std::getenv("CB_CODEBOOK_SCORING");
  if (choice && std::strcmp(choice, "f32") == 0) return CodebookScoring::f32;
  if (choice && std::strcmp(choice, "bf16") == 0) return can ? CodebookScoring::bf16 : CodebookScoring::f32;
  return can && cpu_bf16_dot_is_fast() ? CodebookScoring::automatic : CodebookScoring::f32;
}

void register_cpu_codebook_kernels(KernelFactoryTable& t) {
  t.add(kCodebookOp, make_kernel<CodebookKernel>, kCodebookDomain);
}

}  // namespace cb
