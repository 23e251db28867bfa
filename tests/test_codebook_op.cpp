// codebook.Codebook (contract in ir/codebook.h: the original's forward, masks,
// forced slots and group split): exact semantics on small hand-checkable
// cases on both the reference and the cpu backend, schema errors, and the fast cpu kernel
// against the reference on random inputs over many shapes, interventions
// and thread counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>

#include "backends/backend.h"
#include "backends/cpu/codebook_kernel.h"
#include "ir/codebook.h"
#include "runtime/executable.h"
#include "support/cpu_features.h"
#include "tests/test_util.h"

using namespace cb;

namespace {

const std::vector<std::string> kBackends = {"reference", "cpu"};
constexpr float kInf = std::numeric_limits<float>::infinity();

struct Data {
  int64_t B = 0, T = 0, G = 0, K = 0, Dg = 0;
  Tensor x, codes, ln_scale, ln_bias;
};

// Random inputs, never zero: x and codes away from 0, a LayerNorm affine near (1, 0).
Data random_data(int64_t B, int64_t T, int64_t G, int64_t K, int64_t Dg, uint32_t seed) {
  std::mt19937 rng(seed);
  auto fill = [&](std::vector<int64_t> dims, double lo, double hi) {
    return test::random_tensor(DType::f32, dims, test::magnitudes(lo, hi), rng);
  };
  Data d;
  d.B = B, d.T = T, d.G = G, d.K = K, d.Dg = Dg;
  d.x = fill({B, T, G * Dg}, 0.05f, 2.0f);
  d.codes = fill({G, K, Dg}, 0.05f, 1.5f);
  d.ln_scale = fill({G, Dg}, 0.5f, 1.5f);
  d.ln_bias = fill({G, Dg}, 0.01f, 0.3f);
  return d;
}

struct Result {
  Tensor y, ids, scores;
  int64_t id(const Data& d, int64_t b, int64_t t, int64_t g, int64_t j, int64_t k) const {
    return ids.data<int64_t>()[((b * d.T + t) * d.G + g) * k + j];
  }
  float score(const Data& d, int64_t b, int64_t t, int64_t g, int64_t j, int64_t k) const {
    return scores.data<float>()[((b * d.T + t) * d.G + g) * k + j];
  }
};

std::shared_ptr<Graph> codebook_graph(const CodebookAttrs& a, const Data& d, bool constant_codes,
                                      const std::string& name = "cb_node") {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape::of(d.x.dims())});
  Value* codes = constant_codes ? g->add_constant("codes", d.codes)
                                : g->add_input("codes", {DType::f32, Shape::of(d.codes.dims())});
  Value* scale = g->add_input("ln_scale", {DType::f32, Shape::of(d.ln_scale.dims())});
  Value* bias = g->add_input("ln_bias", {DType::f32, Shape::of(d.ln_bias.dims())});
  Value* y = g->add_value("y");
  Value* ids = g->add_value("ids");
  Value* scores = g->add_value("scores");
  Node* n = g->add_node(kCodebookOp, {x, codes, scale, bias}, {y, ids, scores}, {}, name, kCodebookDomain);
  a.to_node(*n);
  g->outputs = {y, ids, scores};
  return g;
}

std::map<std::string, Tensor> feeds(const Data& d, bool constant_codes) {
  std::map<std::string, Tensor> in = {{"x", d.x}, {"ln_scale", d.ln_scale}, {"ln_bias", d.ln_bias}};
  if (!constant_codes) in["codes"] = d.codes;
  return in;
}

Result run_codebook(const std::string& backend, const CodebookAttrs& a, const Data& d, int threads = 1,
                    bool constant_codes = false) {
  CompileOptions opts;
  opts.num_threads = threads;
  auto ex = Executable::compile(codebook_graph(a, d, constant_codes), *make_backend(backend), opts);
  auto out = ex->run(feeds(d, constant_codes));
  return {out[0], out[1], out[2]};
}

// ---- Test-side formulas, in double, independent of both kernels.

std::vector<double> layer_norm_u(const Data& d, int64_t b, int64_t t, int64_t g, double eps = 1e-5) {
  const float* x = d.x.data<float>() + (b * d.T + t) * d.G * d.Dg + g * d.Dg;
  double mean = 0, var = 0;
  for (int64_t i = 0; i < d.Dg; ++i) mean += x[i];
  mean /= double(d.Dg);
  for (int64_t i = 0; i < d.Dg; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= double(d.Dg);
  std::vector<double> u(static_cast<size_t>(d.Dg));
  for (int64_t i = 0; i < d.Dg; ++i)
    u[size_t(i)] = (x[i] - mean) / std::sqrt(var + eps) * d.ln_scale.data<float>()[g * d.Dg + i] +
                   d.ln_bias.data<float>()[g * d.Dg + i];
  return u;
}

const float* code_row(const Data& d, int64_t g, int64_t c) { return d.codes.data<float>() + (g * d.K + c) * d.Dg; }

double cosine(const std::vector<double>& u, const float* c) {
  double dot = 0, uu = 0, cc = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    dot += u[i] * c[i];
    uu += u[i] * u[i];
    cc += double(c[i]) * c[i];
  }
  return dot / std::sqrt(uu * cc);
}

double similarity(const std::vector<double>& u, const float* c, CodebookMetric m) {
  double dot = 0, cc = 0, dist2 = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    dot += u[i] * c[i];
    cc += double(c[i]) * c[i];
    dist2 += (u[i] - c[i]) * (u[i] - c[i]);
  }
  if (m == CodebookMetric::inner_product) return cc == 0 ? 0.0 : dot / std::sqrt(cc);
  return -std::sqrt(dist2);
}

// Codes of member g ordered by `key` (best first, ties to the lower id).
template <typename Key>
std::vector<int64_t> ranking(const Data& d, int64_t g, Key key) {
  std::vector<int64_t> order(static_cast<size_t>(d.K));
  std::iota(order.begin(), order.end(), int64_t(0));
  std::vector<double> s(order.size());
  for (int64_t c = 0; c < d.K; ++c) s[size_t(c)] = key(c);
  std::stable_sort(order.begin(), order.end(), [&](int64_t p, int64_t q) { return s[size_t(p)] > s[size_t(q)]; });
  return order;
}

