// Mini-batch k-means (train/kmeans.h): cluster recovery on Gaussian blobs,
// k-means++'s draw probabilities against exact enumeration (and greedy
// k-means++ beating plain), the fast assignment against brute force,
// sklearn's update and reassignment rules against a direct computation,
// determinism (seed, thread count, batching before initialisation) and bad
// input. Timing: bench/bench_kernels --benchmark_filter=kmeans.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <tuple>
#include <vector>

#include "support/error.h"
#include "support/rng.h"
#include "train/kmeans.h"

namespace cb {
namespace {

std::vector<float> random_rows(int64_t n, int64_t dim, uint64_t seed, double stddev = 1.0) {
  std::vector<float> rows(static_cast<size_t>(n * dim));
  Rng rng(seed);
  rng.fill_normal(rows.data(), n * dim, 0.0, stddev);
  return rows;
}

double squared_distance(const float* a, const float* b, int64_t dim) {
  double s = 0;
  for (int64_t d = 0; d < dim; ++d) {
    const double t = double(a[d]) - double(b[d]);
    s += t * t;
  }
  return s;
}

// n rows around `true_centers` (K x dim) with N(0, noise^2) per coordinate;
// row i belongs to blob (a random one).
std::vector<float> blob_rows(const std::vector<float>& true_centers, int64_t K, int64_t dim, int64_t n, double noise,
                             Rng& rng) {
  std::vector<float> rows(static_cast<size_t>(n * dim));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t blob = int64_t(rng.below(uint64_t(K)));
    for (int64_t d = 0; d < dim; ++d)
      rows[size_t(i * dim + d)] = true_centers[size_t(blob * dim + d)] + float(rng.normal(0.0, noise));
  }
  return rows;
}

TEST(KMeans, RecoversWellSeparatedBlobs) {
  const int64_t K = 8, dim = 16;
  const double noise = 0.5;
  const std::vector<float> truth = random_rows(K, dim, 11, 10.0);
  for (int variant = 0; variant < 3; ++variant) {  // plain, greedy k-means++, k-means++ on a subsample
    const int trials = variant == 1 ? 0 : 1;
    KMeansConfig cfg{K, dim, 3};
    cfg.kmeanspp_local_trials = trials;
    if (variant == 2) cfg.init_size = 300;
    MiniBatchKMeans km(cfg);
    Rng rng(5);
    for (int batch = 0; batch < 4; ++batch) {
      const std::vector<float> rows = blob_rows(truth, K, dim, 1000, noise, rng);
      km.partial_fit(rows.data(), 1000);
    }
    ASSERT_TRUE(km.initialized());
    EXPECT_EQ(km.rows_seen(), 4000);
    const std::vector<float>& found = km.centers();
    for (int64_t t = 0; t < K; ++t) {
      double nearest = std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < K; ++c)
        nearest = std::min(nearest, squared_distance(&truth[size_t(t * dim)], &found[size_t(c * dim)], dim));
      EXPECT_LT(std::sqrt(nearest), 0.2) << "true centre " << t << ", variant " << variant;
    }
    const std::vector<float> test_rows = blob_rows(truth, K, dim, 2000, noise, rng);
    const double msd = km.mean_squared_distance(test_rows.data(), 2000);
    const double expected = double(dim) * noise * noise;  // 4
    EXPECT_NEAR(msd, expected, 0.1 * expected) << "variant " << variant;
  }
}

