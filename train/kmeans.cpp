// Mini-batch k-means for codebook initialisation (contract in train/kmeans.h).
//
// Three parts:
//   * the nearest-centre sweep (assign_nearest): centres packed in panels of
//     16 ([dim][16] plus a bias -|c|^2/2 per centre), a register tile of up
//     to 6 rows x 16 centres accumulated with FMA, and only the scores that
//     beat a row's best so far leave the registers. Rows are split into
//     contiguous ranges, one per thread; each row's arithmetic is the same
//     whatever the split, so labels do not depend on the thread count;
//   * k-means++ (kmeans_plus_plus): exact D^2 draws by rejection against
//     distances that are brought up to date in batches of new centres, by
//     a tiled exact-difference kernel, on the thread pool (support/thread_pool.h);
//   * the mini-batch step: labels, then per centre the sum of its rows in
//     row order (centres are independent, so they may be split over threads
//     without changing a bit), sklearn's count-weighted update, and sklearn's
//     low-count reassignment.
#include "train/kmeans.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

// The AVX2 tiles are chosen at run time (cpu_has_avx2_fma);
// CB_MAX_CPU_ISA=portable runs the portable ones (support/cpu_features.h).
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_KMEANS_X86 1
#endif

#include "backends/cpu/score_tile.h"
#include "support/cpu_features.h"
#include "support/error.h"
#include "support/threads.h"