// y of one (token, member) as the mean of the codes of `ids` (divisor k).
std::vector<double> mean_of_codes(const Data& d, int64_t g, const std::vector<int64_t>& ids) {
  std::vector<double> y(static_cast<size_t>(d.Dg), 0.0);
  for (int64_t c : ids)
    if (c != -1)
      for (int64_t i = 0; i < d.Dg; ++i) y[size_t(i)] += code_row(d, g, c)[i];
  for (double& v : y) v /= double(ids.size());
  return y;
}

std::vector<int64_t> slot_ids(const Result& r, const Data& d, int64_t b, int64_t t, int64_t g, int64_t k) {
  std::vector<int64_t> v;
  for (int64_t j = 0; j < k; ++j) v.push_back(r.id(d, b, t, g, j, k));
  return v;
}

void expect_y_is_mean(const Result& r, const Data& d, int64_t k, const std::string& what) {
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t t = 0; t < d.T; ++t)
      for (int64_t g = 0; g < d.G; ++g) {
        std::vector<double> want = mean_of_codes(d, g, slot_ids(r, d, b, t, g, k));
        const float* y = r.y.data<float>() + (b * d.T + t) * d.G * d.Dg + g * d.Dg;
        for (int64_t i = 0; i < d.Dg; ++i)
          ASSERT_NEAR(y[i], want[size_t(i)], 1e-5) << what << " token (" << b << "," << t << ") member " << g;
      }
}

CodebookAttrs attrs_k(int64_t k, CodebookMetric metric = CodebookMetric::inner_product) {
  CodebookAttrs a;
  a.k = k;
  a.metric = metric;
  return a;
}

// ---- Forward parity with the formulas.

TEST(CodebookOp, InnerProductRankingIsCosineRanking) {
  Data d = random_data(2, 5, 2, 40, 8, 1);
  // Rows of very different norms: a plain dot product would rank differently.
  for (int64_t c = 0; c < d.G * d.K; ++c)
    for (int64_t i = 0; i < d.Dg; ++i) d.codes.data<float>()[c * d.Dg + i] *= float(0.1 + 0.37 * (c % 11));
  const int64_t k = 6;
  for (const auto& backend : kBackends) {
    Result r = run_codebook(backend, attrs_k(k), d);
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t t = 0; t < d.T; ++t)
        for (int64_t g = 0; g < d.G; ++g) {
          std::vector<double> u = layer_norm_u(d, b, t, g);
          auto order = ranking(d, g, [&](int64_t c) { return cosine(u, code_row(d, g, c)); });
          double unorm = std::sqrt(std::inner_product(u.begin(), u.end(), u.begin(), 0.0));
          for (int64_t j = 0; j < k; ++j) {
            ASSERT_EQ(r.id(d, b, t, g, j, k), order[size_t(j)]) << backend << " slot " << j;
            // The score is u . C/|C| = |u| cos(u, C).
            EXPECT_NEAR(r.score(d, b, t, g, j, k), unorm * cosine(u, code_row(d, g, order[size_t(j)])), 1e-4)
                << backend;
          }
        }
    expect_y_is_mean(r, d, k, backend);
  }
}

TEST(CodebookOp, ZeroCodeScoresZero) {
  Data d = random_data(1, 3, 1, 3, 4, 2);
  float* c = d.codes.data<float>();
  for (int64_t i = 0; i < 4; ++i) {
    c[i] = 0.0f;           // code 0: zero
    c[8 + i] = -c[4 + i];  // code 2 = -code 1: opposite cosines
  }
  for (const auto& backend : kBackends) {
    Result r = run_codebook(backend, attrs_k(3), d);
    for (int64_t t = 0; t < d.T; ++t) {
      // Whichever of codes 1 and 2 is positive ranks first, the zero code second.
      EXPECT_EQ(r.id(d, 0, t, 0, 1, 3), 0) << backend;
      EXPECT_EQ(r.score(d, 0, t, 0, 1, 3), 0.0f) << backend;
      EXPECT_GT(r.score(d, 0, t, 0, 0, 3), 0.0f) << backend;
      EXPECT_FLOAT_EQ(r.score(d, 0, t, 0, 2, 3), -r.score(d, 0, t, 0, 0, 3)) << backend;
    }
  }
}

// Duplicated codes score exactly alike: the lower id ranks first, and with an
// odd k the pair at the cut keeps only its lower id.
TEST(CodebookOp, TiesGoToTheLowerCodeId) {
  Data d = random_data(2, 7, 2, 40, 8, 16);
  const int64_t half = 20;
  for (int64_t g = 0; g < d.G; ++g)
    for (int64_t c = half; c < d.K; ++c)
      std::copy_n(code_row(d, g, c - half), d.Dg, d.codes.data<float>() + (g * d.K + c) * d.Dg);
  for (int64_t k : {5, 17})  // short and long selection lists in the fast kernel
    for (auto metric : {CodebookMetric::inner_product, CodebookMetric::euclidean})
      for (const auto& backend : kBackends) {
        Result r = run_codebook(backend, attrs_k(k, metric), d, 2);
        for (int64_t b = 0; b < d.B; ++b)
          for (int64_t t = 0; t < d.T; ++t)
            for (int64_t g = 0; g < d.G; ++g) {
              std::vector<int64_t> ids = slot_ids(r, d, b, t, g, k);
              for (int64_t j = 0; j + 1 < k; j += 2) {
                EXPECT_LT(ids[size_t(j)], half) << backend;
                EXPECT_EQ(ids[size_t(j + 1)], ids[size_t(j)] + half) << backend;
              }
              EXPECT_LT(ids[size_t(k - 1)], half) << backend;
            }
      }
}

// A NaN in x makes every score NaN: no code ranks above another, so ties go
// to the lowest ids (and the fast kernel must not read past its lists).
TEST(CodebookOp, NanTokenSelectsTheLowestCodes) {
  Data d = random_data(1, 3, 2, 50, 8, 17);
  d.x.data<float>()[1 * 16 + 3] = std::numeric_limits<float>::quiet_NaN();  // token 1, member 0
  const int64_t k = 4;
  for (bool mode_a : {true, false})
    for (const auto& backend : kBackends) {
      CodebookAttrs a = attrs_k(k);
      a.keep_k_codes = mode_a;
      Result r = run_codebook(backend, a, d);
      EXPECT_EQ(slot_ids(r, d, 0, 1, 0, k), (std::vector<int64_t>{0, 1, 2, 3})) << backend;
      expect_y_is_mean(r, d, k, backend);
    }
}