// k-means++ draws the first centre uniformly and each next one with
// probability proportional to the squared distance to the nearest centre so
// far: the frequency of every centre set over many seeds matches the exact
// probability, summed over all draw orders. K = 5 makes the 5th draw go
// through the rejection step against a pending, not yet applied centre.
TEST(KMeans, KMeansPlusPlusDrawsWithSquaredDistanceProbabilities) {
  const int64_t n = 8, dim = 2, K = 5;
  const std::vector<float> rows = random_rows(n, dim, 17);
  auto d2 = [&](int64_t a, int64_t b) { return squared_distance(&rows[size_t(a * dim)], &rows[size_t(b * dim)], dim); };
  std::map<std::vector<int64_t>, double> exact;
  // Every draw order, with its probability.
  std::function<void(std::vector<int64_t>&, const std::vector<double>&, double)> expand =
      [&](std::vector<int64_t>& drawn, const std::vector<double>& closest, double p) {
        if (int64_t(drawn.size()) == K) {
          std::vector<int64_t> set = drawn;
          std::sort(set.begin(), set.end());
          exact[set] += p;
          return;
        }
        double total = 0;
        for (double c : closest) total += c;
        for (int64_t s = 0; s < n; ++s) {
          const double weight = drawn.empty() ? 1.0 / double(n) : closest[size_t(s)] / total;
          if (weight == 0) continue;
          std::vector<double> next(closest);
          for (int64_t x = 0; x < n; ++x) next[size_t(x)] = std::min(next[size_t(x)], d2(x, s));
          drawn.push_back(s);
          expand(drawn, next, p * weight);
          drawn.pop_back();
        }
      };
  std::vector<int64_t> drawn;
  expand(drawn, std::vector<double>(size_t(n), std::numeric_limits<double>::infinity()), 1.0);

  const int runs = 40000;
  std::map<std::vector<int64_t>, int> seen;
  for (int run = 0; run < runs; ++run) {
    Rng rng(static_cast<uint64_t>(run));
    const std::vector<float> centers = kmeans_plus_plus(rows.data(), n, dim, K, rng);
    std::vector<int64_t> set;
    for (int64_t c = 0; c < K; ++c)
      for (int64_t x = 0; x < n; ++x)
        if (squared_distance(&centers[size_t(c * dim)], &rows[size_t(x * dim)], dim) == 0) set.push_back(x);
    ASSERT_EQ(set.size(), size_t(K)) << "centres must be distinct rows";
    std::sort(set.begin(), set.end());
    ++seen[set];
  }
  double total = 0;
  for (const auto& [set, p] : exact) {
    total += p;
    const double freq = double(seen[set]) / runs;
    EXPECT_NEAR(freq, p, 5 * std::sqrt(p * (1 - p) / runs) + 1e-4)
        << "centre set {" << set[0] << ", " << set[1] << ", " << set[2] << ", " << set[3] << ", " << set[4] << "}";
  }
  EXPECT_NEAR(total, 1.0, 1e-9);
  for (const auto& [set, count] : seen) EXPECT_TRUE(exact.count(set)) << "impossible set drawn";
}

// Greedy k-means++ keeps, of its 2 + ln K candidates per step, the one that
// lowers the potential most: its seeding has a clearly lower potential than
// plain k-means++ on average.
TEST(KMeans, GreedyKMeansPlusPlusLowersThePotential) {
  const int64_t n = 600, dim = 8, K = 30;
  const std::vector<float> rows = random_rows(n, dim, 19);
  auto potential = [&](const std::vector<float>& centers) {
    double total = 0;
    for (int64_t x = 0; x < n; ++x) {
      double best = std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < K; ++c)
        best = std::min(best, squared_distance(&rows[size_t(x * dim)], &centers[size_t(c * dim)], dim));
      total += best;
    }
    return total;
  };
  double plain = 0, greedy = 0;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Rng a(seed), b(seed);
    plain += potential(kmeans_plus_plus(rows.data(), n, dim, K, a, 1));
    greedy += potential(kmeans_plus_plus(rows.data(), n, dim, K, b, 0));
  }
  EXPECT_LT(greedy, 0.95 * plain) << "mean potential: plain " << plain / 20 << ", greedy " << greedy / 20;
}