namespace cb {

namespace {

constexpr int kPanel = kScorePanel;        // centres per packed panel
constexpr int kTileRows = kScoreTileRows;  // rows per register tile
constexpr int64_t kBlockRows = 96;         // rows that sweep the panels together (stay in L2)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Squared euclidean distance, 16 float lanes (vectorised by the compiler).
float squared_distance(const float* a, const float* b, int64_t dim) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= dim; i += 16)
    for (int l = 0; l < 16; ++l) {
      const float d = a[i + l] - b[i + l];
      acc[l] += d * d;
    }
  for (int l = 0; i < dim; ++i, ++l) {
    const float d = a[i] - b[i];
    acc[l] += d * d;
  }
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  return (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

double squared_distance_exact(const float* a, const float* b, int64_t dim) {
  double s = 0;
  for (int64_t i = 0; i < dim; ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return s;
}

// ---------------------------------------------------------------------------
// Nearest-centre sweep.

struct PackedCenters {
  int64_t K = 0, dim = 0, panels = 0;
  std::vector<float> panel;  // [panels][dim][kPanel]
  std::vector<float> bias;   // [panels][kPanel]: -|c|^2/2, -inf for padding

  PackedCenters(const float* centers, int64_t K_, int64_t dim_) : K(K_), dim(dim_), panels((K_ + kPanel - 1) / kPanel) {
    panel.assign(size_t(panels * dim * kPanel), 0.0f);
    bias.assign(size_t(panels * kPanel), kNegInf);
    for (int64_t c = 0; c < K; ++c) {
      const float* row = centers + c * dim;
      float* dst = panel.data() + (c / kPanel) * dim * kPanel + c % kPanel;
      double norm2 = 0;
      for (int64_t d = 0; d < dim; ++d) {
        dst[d * kPanel] = row[d];
        norm2 += double(row[d]) * row[d];
      }
      bias[size_t(c)] = float(-0.5 * norm2);
    }
  }
};

// labels[i] = argmax_c x_i . c - |c|^2/2 (= argmin |x_i - c|^2), lowest c on ties.
void assign_nearest(const PackedCenters& pc, const float* rows, int64_t n, int threads, int32_t* labels) {
  const ScoreTiles& kernels = score_tiles();
  const int64_t dim = pc.dim;
  parallel_ranges(n, threads, [&](int64_t begin, int64_t end) {
    float best[kBlockRows];
    float tile[kTileRows * kPanel];
    uint32_t masks[kTileRows];
    for (int64_t b0 = begin; b0 < end; b0 += kBlockRows) {
      const int64_t rows_in_block = std::min(kBlockRows, end - b0);
      std::fill(best, best + rows_in_block, kNegInf);
      int32_t* block_labels = labels + b0;
      std::fill(block_labels, block_labels + rows_in_block, 0);
      for (int64_t p = 0; p < pc.panels; ++p) {
        const float* panel = pc.panel.data() + p * dim * kPanel;
        const float* bias = pc.bias.data() + p * kPanel;
        for (int64_t t0 = 0; t0 < rows_in_block; t0 += kTileRows) {
          const int R = int(std::min<int64_t>(kTileRows, rows_in_block - t0));
          if (!kernels.by_rows[R - 1](rows + (b0 + t0) * dim, dim, panel, bias, dim, best + t0, tile, masks)) continue;
          for (int r = 0; r < R; ++r) {
            for (uint32_t m = masks[r]; m != 0; m &= m - 1) {
              const int j = __builtin_ctz(m);
              const float s = tile[r * kPanel + j];
              if (s > best[t0 + r]) {
                best[t0 + r] = s;
                block_labels[t0 + r] = int32_t(p * kPanel + j);
              }
            }
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Exact squared distances of many rows to a few centres (k-means++ updates),
// computed as sum (x - c)^2 so that a row equal to a centre is at exactly 0
// (the x.c form of the sweep above would leave rounding noise there, and
// duplicated rows, e.g. the activations of a repeated BOS token, could then be
// drawn again as duplicate centres). Centres packed as in PackedCenters,
// without biases; a tile is kDiffRows rows x 16 centres.

constexpr int kDiffRows = 4;

struct DiffPanels {
  int64_t count = 0, dim = 0, panels = 0;
  std::vector<float> panel;  // [panels][dim][kPanel], padding centres 0

  void pack(const float* centers, int64_t count_, int64_t dim_) {
    count = count_;
    dim = dim_;
    panels = (count + kPanel - 1) / kPanel;
    panel.assign(size_t(panels * dim * kPanel), 0.0f);
    for (int64_t c = 0; c < count; ++c) {
      float* dst = panel.data() + (c / kPanel) * dim * kPanel + c % kPanel;
      for (int64_t d = 0; d < dim; ++d) dst[d * kPanel] = centers[c * dim + d];
    }
  }
};

// out[r * kPanel + j] = |x_r - c_j|^2 for R rows (stride dim) and one panel.
using DiffTileFn = void (*)(const float* rows, int64_t dim, const float* panel, float* out);

template <int R>
void diff_tile_portable(const float* rows, int64_t dim, const float* panel, float* out) {
  float acc[R][kPanel] = {};
  for (int64_t d = 0; d < dim; ++d) {
    const float* p = panel + d * kPanel;
    for (int r = 0; r < R; ++r) {
      const float a = rows[r * dim + d];
      for (int j = 0; j < kPanel; ++j) {
        const float t = a - p[j];
        acc[r][j] += t * t;
      }
    }
  }
  std::memcpy(out, acc, sizeof(acc));
}

#ifdef CB_KMEANS_X86
template <int R>
__attribute__((target("avx2,fma"))) void diff_tile_avx2(const float* rows, int64_t dim, const float* panel,
                                                        float* out) {
  __m256 lo[R], hi[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  for (int64_t d = 0; d < dim; ++d) {
    const __m256 p_lo = _mm256_loadu_ps(panel + d * kPanel), p_hi = _mm256_loadu_ps(panel + d * kPanel + 8);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_broadcast_ss(rows + r * dim + d);
      const __m256 t_lo = _mm256_sub_ps(a, p_lo), t_hi = _mm256_sub_ps(a, p_hi);
      lo[r] = _mm256_fmadd_ps(t_lo, t_lo, lo[r]);
      hi[r] = _mm256_fmadd_ps(t_hi, t_hi, hi[r]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(out + r * kPanel, lo[r]);
    _mm256_storeu_ps(out + r * kPanel + 8, hi[r]);
  }
}
#endif

struct DiffKernels {
  DiffTileFn by_rows[kDiffRows];  // by_rows[R - 1] handles R rows
  DiffKernels() {
    by_rows[0] = diff_tile_portable<1>;
    by_rows[1] = diff_tile_portable<2>;
    by_rows[2] = diff_tile_portable<3>;
    by_rows[3] = diff_tile_portable<4>;
#ifdef CB_KMEANS_X86
    if (cpu_has_avx2_fma()) {
      by_rows[0] = diff_tile_avx2<1>;
      by_rows[1] = diff_tile_avx2<2>;
      by_rows[2] = diff_tile_avx2<3>;
      by_rows[3] = diff_tile_avx2<4>;
    }
#endif
  }
};

const DiffKernels& diff_kernels() {
  static const DiffKernels kernels;
  return kernels;
}

// ---------------------------------------------------------------------------
// k-means++ (D^2 sampling), optionally greedy.
//
// The textbook loop updates every row's distance to its nearest centre after
// each new centre: K passes over all rows, each a memory-bound stream
// (n * dim * 4 bytes) with one centre's worth of arithmetic. Here the plain
// (non-greedy) draws are exact D^2 draws by rejection instead: closest[] is
// kept for the centres chosen up to some point (the "applied" ones), and a
// row x drawn in proportion to that stale closest(x) is accepted with
// probability true(x) / closest(x), where true(x) also counts the pending
// centres chosen since (their distances to x are computed for x alone). An
// accepted row is therefore drawn with probability proportional to true(x):
// exactly D^2 sampling, whatever the stale state. The pending centres are
// applied to all rows in batches (up to 1 + chosen/4 of them; measured with
// K = 1000, 24576 rows: 94-99% of the draws accepted, 21 batches), with a
// register-tiled kernel that reads each row once per batch: the work
// becomes compute-bound. After
// a run of rejections (every row's weight may have gone to 0 when there are
// fewer distinct rows than K) the pending centres are applied at once.
//
// Greedy k-means++ applies every centre at once (its candidates are compared
// on the exact potential): each step draws its candidates, computes all their
// distances in one tiled pass, and keeps the one with the lowest potential.
//
// Rows are cut into blocks of kBlock; each block keeps the sum of its closest
// (re-summed when applied), sampling walks the block sums and then one
// block's rows, and every sum is taken block by block in order, so nothing
// depends on how blocks are split over threads.

class KMeansPlusPlus {
 public:
  static constexpr int64_t kBlock = 256;
  static constexpr int kMaxRejections = 32;

  KMeansPlusPlus(const float* rows, int64_t n, int64_t dim, int64_t K, int threads, Rng& rng)
      : X_(rows), n_(n), dim_(dim), K_(K), rng_(rng), threads_(std::max(1, threads)) {
    centers_.assign(size_t(K * dim), 0.0f);
    closest_.assign(size_t(n), std::numeric_limits<float>::infinity());
    blocks_ = (n + kBlock - 1) / kBlock;
    block_sum_.assign(size_t(blocks_), 0.0);
  }

  std::vector<float> run(int trials) {
    // First centre: a uniform row (sklearn: choice with uniform sample weights).
    add_center(int64_t(rng_.below(uint64_t(n_))));
    apply_pending();
    while (chosen_ < K_) {
      if (trials > 1) {
        greedy_step(trials);
        continue;
      }
      if (chosen_ - applied_ >= std::min<int64_t>(256, 1 + chosen_ / 4)) apply_pending();
      add_center(draw());
    }
    return std::move(centers_);
  }

 private:
  void add_center(int64_t row) {
    std::memcpy(centers_.data() + chosen_ * dim_, X_ + row * dim_, size_t(dim_) * sizeof(float));
    ++chosen_;
  }

  // A row with probability proportional to its squared distance to the
  // nearest chosen centre (a uniform row when every row sits on a centre).
  int64_t draw() {
    for (int attempt = 0;; ++attempt) {
      if (attempt == kMaxRejections) apply_pending();
      if (!(total_ > 0)) return int64_t(rng_.below(uint64_t(n_)));
      const int64_t x = sample();
      if (applied_ == chosen_) return x;
      const float stale = closest_[size_t(x)];
      float now = stale;
      for (int64_t p = applied_; p < chosen_; ++p)
        now = std::min(now, squared_distance(X_ + x * dim_, centers_.data() + p * dim_, dim_));
      if (rng_.uniform_double() * stale < now) return x;
    }
  }

  // A row with probability closest / total_ (total_ > 0).
  int64_t sample() {
    const double target = rng_.uniform_double() * total_;
    double acc = 0, before = 0;
    int64_t block = 0;
    for (int64_t b = 0; b < blocks_; ++b) {
      if (!(block_sum_[size_t(b)] > 0)) continue;
      block = b;
      before = acc;
      acc += block_sum_[size_t(b)];
      if (acc > target) break;
    }
    // Inside the block (rounding may leave target just past its rows' sum:
    // then its last row with a positive distance).
    acc = before;
    int64_t pick = -1;
    const int64_t end = std::min(n_, (block + 1) * kBlock);
    for (int64_t x = block * kBlock; x < end; ++x) {
      if (!(closest_[size_t(x)] > 0)) continue;
      pick = x;
      acc += closest_[size_t(x)];
      if (acc > target) break;
    }
    return pick;
  }

  // Runs fn(block_begin, block_end) over the row blocks, on the thread pool
  // when the pass has ~50 us of work or more.
  template <typename Fn>
  void for_blocks(int64_t centres, Fn&& fn) {
    if (threads_ > 1 && n_ * dim_ * centres >= (int64_t(1) << 20))
      parallel_ranges(blocks_, threads_, fn);
    else
      fn(int64_t(0), blocks_);
  }

  // Calls visit(x, distances) for every row x of blocks [b0, b1), distances
  // to the packed centres at distances[0 .. packed.count).
  template <typename Visit>
  void distances_in_blocks(const DiffPanels& packed, int64_t b0, int64_t b1, Visit&& visit) const {
    const DiffKernels& kernels = diff_kernels();
    float tile[kDiffRows * kPanel];
    std::vector<float> row_dist(static_cast<size_t>(kDiffRows * packed.panels * kPanel));
    const int64_t stride = packed.panels * kPanel;
    for (int64_t x0 = b0 * kBlock, end = std::min(n_, b1 * kBlock); x0 < end; x0 += kDiffRows) {
      const int R = int(std::min<int64_t>(kDiffRows, end - x0));
      for (int64_t p = 0; p < packed.panels; ++p) {
        kernels.by_rows[R - 1](X_ + x0 * dim_, dim_, packed.panel.data() + p * dim_ * kPanel, tile);
        for (int r = 0; r < R; ++r)
          std::memcpy(row_dist.data() + r * stride + p * kPanel, tile + r * kPanel, kPanel * sizeof(float));
      }
      for (int r = 0; r < R; ++r) visit(x0 + r, row_dist.data() + r * stride);
    }
  }

  void resum_block(int64_t b) {
    double s = 0;
    for (int64_t x = b * kBlock, end = std::min(n_, (b + 1) * kBlock); x < end; ++x) s += closest_[size_t(x)];
    block_sum_[size_t(b)] = s;
  }

  void refresh_total() {
    total_ = 0;
    for (double s : block_sum_) total_ += s;
  }

  // closest = min(closest, distance to each pending centre), for every row.
  void apply_pending() {
    const int64_t count = chosen_ - applied_;
    if (count == 0) return;
    DiffPanels packed;
    packed.pack(centers_.data() + applied_ * dim_, count, dim_);
    for_blocks(count, [&](int64_t b0, int64_t b1) {
      distances_in_blocks(packed, b0, b1, [&](int64_t x, const float* dist) {
        float m = closest_[size_t(x)];
        for (int64_t c = 0; c < count; ++c) m = std::min(m, dist[c]);
        closest_[size_t(x)] = m;
      });
      for (int64_t b = b0; b < b1; ++b) resum_block(b);
    });
    applied_ = chosen_;
    refresh_total();
  }

  // sklearn's greedy step: `trials` D^2 candidates, the one with the lowest
  // potential after adding it wins (the first drawn on ties, like argmin).
  void greedy_step(int trials) {
    if (!(total_ > 0)) {
      add_center(int64_t(rng_.below(uint64_t(n_))));
      applied_ = chosen_;  // nothing can get closer than 0
      return;
    }
    std::vector<int64_t> candidates(static_cast<size_t>(trials));
    std::vector<float> candidate_rows(static_cast<size_t>(trials * dim_));
    for (int t = 0; t < trials; ++t) {
      candidates[size_t(t)] = sample();
      std::memcpy(candidate_rows.data() + t * dim_, X_ + candidates[size_t(t)] * dim_, size_t(dim_) * sizeof(float));
    }
    DiffPanels packed;
    packed.pack(candidate_rows.data(), trials, dim_);
    candidate_dist_.resize(size_t(n_ * trials));
    block_gain_.assign(size_t(blocks_ * trials), 0.0);
    for_blocks(trials, [&](int64_t b0, int64_t b1) {
      distances_in_blocks(packed, b0, b1, [&](int64_t x, const float* dist) {
        const float cur = closest_[size_t(x)];
        double* gain = block_gain_.data() + (x / kBlock) * trials;
        for (int t = 0; t < trials; ++t) {
          candidate_dist_[size_t(x * trials + t)] = dist[t];
          if (dist[t] < cur) gain[t] += double(cur) - double(dist[t]);
        }
      });
    });
    int best = 0;
    double best_gain = 0;
    for (int t = 0; t < trials; ++t) {
      double gain = 0;
      for (int64_t b = 0; b < blocks_; ++b) gain += block_gain_[size_t(b * trials + t)];
      if (t == 0 || total_ - gain < total_ - best_gain) {
        best = t;
        best_gain = gain;
      }
    }
    add_center(candidates[size_t(best)]);
    for (int64_t x = 0; x < n_; ++x)
      closest_[size_t(x)] = std::min(closest_[size_t(x)], candidate_dist_[size_t(x * trials + best)]);
    for (int64_t b = 0; b < blocks_; ++b) resum_block(b);
    applied_ = chosen_;
    refresh_total();
  }

  const float* X_;
  int64_t n_, dim_, K_;
  Rng& rng_;
  int threads_;
  int64_t blocks_ = 0;
  int64_t chosen_ = 0;   // centres drawn so far
  int64_t applied_ = 0;  // closest_ accounts for centres [0, applied_)
  double total_ = 0;     // sum of block_sum_, in block order
  std::vector<float> centers_;
  std::vector<float> closest_;         // per row: squared distance to the nearest applied centre
  std::vector<double> block_sum_;      // per row block: sum of closest_
  std::vector<double> block_gain_;     // greedy: per row block and candidate, drop of the potential
  std::vector<float> candidate_dist_;  // greedy: per row and candidate, squared distance
};

// Throws on an inf or NaN in rows. x * 0 is 0 for finite x and NaN
// otherwise: one vectorised pass, then a scalar one to name the culprit.
void check_finite(const float* rows, int64_t n, int64_t dim) {
  float probe[16] = {};
  const int64_t total = n * dim;
  int64_t i = 0;
  for (; i + 16 <= total; i += 16)
    for (int l = 0; l < 16; ++l) probe[l] += rows[i + l] * 0.0f;
  for (int l = 0; i < total; ++i, ++l) probe[l] += rows[i] * 0.0f;
  if (std::all_of(probe, probe + 16, [](float p) { return p == 0.0f; })) return;
  for (i = 0; i < total; ++i)
    CB_CHECK(std::isfinite(rows[i]), "MiniBatchKMeans::partial_fit: row " << i / dim << " has a non-finite value ("
                                                                          << rows[i] << " at column " << i % dim
                                                                          << ")");
}

}  // namespace

// ---------------------------------------------------------------------------

std::vector<float> kmeans_plus_plus(const float* rows, int64_t n, int64_t dim, int64_t num_clusters, Rng& rng,
                                    int local_trials, int num_threads) {
  CB_CHECK(num_clusters > 0 && dim > 0,
           "kmeans_plus_plus: num_clusters (" << num_clusters << ") and dim (" << dim << ") must be positive");
  CB_CHECK(n >= num_clusters && n < (int64_t(1) << 31),
           "kmeans_plus_plus: needs between num_clusters (" << num_clusters << ") and 2^31 - 1 rows, got " << n);
  CB_CHECK(rows != nullptr, "kmeans_plus_plus: null rows");
  CB_CHECK(local_trials >= 0, "kmeans_plus_plus: local_trials must be >= 0, got " << local_trials);
  CB_CHECK(num_threads >= 1, "kmeans_plus_plus: num_threads must be at least 1, got " << num_threads);
  const int trials = local_trials == 0 ? 2 + int(std::log(double(num_clusters))) : local_trials;
  KMeansPlusPlus init(rows, n, dim, num_clusters, num_threads, rng);
  return init.run(trials);
}

MiniBatchKMeans::MiniBatchKMeans(const KMeansConfig& cfg) : cfg_(cfg), rng_(cfg.seed) {
  CB_CHECK(cfg.num_clusters > 0, "MiniBatchKMeans: num_clusters must be positive, got " << cfg.num_clusters);
  CB_CHECK(cfg.num_clusters < (int64_t(1) << 31),
           "MiniBatchKMeans: num_clusters " << cfg.num_clusters << " is too large (at most 2^31 - 1)");
  CB_CHECK(cfg.dim > 0, "MiniBatchKMeans: dim must be positive, got " << cfg.dim);
  CB_CHECK(cfg.num_threads >= 1, "MiniBatchKMeans: num_threads must be at least 1, got " << cfg.num_threads);
  CB_CHECK(
      cfg.kmeanspp_local_trials >= 0,
      "MiniBatchKMeans: kmeanspp_local_trials must be >= 0 (0 = 2 + floor(ln K)), got " << cfg.kmeanspp_local_trials);
  CB_CHECK(cfg.init_size == 0 || cfg.init_size >= cfg.num_clusters,
           "MiniBatchKMeans: init_size must be 0 (all rows) or at least num_clusters (" << cfg.num_clusters << "), got "
                                                                                        << cfg.init_size);
  CB_CHECK(cfg.reassignment_ratio >= 0 && cfg.reassignment_ratio <= 1,
           "MiniBatchKMeans: reassignment_ratio must be in [0, 1], got " << cfg.reassignment_ratio);
}

void MiniBatchKMeans::partial_fit(const float* rows, int64_t n) {
  CB_CHECK(n >= 0, "MiniBatchKMeans::partial_fit: negative row count " << n);
  CB_CHECK(rows != nullptr || n == 0, "MiniBatchKMeans::partial_fit: null rows with n = " << n);
  CB_CHECK(n < (int64_t(1) << 31), "MiniBatchKMeans::partial_fit: " << n << " rows in one call are too many");
  if (n == 0) return;
  check_finite(rows, n, cfg_.dim);
  rows_seen_ += n;
  if (initialized_) {
    minibatch_step(rows, n);
    return;
  }
  buffer_.insert(buffer_.end(), rows, rows + n * cfg_.dim);
  if (int64_t(buffer_.size()) / cfg_.dim < cfg_.num_clusters) return;
  initialize_from_buffer();
}

void MiniBatchKMeans::initialize_from_buffer() {
  const int64_t n = int64_t(buffer_.size()) / cfg_.dim;
  CB_CHECK(n < (int64_t(1) << 31), "MiniBatchKMeans: " << n << " buffered rows are too many for initialisation");
  if (cfg_.init_size > 0 && cfg_.init_size < n) {
    // sklearn: X[random_state.randint(0, n, init_size)].
    std::vector<float> sample(static_cast<size_t>(cfg_.init_size * cfg_.dim));
    for (int64_t i = 0; i < cfg_.init_size; ++i) {
      const int64_t r = int64_t(rng_.below(uint64_t(n)));
      std::memcpy(sample.data() + i * cfg_.dim, buffer_.data() + r * cfg_.dim, size_t(cfg_.dim) * sizeof(float));
    }
    centers_ = kmeans_plus_plus(sample.data(), cfg_.init_size, cfg_.dim, cfg_.num_clusters, rng_,
                                cfg_.kmeanspp_local_trials, cfg_.num_threads);
  } else {
    centers_ = kmeans_plus_plus(buffer_.data(), n, cfg_.dim, cfg_.num_clusters, rng_, cfg_.kmeanspp_local_trials,
                                cfg_.num_threads);
  }
  counts_.assign(size_t(cfg_.num_clusters), 0.0);
  initialized_ = true;
  minibatch_step(buffer_.data(), n);
  std::vector<float>().swap(buffer_);
}

void MiniBatchKMeans::minibatch_step(const float* rows, int64_t n) {
  const int64_t K = cfg_.num_clusters, dim = cfg_.dim;
  // sklearn decides on reassignment before the step, from the old counts.
  rows_since_reassign_ += n;
  bool reassign = false;
  if (std::any_of(counts_.begin(), counts_.end(), [](double c) { return c == 0; }) || rows_since_reassign_ >= 10 * K) {
    rows_since_reassign_ = 0;
    reassign = true;
  }

  std::vector<int32_t> labels(static_cast<size_t>(n));
  {
    PackedCenters pc(centers_.data(), K, dim);
    assign_nearest(pc, rows, n, cfg_.num_threads, labels.data());
  }

  // Rows grouped by centre, in row order (a counting sort).
  std::vector<int64_t> start(size_t(K + 1), 0);
  for (int32_t l : labels) ++start[size_t(l) + 1];
  for (int64_t c = 0; c < K; ++c) start[size_t(c + 1)] += start[size_t(c)];
  std::vector<int32_t> order(static_cast<size_t>(n));
  {
    std::vector<int64_t> next(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[size_t(next[size_t(labels[size_t(i)])]++)] = int32_t(i);
  }
  // centre = (centre * count + sum of new rows) / (count + n_c), per centre.
  parallel_ranges(K, cfg_.num_threads, [&](int64_t c_begin, int64_t c_end) {
    std::vector<double> sum(static_cast<size_t>(dim));
    for (int64_t c = c_begin; c < c_end; ++c) {
      const int64_t b = start[size_t(c)], e = start[size_t(c + 1)];
      if (b == e) continue;
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int64_t k = b; k < e; ++k) {
        const float* x = rows + int64_t(order[size_t(k)]) * dim;
        for (int64_t d = 0; d < dim; ++d) sum[size_t(d)] += x[d];
      }
      const double old_count = counts_[size_t(c)], new_count = old_count + double(e - b);
      float* centre = centers_.data() + c * dim;
      for (int64_t d = 0; d < dim; ++d) centre[d] = float((double(centre[d]) * old_count + sum[size_t(d)]) / new_count);
      counts_[size_t(c)] = new_count;
    }
  });

  if (!reassign || cfg_.reassignment_ratio <= 0) return;
  const double max_count = *std::max_element(counts_.begin(), counts_.end());
  std::vector<char> to_reassign(static_cast<size_t>(K));
  int64_t how_many = 0;
  for (int64_t c = 0; c < K; ++c) {
    to_reassign[size_t(c)] = counts_[size_t(c)] < cfg_.reassignment_ratio * max_count;
    how_many += to_reassign[size_t(c)];
  }
  if (how_many == 0) return;
  // At most half the batch, the lowest counts first (ties: lower index first).
  const int64_t limit = int64_t(0.5 * double(n));
  if (double(how_many) > 0.5 * double(n)) {
    std::vector<int64_t> by_count(static_cast<size_t>(K));
    std::iota(by_count.begin(), by_count.end(), int64_t(0));
    std::stable_sort(by_count.begin(), by_count.end(),
                     [&](int64_t a, int64_t b) { return counts_[size_t(a)] < counts_[size_t(b)]; });
    for (int64_t k = limit; k < K; ++k) to_reassign[size_t(by_count[size_t(k)])] = 0;
    how_many = std::min(how_many, limit);
    if (how_many == 0) return;
  }
  const std::vector<int64_t> picks = rng_.choice_without_replacement(n, how_many);
  double min_kept = std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < K; ++c)
    if (!to_reassign[size_t(c)]) min_kept = std::min(min_kept, counts_[size_t(c)]);
  size_t next_pick = 0;
  for (int64_t c = 0; c < K; ++c) {
    if (!to_reassign[size_t(c)]) continue;
    std::memcpy(centers_.data() + c * dim, rows + picks[next_pick++] * dim, size_t(dim) * sizeof(float));
    counts_[size_t(c)] = min_kept;
  }
}

void MiniBatchKMeans::assign(const float* rows, int64_t n, int64_t* out) const {
  CB_CHECK(initialized_, "MiniBatchKMeans::assign: not initialised yet (" << rows_seen_ << " of " << cfg_.num_clusters
                                                                          << " rows seen)");
  CB_CHECK(n >= 0, "MiniBatchKMeans::assign: negative row count " << n);
  CB_CHECK(n == 0 || (rows != nullptr && out != nullptr), "MiniBatchKMeans::assign: null rows or output");
  if (n == 0) return;
  std::vector<int32_t> labels(static_cast<size_t>(n));
  PackedCenters pc(centers_.data(), cfg_.num_clusters, cfg_.dim);
  assign_nearest(pc, rows, n, cfg_.num_threads, labels.data());
  for (int64_t i = 0; i < n; ++i) out[i] = labels[size_t(i)];
}

double MiniBatchKMeans::mean_squared_distance(const float* rows, int64_t n) const {
  if (n == 0) return 0.0;
  std::vector<int64_t> labels(static_cast<size_t>(n));
  assign(rows, n, labels.data());
  double total = 0;
  for (int64_t i = 0; i < n; ++i)
    total += squared_distance_exact(rows + i * cfg_.dim, centers_.data() + labels[size_t(i)] * cfg_.dim, cfg_.dim);
  return total / double(n);
}

}  // namespace cb