TEST(CodebookOp, EuclideanRankingMatchesBruteForce) {
  Data d = random_data(2, 4, 3, 50, 6, 3);
  const int64_t k = 5;
  for (const auto& backend : kBackends) {
    Result r = run_codebook(backend, attrs_k(k, CodebookMetric::euclidean), d);
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t t = 0; t < d.T; ++t)
        for (int64_t g = 0; g < d.G; ++g) {
          std::vector<double> u = layer_norm_u(d, b, t, g);
          auto order = ranking(d, g, [&](int64_t c) {
            double s = 0;
            for (int64_t i = 0; i < d.Dg; ++i)
              s += (u[size_t(i)] - code_row(d, g, c)[i]) * (u[size_t(i)] - code_row(d, g, c)[i]);
            return -s;
          });
          for (int64_t j = 0; j < k; ++j) {
            ASSERT_EQ(r.id(d, b, t, g, j, k), order[size_t(j)]) << backend << " slot " << j;
            EXPECT_NEAR(r.score(d, b, t, g, j, k),
                        similarity(u, code_row(d, g, order[size_t(j)]), CodebookMetric::euclidean), 1e-4);
          }
        }
    expect_y_is_mean(r, d, k, backend);
  }
}

// With the identity as codebook (K = Dg = k), the scores are the components
// of u = LN(x) * scale + bias, in decreasing order.
TEST(CodebookOp, LayerNormUsesEpsilonAndAffine) {
  const int64_t Dg = 8;
  Data d = random_data(1, 4, 1, Dg, Dg, 4);
  for (int64_t i = 0; i < Dg * Dg; ++i) d.codes.data<float>()[i] = (i / Dg == i % Dg) ? 1.0f : 0.0f;
  // Token 0 has a variance far below eps (eps matters), token 1 a large one.
  for (int64_t i = 0; i < Dg; ++i) d.x.data<float>()[i] = 0.7f + 1e-3f * float(i % 3 + 1) * (i % 2 ? 1.0f : -1.0f);
  for (double eps : {1e-5, 1e-2}) {
    CodebookAttrs a = attrs_k(Dg);
    a.epsilon = float(eps);
    for (const auto& backend : kBackends) {
      Result r = run_codebook(backend, a, d);
      for (int64_t t = 0; t < d.T; ++t) {
        std::vector<double> u = layer_norm_u(d, 0, t, 0, eps);
        for (int64_t j = 0; j < Dg; ++j) {
          int64_t c = r.id(d, 0, t, 0, j, Dg);
          EXPECT_NEAR(r.score(d, 0, t, 0, j, Dg), u[size_t(c)], 2e-5 * (1 + std::abs(u[size_t(c)])))
              << backend << " eps " << eps << " token " << t;
          if (j > 0) {  // best first
            EXPECT_LE(u[size_t(c)], u[size_t(r.id(d, 0, t, 0, j - 1, Dg))] + 1e-9);
          }
        }
      }
    }
  }
}

// ---- Mode A and Mode B.

// The plain top-(k+m) ranks of a token (test-side), with `ablated` ranked last.
std::vector<int64_t> expected_mode_a(const Data& d, int64_t b, int64_t t, int64_t g, int64_t k, int64_t m,
                                     const std::vector<int64_t>& ablated, CodebookMetric metric) {
  std::vector<double> u = layer_norm_u(d, b, t, g);
  auto order = ranking(d, g, [&](int64_t c) {
    bool abl = std::find(ablated.begin(), ablated.end(), c) != ablated.end();
    return abl ? -std::numeric_limits<double>::infinity() : similarity(u, code_row(d, g, c), metric);
  });
  return std::vector<int64_t>(order.begin() + m, order.begin() + m + k);
}

TEST(CodebookOp, ModeASkipsAblatedAndDisabledTopCodes) {
  Data d = random_data(2, 5, 2, 30, 8, 5);
  const int64_t k = 4;
  for (auto metric : {CodebookMetric::inner_product, CodebookMetric::euclidean}) {
    CodebookAttrs a = attrs_k(k, metric);
    // Ablate the usual winners: codes ranked first at token (0, 0).
    std::vector<double> u = layer_norm_u(d, 0, 0, 0);
    auto order = ranking(d, 0, [&](int64_t c) { return similarity(u, code_row(d, 0, c), metric); });
    std::vector<int64_t> ablated = {order[0], order[2], 7};
    for (int64_t c : ablated) a.ablate.push_back({kAll, kAll, c});
    a.disable_topk.push_back({kAll, kAll, 2});
    a.disable_topk.push_back({kAll, kAll, 1});  // the largest m counts
    for (const auto& backend : kBackends) {
      Result r = run_codebook(backend, a, d);
      for (int64_t b = 0; b < d.B; ++b)
        for (int64_t t = 0; t < d.T; ++t)
          for (int64_t g = 0; g < d.G; ++g)
            ASSERT_EQ(slot_ids(r, d, b, t, g, k), expected_mode_a(d, b, t, g, k, 2, ablated, metric))
                << backend << " token (" << b << "," << t << ") member " << g;
      expect_y_is_mean(r, d, k, backend);
    }
  }
}

TEST(CodebookOp, ModeAPositionScope) {
  Data d = random_data(2, 6, 2, 25, 8, 6);
  const int64_t k = 3;
  CodebookAttrs plain = attrs_k(k);
  CodebookAttrs a = attrs_k(k);
  // Positions 1 and -1 (= 5) of member 1 only: disable_topk 2 and code 4 ablated.
  for (int64_t p : {int64_t(1), int64_t(-1)}) {
    a.disable_topk.push_back({1, p, 2});
    a.ablate.push_back({1, p, 4});
  }
  for (const auto& backend : kBackends) {
    Result r0 = run_codebook(backend, plain, d);
    Result r = run_codebook(backend, a, d);
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t t = 0; t < d.T; ++t)
        for (int64_t g = 0; g < d.G; ++g) {
          bool scoped = g == 1 && (t == 1 || t == 5);
          std::vector<int64_t> want = scoped ? expected_mode_a(d, b, t, g, k, 2, {4}, CodebookMetric::inner_product)
                                             : slot_ids(r0, d, b, t, g, k);
          EXPECT_EQ(slot_ids(r, d, b, t, g, k), want) << backend << " t " << t << " g " << g;
        }
    expect_y_is_mean(r, d, k, backend);
  }
}