// The packed AVX2 sweep against brute force: shapes that leave partial
// panels (K % 16), partial row tiles and blocks, and odd dims.
TEST(KMeans, AssignmentMatchesBruteForce) {
  struct Shape {
    int64_t K, dim, n;
  };
  for (const Shape& s : {Shape{37, 45, 301}, Shape{16, 3, 97}, Shape{5, 128, 200}, Shape{130, 32, 250}}) {
    KMeansConfig cfg{s.K, s.dim, 1};
    cfg.num_threads = 2;
    MiniBatchKMeans km(cfg);
    const std::vector<float> fit = random_rows(std::max<int64_t>(s.K, 150), s.dim, 21);
    km.partial_fit(fit.data(), int64_t(fit.size()) / s.dim);
    // Every other row near a random centre (so every centre, the last
    // panel's too, is somebody's nearest), the rest plain random rows.
    const std::vector<float>& centers = km.centers();
    std::vector<float> rows = random_rows(s.n, s.dim, 22);
    Rng pick(23);
    for (int64_t i = 0; i < s.n; i += 2) {
      const int64_t c = int64_t(pick.below(uint64_t(s.K)));
      for (int64_t d = 0; d < s.dim; ++d)
        rows[size_t(i * s.dim + d)] = centers[size_t(c * s.dim + d)] + 0.1f * rows[size_t(i * s.dim + d)];
    }
    std::vector<int64_t> labels(static_cast<size_t>(s.n));
    km.assign(rows.data(), s.n, labels.data());
    int64_t exact = 0;
    double total = 0;
    for (int64_t i = 0; i < s.n; ++i) {
      int64_t best = 0;
      double best_d = std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < s.K; ++c) {
        const double d = squared_distance(&rows[size_t(i * s.dim)], &centers[size_t(c * s.dim)], s.dim);
        if (d < best_d) {
          best_d = d;
          best = c;
        }
      }
      ASSERT_GE(labels[size_t(i)], 0);
      ASSERT_LT(labels[size_t(i)], s.K);
      const double got = squared_distance(&rows[size_t(i * s.dim)], &centers[size_t(labels[size_t(i)] * s.dim)], s.dim);
      EXPECT_LE(got, best_d * (1 + 1e-5) + 1e-5) << "row " << i << " K " << s.K << " dim " << s.dim;
      exact += labels[size_t(i)] == best;
      total += best_d;
    }
    EXPECT_GE(exact, s.n - 2) << "K " << s.K << " dim " << s.dim;  // near-ties aside
    EXPECT_NEAR(km.mean_squared_distance(rows.data(), s.n), total / double(s.n), 1e-6 * total / double(s.n));
  }
}

// One step after initialisation follows sklearn's rule exactly:
// centre = (centre * count + sum of assigned rows) / (count + n_c).
TEST(KMeans, MiniBatchUpdateFollowsSklearn) {
  const int64_t K = 20, dim = 24, n = 300;
  KMeansConfig cfg{K, dim, 9};
  cfg.reassignment_ratio = 0;
  MiniBatchKMeans km(cfg);
  const std::vector<float> first = random_rows(n, dim, 31);
  km.partial_fit(first.data(), n);
  const std::vector<float> before = km.centers();
  const std::vector<double> counts_before = km.counts();
  double total = 0;
  for (double c : counts_before) total += c;
  EXPECT_EQ(total, double(n));  // the initialising batch was stepped on too

  const std::vector<float> second = random_rows(n, dim, 32);
  std::vector<int64_t> labels(static_cast<size_t>(n));
  km.assign(second.data(), n, labels.data());  // same centres as the step will see
  std::vector<double> sum(size_t(K * dim), 0.0), assigned(size_t(K), 0.0);
  for (int64_t i = 0; i < n; ++i) {
    assigned[size_t(labels[size_t(i)])] += 1;
    for (int64_t d = 0; d < dim; ++d) sum[size_t(labels[size_t(i)] * dim + d)] += second[size_t(i * dim + d)];
  }
  km.partial_fit(second.data(), n);
  for (int64_t c = 0; c < K; ++c) {
    const double count = counts_before[size_t(c)] + assigned[size_t(c)];
    EXPECT_EQ(km.counts()[size_t(c)], count);
    for (int64_t d = 0; d < dim; ++d) {
      const double expected =
          assigned[size_t(c)] == 0
              ? before[size_t(c * dim + d)]
              : (before[size_t(c * dim + d)] * counts_before[size_t(c)] + sum[size_t(c * dim + d)]) / count;
      EXPECT_NEAR(km.centers()[size_t(c * dim + d)], expected, 1e-5) << "centre " << c << " coord " << d;
    }
  }
}

