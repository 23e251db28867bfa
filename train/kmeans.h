// Mini-batch k-means that initialises a codebook from the model's own
// activations (the original wraps sklearn's MiniBatchKMeans and calls
// partial_fit once per training batch; unlike the original, group codebooks
// get their centres too, so this class fits ONE codebook member and the
// caller runs one instance per member, seeded seed + member index like the
// original's random_state).
//
// What partial_fit does, following sklearn's MiniBatchKMeans.partial_fit:
//   * Until num_clusters rows have been seen, rows are only buffered (sklearn
//     refuses a first batch smaller than K; buffering lets small batches add
//     up instead).
//   * Initialisation, once: k-means++ over all buffered rows (or
//     init_size of them drawn with replacement, as sklearn), seeded by
//     cfg.seed. The first centre is a uniform row, each next one a row drawn
//     with probability proportional to its squared distance to the nearest
//     centre so far (D^2 sampling). With kmeanspp_local_trials > 1 each step
//     draws that many candidates and keeps the one that lowers the total
//     squared distance most (sklearn's greedy k-means++, which uses
//     2 + floor(ln K) trials; 0 selects that number).
//   * Every call (the initialising one too, on the buffered rows, as sklearn
//     does init then one step on the same batch) runs one mini-batch step:
//     assign every row to its nearest centre (squared euclidean, ties to the
//     lower centre index), then per centre c with n_c > 0 assigned rows:
//       count[c] += n_c;  centre_c += (sum of its rows - n_c * centre_c) / count[c]
//     i.e. the centre is the running mean of every row it was ever assigned.
//   * sklearn's low-count reassignment, with its rule: when some count is 0
//     or at least 10 * K rows have gone by since the last reassignment, the
//     centres whose count is below reassignment_ratio * max(count) (at most
//     half the batch, the lowest counts first) move to distinct random rows
//     of the batch, and their counts become the smallest count among the
//     others. sklearn counts min(batch_size, n) rows per call; here n (the
//     same when batch_size >= n, as in the original's main.yaml, 24576).
//     reassignment_ratio = 0 turns it off.
//
// Determinism: all randomness comes from cb::Rng(cfg.seed); the result is a
// function of the seed and the sequence of batches only, identical for any
// num_threads (threads split rows, or centres, into ranges whose arithmetic
// does not depend on the split; every sum is taken in a fixed order: the
// per-centre sums of the update in row order, k-means++'s sums per block of
// rows, block by block).
//
// Speed: the assignment (n x K x dim, the hot part) sweeps a packed copy of
// the centres (panels of 16, [dim][16]) with an AVX2/FMA 6-row x 16-centre
// register tile, ranking by x.c - |c|^2/2 and keeping only scores that beat
// the row's best so far, so the n x K distance matrix never exists. Threads:
// row ranges on the thread pool (support/thread_pool.h). k-means++ is exact D^2 sampling done by
// rejection against distances updated in batches of new centres, so it also
// runs as a compute-bound tiled kernel (about twice one assignment) instead
// of K memory-bound passes over the rows (see kmeans.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "support/rng.h"

namespace cb {

struct KMeansConfig {
  int64_t num_clusters = 0;  // K
  int64_t dim = 0;           // row length
  uint64_t seed = 0;         // sklearn's random_state
  int num_threads = 1;       // threads (assignment, update, k-means++); results do not depend on it
  // k-means++ candidates per step: 1 = plain k-means++, 0 = sklearn's greedy
  // 2 + floor(ln K). Each trial costs about one more plain k-means++.
  int kmeanspp_local_trials = 1;
  // Rows k-means++ draws its centres from: 0 = all buffered rows (what the
  // original's main.yaml amounts to: sklearn's init_size defaults to
  // 3 * batch_size = 73728, more than a batch); otherwise sklearn's
  // init_size: that many rows drawn uniformly with replacement (at least
  // num_clusters). k-means++ costs about num_clusters * rows * dim.
  int64_t init_size = 0;
  // sklearn's reassignment_ratio (default 0.01); 0 = never reassign.
  double reassignment_ratio = 0.01;
};

// k-means++ seeding of num_clusters centres from n >= num_clusters rows
// (n x dim, row-major), as partial_fit's initialisation does it: returns
// num_clusters x dim centres, each a copy of a row. local_trials as
// KMeansConfig::kmeanspp_local_trials (1 = plain, 0 = 2 + floor(ln K)).
// When every row already sits on a centre, the remaining centres are uniform
// rows (duplicates). Deterministic for a given rng state, whatever num_threads.
std::vector<float> kmeans_plus_plus(const float* rows, int64_t n, int64_t dim, int64_t num_clusters, Rng& rng,
                                    int local_trials = 1, int num_threads = 1);

class MiniBatchKMeans {
 public:
  explicit MiniBatchKMeans(const KMeansConfig& cfg);

  // rows: n x dim, row-major float32. See the header comment.
  void partial_fit(const float* rows, int64_t n);

  bool initialized() const { return initialized_; }
  // num_clusters x dim, row-major; empty until initialized().
  const std::vector<float>& centers() const { return centers_; }
  // Rows assigned to each centre so far (sklearn's _counts); empty until initialized().
  const std::vector<double>& counts() const { return counts_; }
  // Every row given to partial_fit, buffered ones included.
  int64_t rows_seen() const { return rows_seen_; }
  const KMeansConfig& config() const { return cfg_; }

  // Mean squared euclidean distance of rows to their nearest centre (sklearn's
  // inertia / n), for tests and logs. Needs initialized(); 0 for n = 0.
  double mean_squared_distance(const float* rows, int64_t n) const;
  // Index of the nearest centre of every row (ties to the lower index). Needs initialized().
  void assign(const float* rows, int64_t n, int64_t* out) const;

 private:
  void initialize_from_buffer();
  void minibatch_step(const float* rows, int64_t n);

  KMeansConfig cfg_;
  bool initialized_ = false;
  int64_t rows_seen_ = 0;
  int64_t rows_since_reassign_ = 0;
  std::vector<float> buffer_;   // rows seen before initialisation
  std::vector<float> centers_;  // K x dim
  std::vector<double> counts_;  // K
  Rng rng_;                     // seeded with cfg.seed; carried across calls like sklearn's random_state
};

}  // namespace cb