TEST(CodebookOp, ModeATakesAblatedCodesInCodeOrderWhenTooFewRemain) {
  Data d = random_data(1, 3, 1, 6, 4, 7);
  CodebookAttrs a = attrs_k(3);
  for (int64_t c : {5, 2, 3, 1}) a.ablate.push_back({0, kAll, c});  // codes 0 and 4 remain
  for (const auto& backend : kBackends) {
    Result r = run_codebook(backend, a, d);
    for (int64_t t = 0; t < d.T; ++t) {
      std::vector<double> u = layer_norm_u(d, 0, t, 0);
      bool zero_first = similarity(u, code_row(d, 0, 0), a.metric) >= similarity(u, code_row(d, 0, 4), a.metric);
      std::vector<int64_t> want = zero_first ? std::vector<int64_t>{0, 4, 1} : std::vector<int64_t>{4, 0, 1};
      EXPECT_EQ(slot_ids(r, d, 0, t, 0, 3), want) << backend;
      // The reported score of an ablated code is still its similarity.
      EXPECT_NEAR(r.score(d, 0, t, 0, 2, 3), similarity(u, code_row(d, 0, 1), a.metric), 1e-4) << backend;
    }
  }
}

TEST(CodebookOp, ModeBWorkedExampleFromTheSpec) {
  // The original test suite's Mode B case: K=15, k=10, positions [0,1,2],
  // codes [0,1,2], disable_topk 3.
  Data d = random_data(2, 6, 1, 15, 8, 8);
  const int64_t k = 10;
  CodebookAttrs plain = attrs_k(k);
  CodebookAttrs a = attrs_k(k);
  a.keep_k_codes = false;
  for (int64_t p : {0, 1, 2}) {
    for (int64_t c : {0, 1, 2}) a.ablate.push_back({kAll, p, c});
    a.disable_topk.push_back({kAll, p, 3});
  }
  for (const auto& backend : kBackends) {
    Result r0 = run_codebook(backend, plain, d);
    Result r = run_codebook(backend, a, d);
    int blocked_by_code_beyond_slot_2 = 0;
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t t = 0; t < d.T; ++t) {
        std::vector<int64_t> ids0 = slot_ids(r0, d, b, t, 0, k), ids = slot_ids(r, d, b, t, 0, k);
        for (int64_t j = 0; j < k; ++j) {
          int64_t c0 = ids0[size_t(j)];
          bool blocked = t <= 2 && (j < 3 || c0 <= 2);
          blocked_by_code_beyond_slot_2 += t <= 2 && j >= 3 && c0 <= 2;
          EXPECT_EQ(ids[size_t(j)], blocked ? -1 : c0) << backend << " (" << b << "," << t << ") slot " << j;
          if (blocked) {
            EXPECT_EQ(r.score(d, b, t, 0, j, k), -kInf) << backend;
          }
        }
        for (int64_t i = 0; t > 2 && i < d.Dg; ++i) {  // positions >= 3 untouched
          EXPECT_EQ(r.y.data<float>()[(b * d.T + t) * d.Dg + i], r0.y.data<float>()[(b * d.T + t) * d.Dg + i]);
        }
      }
    EXPECT_GT(blocked_by_code_beyond_slot_2, 0) << "the inputs do not exercise code blocking";
    expect_y_is_mean(r, d, k, backend);  // blocked slots add nothing, divisor k
  }
}

TEST(CodebookOp, NegativePositionsCountFromTheEnd) {
  Data d = random_data(1, 5, 1, 20, 8, 9);
  const int64_t k = 4;
  CodebookAttrs plain = attrs_k(k);
  CodebookAttrs a = attrs_k(k);
  a.keep_k_codes = false;
  a.disable_topk = {{kAll, -1, 1}, {kAll, -5, 2}, {kAll, -6, 3}, {kAll, 5, 3}};  // -6 and 5: outside [-T, T)
  for (const auto& backend : kBackends) {
    Result r0 = run_codebook(backend, plain, d);
    Result r = run_codebook(backend, a, d);
    for (int64_t t = 0; t < d.T; ++t) {
      int64_t m = t == 4 ? 1 : t == 0 ? 2 : 0;
      for (int64_t j = 0; j < k; ++j)
        EXPECT_EQ(r.id(d, 0, t, 0, j, k), j < m ? -1 : r0.id(d, 0, t, 0, j, k)) << backend << " t " << t;
    }
  }
}

TEST(CodebookOp, AllSlotsBlockedGivesExactlyZero) {
  Data d = random_data(2, 3, 2, 12, 8, 10);
  const int64_t k = 4;
  CodebookAttrs a = attrs_k(k);
  a.keep_k_codes = false;
  a.disable_topk.push_back({kAll, kAll, k});
  for (const auto& backend : kBackends) {
    Result r = run_codebook(backend, a, d);
    for (int64_t i = 0; i < r.y.numel(); ++i) ASSERT_EQ(r.y.data<float>()[i], 0.0f) << backend;
    for (int64_t i = 0; i < r.ids.numel(); ++i) {
      ASSERT_EQ(r.ids.data<int64_t>()[i], -1) << backend;
      ASSERT_EQ(r.scores.data<float>()[i], -kInf) << backend;
    }
  }
}

// ---- Forced codes.