// K distinct rows, K clusters: k-means++ must pick every row once (a row on
// a centre has weight 0), and the step leaves each centre on its row.
TEST(KMeans, AsManyRowsAsClustersGivesTheRows) {
  const int64_t K = 50, dim = 7;
  const std::vector<float> rows = random_rows(K, dim, 41);
  MiniBatchKMeans km(KMeansConfig{K, dim, 2});
  km.partial_fit(rows.data(), K);
  ASSERT_TRUE(km.initialized());
  std::vector<int> used(size_t(K), 0);
  for (int64_t c = 0; c < K; ++c) {
    int64_t match = -1;
    for (int64_t r = 0; r < K; ++r)
      if (squared_distance(&km.centers()[size_t(c * dim)], &rows[size_t(r * dim)], dim) == 0) match = r;
    ASSERT_GE(match, 0) << "centre " << c << " is not a data row";
    ++used[size_t(match)];
    EXPECT_EQ(km.counts()[size_t(c)], 1.0);
  }
  for (int64_t r = 0; r < K; ++r) EXPECT_EQ(used[size_t(r)], 1) << "row " << r;
}

// sklearn's reassignment: after the first step (counts all 0 before it), a
// centre with count < 0.01 * max moves onto a batch row and takes the
// smallest count of the others.
TEST(KMeans, LowCountCentresAreReassigned) {
  const int64_t K = 4, dim = 5, copies = 1000;
  const std::vector<float> points = random_rows(K, dim, 51, 5.0);
  std::vector<float> rows;
  for (int64_t p = 0; p < K; ++p)
    for (int64_t c = 0; c < (p == 2 ? 1 : copies); ++c)
      rows.insert(rows.end(), points.begin() + p * dim, points.begin() + (p + 1) * dim);
  const int64_t n = int64_t(rows.size()) / dim;
  int moved_total = 0;
  for (double ratio : {0.01, 0.0}) {
    KMeansConfig cfg{K, dim, 7};
    cfg.reassignment_ratio = ratio;
    MiniBatchKMeans km(cfg);
    km.partial_fit(rows.data(), n);
    int on_singleton = 0, count_one = 0;
    for (int64_t c = 0; c < K; ++c) {
      on_singleton += squared_distance(&km.centers()[size_t(c * dim)], &points[size_t(2 * dim)], dim) == 0;
      count_one += km.counts()[size_t(c)] == 1.0;
      if (ratio > 0) {
        EXPECT_EQ(km.counts()[size_t(c)], double(copies));
      }
    }
    if (ratio > 0) {
      moved_total += on_singleton;
      // The reassigned centre sits on a data row (almost surely a repeated point).
      for (int64_t c = 0; c < K; ++c) {
        bool on_row = false;
        for (int64_t p = 0; p < K; ++p)
          on_row |= squared_distance(&km.centers()[size_t(c * dim)], &points[size_t(p * dim)], dim) == 0;
        EXPECT_TRUE(on_row);
      }
    } else {
      EXPECT_EQ(on_singleton, 1);  // without reassignment the singleton keeps its centre
      EXPECT_EQ(count_one, 1);
    }
  }
  EXPECT_EQ(moved_total, 0);
}

TEST(KMeans, SameSeedSameCentresDifferentSeedDifferent) {
  const int64_t K = 40, dim = 24, n = 500;
  const std::vector<float> a = random_rows(n, dim, 61), b = random_rows(n, dim, 62);
  auto fit = [&](uint64_t seed) {
    MiniBatchKMeans km(KMeansConfig{K, dim, seed});
    km.partial_fit(a.data(), n);
    km.partial_fit(b.data(), n);
    return km.centers();
  };
  EXPECT_EQ(fit(4), fit(4));
  EXPECT_NE(fit(4), fit(5));
}