TEST(CodebookOp, ForceIntoOneSlot) {
  Data d = random_data(1, 4, 2, 20, 8, 11);
  const int64_t k = 3;
  CodebookAttrs plain = attrs_k(k);
  CodebookAttrs a = attrs_k(k);
  a.force = {{1, 2, 0, 17}, {kAll, kAll, -1, 5}};  // member 1 position 2 slot 0 := 17; everywhere last slot := 5
  for (const auto& backend : kBackends) {
    Result r0 = run_codebook(backend, plain, d);
    Result r = run_codebook(backend, a, d);
    for (int64_t t = 0; t < d.T; ++t)
      for (int64_t g = 0; g < d.G; ++g) {
        std::vector<int64_t> want = slot_ids(r0, d, 0, t, g, k);
        want[2] = 5;
        if (g == 1 && t == 2) want[0] = 17;
        EXPECT_EQ(slot_ids(r, d, 0, t, g, k), want) << backend;
        std::vector<double> u = layer_norm_u(d, 0, t, g);
        for (int64_t j = 0; j < k; ++j)  // forced codes get their real similarity
          EXPECT_NEAR(r.score(d, 0, t, g, j, k), similarity(u, code_row(d, g, want[size_t(j)]), a.metric), 1e-4);
      }
    expect_y_is_mean(r, d, k, backend);
  }
}

TEST(CodebookOp, ForceAllSlotsGivesMeanOfForcedCodes) {
  Data d = random_data(2, 3, 1, 20, 8, 12);
  const int64_t k = 3;
  CodebookAttrs a = attrs_k(k, CodebookMetric::euclidean);
  a.force = {{kAll, kAll, 0, 3}, {kAll, kAll, -2, 9}, {kAll, kAll, 2, 11}, {kAll, kAll, 2, 14}};  // later wins
  std::vector<double> want = mean_of_codes(d, 0, {3, 9, 14});
  for (const auto& backend : kBackends) {
    Result r = run_codebook(backend, a, d);
    for (int64_t tok = 0; tok < d.B * d.T; ++tok)
      for (int64_t i = 0; i < d.Dg; ++i) ASSERT_NEAR(r.y.data<float>()[tok * d.Dg + i], want[size_t(i)], 1e-6);
  }
}

TEST(CodebookOp, ForceMinusOneZeroesASlotKeepingDivisorK) {
  Data d = random_data(1, 3, 1, 20, 8, 13);
  const int64_t k = 4;
  CodebookAttrs plain = attrs_k(k);
  CodebookAttrs a = attrs_k(k);
  a.force = {{0, 1, 1, -1}};
  for (const auto& backend : kBackends) {
    Result r0 = run_codebook(backend, plain, d);
    Result r = run_codebook(backend, a, d);
    std::vector<int64_t> want = slot_ids(r0, d, 0, 1, 0, k);
    want[1] = -1;
    EXPECT_EQ(slot_ids(r, d, 0, 1, 0, k), want) << backend;
    EXPECT_EQ(r.score(d, 0, 1, 0, 1, k), -kInf);
    std::vector<double> y = mean_of_codes(d, 0, want);  // (sum of 3 codes) / 4
    for (int64_t i = 0; i < d.Dg; ++i) EXPECT_NEAR(r.y.data<float>()[1 * d.Dg + i], y[size_t(i)], 1e-6) << backend;
  }
}

// ---- A G-member node equals G single-member nodes on the chunks.

TEST(CodebookOp, GroupSplitEqualsSingleMembersOnChunks) {
  const int64_t G = 3, Dg = 8, K = 40, k = 5;
  Data d = random_data(2, 4, G, K, Dg, 14);
  for (auto metric : {CodebookMetric::inner_product, CodebookMetric::euclidean}) {
    CodebookAttrs a = attrs_k(k, metric);
    a.disable_topk = {{kAll, 1, 1}};
    a.ablate = {{kAll, kAll, 3}};
    for (const auto& backend : kBackends) {
      Result whole = run_codebook(backend, a, d, 2);
      for (int64_t g = 0; g < G; ++g) {
        Data dg = random_data(d.B, d.T, 1, K, Dg, 0);
        for (int64_t tok = 0; tok < d.B * d.T; ++tok)
          for (int64_t i = 0; i < Dg; ++i)
            dg.x.data<float>()[tok * Dg + i] = d.x.data<float>()[tok * G * Dg + g * Dg + i];
        std::copy_n(code_row(d, g, 0), K * Dg, dg.codes.data<float>());
        std::copy_n(d.ln_scale.data<float>() + g * Dg, Dg, dg.ln_scale.data<float>());
        std::copy_n(d.ln_bias.data<float>() + g * Dg, Dg, dg.ln_bias.data<float>());
        Result part = run_codebook(backend, a, dg);
        for (int64_t b = 0; b < d.B; ++b)
          for (int64_t t = 0; t < d.T; ++t) {
            for (int64_t j = 0; j < k; ++j) {
              ASSERT_EQ(whole.id(d, b, t, g, j, k), part.id(dg, b, t, 0, j, k)) << backend;
              ASSERT_EQ(whole.score(d, b, t, g, j, k), part.score(dg, b, t, 0, j, k)) << backend;
            }
            for (int64_t i = 0; i < Dg; ++i)
              ASSERT_EQ(whole.y.data<float>()[(b * d.T + t) * G * Dg + g * Dg + i],
                        part.y.data<float>()[(b * d.T + t) * Dg + i])
                  << backend;
          }
      }
    }
  }
}

// ---- Schema errors name the node.

void expect_error_naming_node(const CodebookAttrs& a, const Data& d, const std::string& what) {
  for (const auto& backend : kBackends) {
    try {
      auto ex = Executable::compile(codebook_graph(a, d, false, "cb_under_test"), *make_backend(backend));
      ex->run(feeds(d, false));
      ADD_FAILURE() << what << ": no error on " << backend;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cb_under_test"), std::string::npos) << what << ": " << e.what();
    }
  }
}