// Threads split the assignment's rows, the update's centres and, for big
// enough inputs (n * dim >= 2^20, the second shape), each k-means++ step.
TEST(KMeans, ThreadCountDoesNotChangeTheResult) {
  for (auto [K, dim, n] : {std::tuple<int64_t, int64_t, int64_t>{70, 40, 1111}, {24, 512, 2100}}) {
    const std::vector<float> a = random_rows(n, dim, 71), b = random_rows(n, dim, 72);
    auto fit = [&, K = K, dim = dim, n = n](int threads) {
      KMeansConfig cfg{K, dim, 8};
      cfg.num_threads = threads;
      MiniBatchKMeans km(cfg);
      km.partial_fit(a.data(), n);
      km.partial_fit(b.data(), n);
      std::vector<int64_t> labels(static_cast<size_t>(n));
      km.assign(b.data(), n, labels.data());
      return std::make_pair(km.centers(), labels);
    };
    const auto one = fit(1);
    EXPECT_EQ(one, fit(2)) << "K " << K << " dim " << dim;
    EXPECT_EQ(one, fit(3)) << "K " << K << " dim " << dim;
  }
}

// Batches smaller than K are buffered; initialisation then sees all of them,
// exactly as if they had come in one call.
TEST(KMeans, SmallBatchesBufferUntilKRows) {
  const int64_t K = 20, dim = 6;
  const std::vector<float> rows = random_rows(21, dim, 81);
  MiniBatchKMeans pieces(KMeansConfig{K, dim, 1});
  pieces.partial_fit(rows.data(), 7);
  EXPECT_FALSE(pieces.initialized());
  EXPECT_TRUE(pieces.centers().empty());
  pieces.partial_fit(rows.data() + 7 * dim, 7);
  EXPECT_FALSE(pieces.initialized());
  EXPECT_EQ(pieces.rows_seen(), 14);
  EXPECT_THROW(pieces.assign(rows.data(), 1, nullptr), Error);
  pieces.partial_fit(rows.data() + 14 * dim, 7);
  EXPECT_TRUE(pieces.initialized());
  EXPECT_EQ(pieces.rows_seen(), 21);

  MiniBatchKMeans whole(KMeansConfig{K, dim, 1});
  whole.partial_fit(rows.data(), 21);
  EXPECT_EQ(pieces.centers(), whole.centers());
  EXPECT_EQ(pieces.counts(), whole.counts());

  // Later calls may be smaller than K.
  pieces.partial_fit(rows.data(), 3);
  EXPECT_EQ(pieces.rows_seen(), 24);
}

TEST(KMeans, BadInputThrows) {
  EXPECT_THROW(MiniBatchKMeans(KMeansConfig{0, 4}), Error);
  EXPECT_THROW(MiniBatchKMeans(KMeansConfig{-3, 4}), Error);
  EXPECT_THROW(MiniBatchKMeans(KMeansConfig{4, 0}), Error);
  EXPECT_THROW(MiniBatchKMeans(KMeansConfig{4, -1}), Error);
  EXPECT_THROW(MiniBatchKMeans(KMeansConfig{4, 4, 0, 0}), Error);
  KMeansConfig small_init{4, 4};
  small_init.init_size = 3;
  EXPECT_THROW(MiniBatchKMeans{small_init}, Error);
  KMeansConfig bad_ratio{4, 4};
  bad_ratio.reassignment_ratio = -0.1;
  EXPECT_THROW(MiniBatchKMeans{bad_ratio}, Error);
  KMeansConfig bad_trials{4, 4};
  bad_trials.kmeanspp_local_trials = -1;
  EXPECT_THROW(MiniBatchKMeans{bad_trials}, Error);
  MiniBatchKMeans km(KMeansConfig{4, 4});
  EXPECT_THROW(km.partial_fit(nullptr, 3), Error);
  EXPECT_THROW(km.partial_fit(nullptr, -1), Error);
  std::vector<float> rows = random_rows(5, 4, 3);
  rows[9] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(km.partial_fit(rows.data(), 5), Error);
  rows[9] = std::numeric_limits<float>::infinity();
  EXPECT_THROW(km.partial_fit(rows.data(), 5), Error);
  km.partial_fit(nullptr, 0);  // nothing to do
  EXPECT_EQ(km.rows_seen(), 0);
}

}  // namespace
}  // namespace cb