TEST(CodebookOp, SchemaErrorsNameTheNode) {
  Data d = random_data(1, 3, 2, 10, 4, 15);
  CodebookAttrs a = attrs_k(2);
  a.ablate = {{2, kAll, 1}};
  expect_error_naming_node(a, d, "ablate member 2 of 2");
  a = attrs_k(2);
  a.ablate = {{0, kAll, 10}};
  expect_error_naming_node(a, d, "ablate code 10 of 10");
  a = attrs_k(2);
  a.force = {{0, kAll, 2, 1}};
  expect_error_naming_node(a, d, "force slot 2 with k 2");
  a = attrs_k(2);
  a.force = {{kAll, kAll, 0, -2}};
  expect_error_naming_node(a, d, "force code -2");
  a = attrs_k(11);
  expect_error_naming_node(a, d, "k 11 of 10 codes");
  a = attrs_k(8);
  a.disable_topk = {{kAll, kAll, 3}};
  expect_error_naming_node(a, d, "Mode A k + m > K");
  Data bad = d;
  bad.ln_scale = random_data(1, 1, 2, 1, 5, 1).ln_scale;  // [2, 5], codes are [2, 10, 4]
  expect_error_naming_node(attrs_k(2), bad, "ln_scale shape");
  bad = d;
  bad.x = random_data(1, 3, 3, 1, 4, 1).x;  // width 12, codes cover 8
  expect_error_naming_node(attrs_k(2), bad, "x width");
}

// ---- The fast kernel against the reference on random inputs.

struct RandomCase {
  int64_t B, T, G, K, Dg, k;
};

// Random interventions for a case (Mode A keeps k + m <= K).
CodebookAttrs random_interventions(const RandomCase& c, bool mode_a, std::mt19937& rng) {
  CodebookAttrs a;
  a.k = c.k;
  a.keep_k_codes = mode_a;
  auto group = [&] { return std::uniform_int_distribution<int>(0, 2)(rng) == 0 ? kAll : int64_t(rng() % c.G); };
  auto position = [&] {
    int64_t p = int64_t(rng() % uint32_t(2 * c.T + 2)) - c.T - 1;  // [-T-1, T]: some match nothing
    return std::uniform_int_distribution<int>(0, 3)(rng) == 0 ? kAll : p;
  };
  for (int i = 0, n = int(rng() % 6); i < n; ++i) a.ablate.push_back({group(), position(), int64_t(rng() % c.K)});
  int64_t max_m = mode_a ? std::min<int64_t>(3, c.K - c.k) : c.k + 1;
  if (max_m > 0)
    for (int i = 0, n = int(rng() % 3); i < n; ++i)
      a.disable_topk.push_back({group(), position(), int64_t(rng() % uint32_t(max_m + 1))});
  for (int i = 0, n = int(rng() % 4); i < n; ++i)
    a.force.push_back(
        {group(), position(), int64_t(rng() % uint32_t(2 * c.k)) - c.k, int64_t(rng() % uint32_t(c.K + 1)) - 1});
  return a;
}

// Compares the cpu result with the reference: ids equal except near-ties
// (where the reference scores of both choices agree within 1e-5 relative),
// scores close, y equal to the reference where the ids agree and to the mean
// of the chosen codes everywhere.
void expect_fast_matches_reference(const Data& d, const CodebookAttrs& a, const Result& ref, const Result& fast,
                                   const std::string& what) {
  const int64_t k = a.k;
  int64_t near_ties = 0;
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t t = 0; t < d.T; ++t)
      for (int64_t g = 0; g < d.G; ++g) {
        std::vector<double> u = layer_norm_u(d, b, t, g, a.epsilon);
        bool same = true;
        for (int64_t j = 0; j < k; ++j) {
          int64_t cr = ref.id(d, b, t, g, j, k), cf = fast.id(d, b, t, g, j, k);
          float sr = ref.score(d, b, t, g, j, k), sf = fast.score(d, b, t, g, j, k);
          if (cr == cf) {
            if (cr == -1) {
              ASSERT_EQ(sf, -kInf) << what;
            } else {
              ASSERT_NEAR(sf, sr, 2e-5 * std::max(1.0f, std::abs(sr))) << what;
            }
            continue;
          }
          same = false;
          ASSERT_TRUE(cr != -1 && cf != -1) << what << ": token (" << b << "," << t << ") member " << g << " slot " << j
                                            << ": reference " << cr << ", cpu " << cf;
          double s_ref = similarity(u, code_row(d, g, cr), a.metric),
                 s_fast = similarity(u, code_row(d, g, cf), a.metric);
          ASSERT_LE(std::abs(s_ref - s_fast), 1e-5 * std::max(1.0, std::abs(s_ref)))
              << what << ": token (" << b << "," << t << ") member " << g << " slot " << j << ": reference code " << cr
              << " (" << s_ref << "), cpu code " << cf << " (" << s_fast << ")";
          ++near_ties;
        }
        const float* yr = ref.y.data<float>() + (b * d.T + t) * d.G * d.Dg + g * d.Dg;
        const float* yf = fast.y.data<float>() + (b * d.T + t) * d.G * d.Dg + g * d.Dg;
        std::vector<double> mean = mean_of_codes(d, g, slot_ids(fast, d, b, t, g, k));
        for (int64_t i = 0; i < d.Dg; ++i) {
          if (same) {
            ASSERT_NEAR(yf[i], yr[i], 1e-5) << what;
          }
          ASSERT_NEAR(yf[i], mean[size_t(i)], 1e-5) << what;
        }
      }
  EXPECT_LE(near_ties, d.B * d.T * d.G * k / 100 + 2) << what << ": too many near-ties";
}

// Calls check(data, attrs, description) on random data for every case,
// both metrics, and three variants: plain, Mode A and Mode B interventions.
template <typename Check>
void for_each_random_case(const std::vector<RandomCase>& cases, uint32_t seed, std::mt19937& rng, Check check) {
  for (const RandomCase& c : cases)
    for (auto metric : {CodebookMetric::inner_product, CodebookMetric::euclidean})
      for (int variant = 0; variant < 3; ++variant) {
        Data d = random_data(c.B, c.T, c.G, c.K, c.Dg, seed++);
        CodebookAttrs a = variant == 0 ? attrs_k(c.k) : random_interventions(c, variant == 1, rng);
        a.metric = metric;
        std::ostringstream what;
        what << "B" << c.B << " T" << c.T << " G" << c.G << " K" << c.K << " Dg" << c.Dg << " k" << c.k << " "
             << metric_name(metric) << " variant " << variant;
        if (!check(d, a, what.str())) return;
      }
}

const std::vector<RandomCase> kRandomCases = {
    {1, 1, 1, 1, 1, 1},
    {2, 7, 3, 37, 5, 4},
    {1, 70, 2, 100, 16, 16},
    {3, 33, 1, 17, 64, 1},
    {2, 65, 4, 250, 8, 8},
    {1, 129, 2, 1000, 64, 8},
    {2, 5, 12, 300, 64, 8},
    {1, 13, 1, 40, 3, 12},
    {4, 31, 2, 16, 7, 2},
    {1, 64, 1, 33, 96, 3},
    // From 32 panels on, the sweeps' warm start: lists of 9..16 and over 16 (none)
    {2, 9, 1, 700, 8, 12},
    {1, 5, 1, 600, 16, 20},
};

TEST(CodebookFastKernel, MatchesReferenceOnRandomInputs) {
  std::mt19937 rng(2024);
  for_each_random_case(kRandomCases, 100, rng, [&](const Data& d, const CodebookAttrs& a, const std::string& what) {
    Result ref = run_codebook("reference", a, d);
    for (int threads : {1, 2}) {
      Result fast = run_codebook("cpu", a, d, threads, /*constant_codes=*/threads == 2);
      expect_fast_matches_reference(d, a, ref, fast, what + " threads " + std::to_string(threads));
      if (HasFatalFailure()) return false;
    }
    return true;
  });
}

TEST(CodebookFastKernel, EveryKFrom1To16) {
  std::mt19937 rng(7);
  for (int64_t k = 1; k <= 16; ++k) {
    RandomCase c{2, 9, 2, k % 2 ? 53 : 600, 12, k};  // 600 codes: with the warm start
    Data d = random_data(c.B, c.T, c.G, c.K, c.Dg, uint32_t(500 + k));
    CodebookAttrs a = random_interventions(c, k % 2 == 0, rng);
    Result ref = run_codebook("reference", a, d);
    Result fast = run_codebook("cpu", a, d, 2);
    expect_fast_matches_reference(d, a, ref, fast, "k " + std::to_string(k));
    if (HasFatalFailure()) return;
  }
}

// One compiled executable run several times: constant codes are packed once
// and reused; codes fed as an input are re-read (and repacked) every call.
TEST(CodebookFastKernel, ReusesPackedConstantCodesAndRereadsInputCodes) {
  const int64_t G = 2, K = 70, Dg = 16, k = 3;
  CodebookAttrs a = attrs_k(k);
  Data d0 = random_data(1, 5, G, K, Dg, 40);
  for (bool constant : {true, false}) {
    auto cpu = Executable::compile(codebook_graph(a, d0, constant), *make_backend("cpu"));
    for (uint32_t seed : {41u, 42u, 43u}) {
      Data d = random_data(1, 5, G, K, Dg, seed);
      if (constant) d.codes = d0.codes;
      auto out = cpu->run(feeds(d, constant));
      Result fast{out[0], out[1], out[2]};
      Result ref = run_codebook("reference", a, d);
      expect_fast_matches_reference(d, a, ref, fast, constant ? "constant codes" : "input codes");
    }
  }
}

TEST(CodebookFastKernel, OptionalOutputsMayBeOmitted) {
  Data d = random_data(2, 9, 3, 45, 8, 50);
  CodebookAttrs a = attrs_k(4);
  a.force = {{kAll, 0, 0, -1}};
  for (const auto& backend : kBackends) {
    auto g = codebook_graph(a, d, false);
    g->outputs = {g->outputs[0]};
    for (auto& n : g->nodes()) n->outputs.resize(1);
    auto out = Executable::compile(g, *make_backend(backend))->run(feeds(d, false));
    Result full = run_codebook(backend, a, d);
    ASSERT_EQ(out.size(), 1u);
    for (int64_t i = 0; i < out[0].numel(); ++i) ASSERT_EQ(out[0].data<float>()[i], full.y.data<float>()[i]) << backend;
  }
}

// ---- bf16 scoring (backends/cpu/codebook_kernel.cpp): where the CPU has
// AVX512_BF16 the kernel can rank codes by bf16 scores and re-rank the
// candidates in f32; its outputs must be the f32 sweep's, bit for bit.

// Runs the cpu kernel with CB_CODEBOOK_SCORING set (read when the kernel is
// made), twice (the second run reuses packed constant codes).
Result run_cpu_scoring(const char* scoring, const CodebookAttrs& a, const Data& d, int threads, bool constant_codes) {
  setenv("CB_CODEBOOK_SCORING", scoring, 1);
  CompileOptions opts;
  opts.num_threads = threads;
  auto ex = Executable::compile(codebook_graph(a, d, constant_codes), *make_backend("cpu"), opts);
  unsetenv("CB_CODEBOOK_SCORING");
  ex->run(feeds(d, constant_codes));
  auto out = ex->run(feeds(d, constant_codes));
  return {out[0], out[1], out[2]};
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dims() == b.dims() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw(), b.raw(), size_t(a.numel()) * dtype_size(a.dtype())) == 0;
}

void expect_bf16_scoring_equals_f32(const Data& d, const CodebookAttrs& a, const std::string& what) {
  for (int threads : {1, 2}) {
    const bool constant = threads == 2;
    const Result f32 = run_cpu_scoring("f32", a, d, threads, constant);
    const Result bf16 = run_cpu_scoring("bf16", a, d, threads, constant);
    const std::string where = what + ", " + std::to_string(threads) + " threads";
    EXPECT_TRUE(same_bits(f32.ids, bf16.ids)) << where << ": ids differ";
    EXPECT_TRUE(same_bits(f32.scores, bf16.scores)) << where << ": scores differ";
    EXPECT_TRUE(same_bits(f32.y, bf16.y)) << where << ": y differs";
  }
}

bool cpu_can_score_in_bf16() {
  setenv("CB_CODEBOOK_SCORING", "bf16", 1);
  const bool can = cpu_codebook_scoring() == CodebookScoring::bf16;
  unsetenv("CB_CODEBOOK_SCORING");
  return can;
}

TEST(CodebookBf16Scoring, TheEnvironmentChoosesThePath) {
  setenv("CB_CODEBOOK_SCORING", "f32", 1);
  EXPECT_EQ(cpu_codebook_scoring(), CodebookScoring::f32);
  setenv("CB_CODEBOOK_SCORING", "bf16", 1);
  EXPECT_EQ(cpu_codebook_scoring(),
            cpu_has_avx512_bf16() && cpu_has_avx2_fma() ? CodebookScoring::bf16 : CodebookScoring::f32);
  unsetenv("CB_CODEBOOK_SCORING");
  EXPECT_NE(cpu_codebook_scoring(), CodebookScoring::bf16);  // automatic, or f32 where bf16 is not faster
}

TEST(CodebookBf16Scoring, EqualsF32OnRandomInputs) {
  if (!cpu_can_score_in_bf16()) GTEST_SKIP() << "no AVX512_BF16 (or CB_MAX_CPU_ISA=portable)";
  std::vector<RandomCase> cases = kRandomCases;
  cases.push_back({1, 20, 1, 2000, 33, 8});  // many panels, odd Dg
  // From 64 panels on, a warm start: with lists of <= 8 (k = 8 and Mode A's
  // m), of 9..32 (k = 12) and over 32 codes (k = 40: none).
  cases.push_back({1, 20, 1, 2500, 33, 8});
  cases.push_back({2, 9, 2, 2100, 16, 12});
  cases.push_back({1, 6, 1, 2100, 8, 40});
  std::mt19937 rng(31);
  for_each_random_case(cases, 900, rng, [](const Data& d, const CodebookAttrs& a, const std::string& what) {
    expect_bf16_scoring_equals_f32(d, a, what);
    return true;
  });
}

// Codes closer together than bf16 can tell apart, and exact duplicates:
// the re-ranking decides them, ties to the lower id.
TEST(CodebookBf16Scoring, DecidesNearTiesAndDuplicatesLikeF32) {
  if (!cpu_can_score_in_bf16()) GTEST_SKIP() << "no AVX512_BF16 (or CB_MAX_CPU_ISA=portable)";
  std::mt19937 rng(32);
  for (auto [metric, K] : {std::pair{CodebookMetric::inner_product, 500},
                           {CodebookMetric::euclidean, 500},
                           {CodebookMetric::inner_product, 2100}}) {  // 2100: with the warm start
    Data d = random_data(2, 40, 2, K, 64, 910);
    std::uniform_real_distribution<float> base_value(-1, 1);
    std::vector<float> base(64);
    for (float& v : base) v = base_value(rng);
    for (int64_t g = 0; g < d.G; ++g)
      for (int64_t c = 0; c < d.K; ++c) {
        float* row = d.codes.data<float>() + (g * d.K + c) * d.Dg;
        const bool duplicate = c % 7 == 3;  // the same as the code before it
        for (int64_t i = 0; i < d.Dg; ++i)
          row[i] = duplicate ? row[i - d.Dg] : base[size_t(i)] * (1.0f + 1e-4f * float(int(rng() % 201) - 100));
      }
    CodebookAttrs a = attrs_k(8, metric);
    expect_bf16_scoring_equals_f32(d, a, std::string("near ties, ") + metric_name(metric) + " K " + std::to_string(K));
  }
}

// Near copies of a few codes crowd every row's window of candidates: after
// the first call, automatic scoring runs in f32 (kF32CallsAfterCrowdedWindows),
// repacking the constant codes; every call's outputs stay the f32 kernel's.
TEST(CodebookBf16Scoring, CrowdedWindowsFallBackToF32WithTheSameOutputs) {
  if (!cpu_can_score_in_bf16()) GTEST_SKIP() << "no AVX512_BF16 (or CB_MAX_CPU_ISA=portable)";
  Data d = random_data(1, 24, 2, 2100, 64, 930);
  std::mt19937 rng(33);
  std::normal_distribution<float> noise(0, 1e-4f);
  float* codes = d.codes.data<float>();
  for (int64_t g = 0; g < d.G; ++g)
    for (int64_t c = 8; c < d.K; ++c)  // code c: a near copy of code c % 8
      for (int64_t i = 0; i < d.Dg; ++i)
        codes[(g * d.K + c) * d.Dg + i] = codes[(g * d.K + c % 8) * d.Dg + i] * (1.0f + noise(rng));
  const CodebookAttrs a = attrs_k(4);
  for (int threads : {1, 2}) {
    const Result f32 = run_cpu_scoring("f32", a, d, threads, /*constant_codes=*/true);
    CompileOptions opts;
    opts.num_threads = threads;
    unsetenv("CB_CODEBOOK_SCORING");  // automatic
    auto ex = Executable::compile(codebook_graph(a, d, true), *make_backend("cpu"), opts);
    for (int call = 0; call < 3; ++call) {
      auto out = ex->run(feeds(d, true));
      const std::string where = "call " + std::to_string(call) + ", " + std::to_string(threads) + " threads";
      EXPECT_TRUE(same_bits(f32.ids, out[1])) << where << ": ids differ";
      EXPECT_TRUE(same_bits(f32.scores, out[2])) << where << ": scores differ";
      EXPECT_TRUE(same_bits(f32.y, out[0])) << where << ": y differs";
    }
  }
}

// Rows and codes with inf or NaN values, and long codes (large euclidean
// biases): where no error bound holds, the kernel re-ranks every code.
TEST(CodebookBf16Scoring, NonFiniteAndHugeValuesStillEqualF32) {
  if (!cpu_can_score_in_bf16()) GTEST_SKIP() << "no AVX512_BF16 (or CB_MAX_CPU_ISA=portable)";
  for (auto metric : {CodebookMetric::inner_product, CodebookMetric::euclidean}) {
    Data d = random_data(1, 12, 2, 90, 16, 920);
    float* x = d.x.data<float>();
    x[0] = std::numeric_limits<float>::quiet_NaN();  // token 0, member 0
    x[16 + 3] = kInf;                                // token 0, member 1
    d.ln_scale.data<float>()[16 + 5] = 1e30f;        // member 1's u overflows on every token
    float* codes = d.codes.data<float>();
    codes[7 * 16 + 2] = kInf;                                            // member 0, code 7
    for (int64_t i = 0; i < 16; ++i) codes[(90 + 11) * 16 + i] *= 1e6f;  // member 1, code 11: long
    expect_bf16_scoring_equals_f32(d, attrs_k(4, metric), std::string("non-finite, ") + metric_name(metric));
  }
}

}  // namespace
