// Tests of the reduction and neural-network ops: each builds a one-node graph,
// runs it on the reference backend with random (non-zero) inputs and compares
// with a naive double-precision computation written out here; plus symbolic
// shape inference through infer_types and the error messages of bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <random>

#include "backends/backend.h"
#include "ir/graph.h"
#include "ir/verifier.h"
#include "runtime/executable.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::random_tensor;

namespace {

std::mt19937& rng() {
  static std::mt19937 r(20240611);
  return r;
}

int64_t numel_of(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

// Values with magnitude in [lo, hi] and a random sign (or positive only).
std::vector<double> random_values(int64_t n, double lo = 0.1, double hi = 2.0, bool positive = false) {
  std::uniform_real_distribution<double> mag(lo, hi);
  std::bernoulli_distribution neg(0.5);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = (positive || !neg(rng()) ? 1 : -1) * mag(rng());
  return v;
}

Tensor make_tensor(DType dt, const std::vector<int64_t>& dims, const std::vector<double>& v) {
  Tensor t = Tensor::empty(dt, dims);
  dtype_dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    for (size_t i = 0; i < v.size(); ++i) t.data<T>()[i] = from_double<T>(v[i]);
  });
  return t;
}

// Magnitudes in [0.1, 2] with random signs (or positive only).
const test::Values kRandom = test::magnitudes(0.1, 2.0);
const test::Values kPositive = test::positive(0.1, 2.0);

Tensor i64_tensor(const std::vector<int64_t>& v, std::vector<int64_t> dims = {}) {
  if (dims.empty() && !v.empty()) dims = {int64_t(v.size())};
  if (v.empty()) dims = {0};
  return Tensor::from_vector<int64_t>(v, dims);
}

std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.get_double(int64_t(i));
  return v;
}

// An input of a test node: a tensor fed at run time, a constant, or omitted.
using In = test::NodeInput;
In rt(Tensor t) { return In(std::move(t)); }
In cst(Tensor t) { return test::constant_input(std::move(t)); }

// Builds a graph with one node and runs it on the reference backend.
std::vector<Tensor> run_node(const std::string& op, const std::vector<In>& inputs,
                             std::map<std::string, AttrValue> attrs = {}, int num_outputs = 1) {
  return test::run_node("reference", op, "", inputs, attrs, std::vector<bool>(size_t(num_outputs), true));
}

void expect_near_all(const Tensor& got, const std::vector<int64_t>& dims, const std::vector<double>& want,
                     double rtol = 1e-5, double atol = 1e-5) {
  ASSERT_EQ(got.dims(), dims) << got.str();
  ASSERT_EQ(size_t(got.numel()), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    double g = got.get_double(int64_t(i)), w = want[i];
    if (std::isnan(w)) {
      EXPECT_TRUE(std::isnan(g)) << "element " << i;
    } else if (std::isinf(w)) {
      EXPECT_EQ(g, w) << "element " << i;
    } else {
      EXPECT_NEAR(g, w, atol + rtol * std::abs(w)) << "element " << i << " of " << got.str();
    }
  }
}

std::vector<int64_t> strides_of(const std::vector<int64_t>& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (int i = int(dims.size()) - 2; i >= 0; --i) s[size_t(i)] = s[size_t(i) + 1] * dims[size_t(i) + 1];
  return s;
}

std::vector<int64_t> unravel(int64_t flat, const std::vector<int64_t>& dims) {
  std::vector<int64_t> idx(dims.size());
  for (int i = int(dims.size()) - 1; i >= 0; --i) {
    idx[size_t(i)] = flat % dims[size_t(i)];
    flat /= dims[size_t(i)];
  }
  return idx;
}

// ---------------------------------------------------------------- reductions

using Fold = std::function<double(const std::vector<double>&)>;

double sum_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

std::map<std::string, Fold> reduce_folds() {
  const double inf = std::numeric_limits<double>::infinity();
  return {
      {"ReduceSum", sum_of},
      {"ReduceMean", [](auto& v) { return sum_of(v) / double(v.size()); }},
      {"ReduceMax",
       [inf](auto& v) {
         double m = -inf;
         for (double x : v) m = std::max(m, x);
         return m;
       }},
      {"ReduceMin",
       [inf](auto& v) {
         double m = inf;
         for (double x : v) m = std::min(m, x);
         return m;
       }},
      {"ReduceProd",
       [](auto& v) {
         double p = 1;
         for (double x : v) p *= x;
         return p;
       }},
      {"ReduceL1",
       [](auto& v) {
         double s = 0;
         for (double x : v) s += std::abs(x);
         return s;
       }},
      {"ReduceL2",
       [](auto& v) {
         double s = 0;
         for (double x : v) s += x * x;
         return std::sqrt(s);
       }},
      {"ReduceLogSum", [](auto& v) { return std::log(sum_of(v)); }},
      {"ReduceLogSumExp",
       [](auto& v) {
         double s = 0;
         for (double x : v) s += std::exp(x);
         return std::log(s);
       }},
      {"ReduceSumSquare",
       [](auto& v) {
         double s = 0;
         for (double x : v) s += x * x;
         return s;
       }},
  };
}

// Naive reduction: groups input elements by their output position.
std::vector<double> naive_reduce(const std::vector<double>& x, const std::vector<int64_t>& dims,
                                 const std::vector<bool>& reduced, const Fold& fold, std::vector<int64_t>* kept_dims) {
  std::vector<int64_t> out_dims;
  for (size_t d = 0; d < dims.size(); ++d) out_dims.push_back(reduced[d] ? 1 : dims[d]);
  std::vector<std::vector<double>> groups(size_t(numel_of(out_dims)));
  std::vector<int64_t> os = strides_of(out_dims);
  for (int64_t i = 0; i < int64_t(x.size()); ++i) {
    std::vector<int64_t> idx = unravel(i, dims);
    int64_t o = 0;
    for (size_t d = 0; d < dims.size(); ++d) o += (reduced[d] ? 0 : idx[d]) * os[d];
    groups[size_t(o)].push_back(x[size_t(i)]);
  }
  std::vector<double> out;
  for (auto& g : groups) out.push_back(fold(g));
  *kept_dims = out_dims;
  return out;
}

struct ReduceCase {
  std::optional<std::vector<int64_t>> axes;  // nullopt: axes input omitted
  int keepdims;
  int noop;
};

TEST(Reduce, AllOpsMatchNaiveOverAxesKeepdimsAndNoop) {
  const std::vector<int64_t> dims = {3, 4, 5};
  const std::vector<ReduceCase> cases = {
      {std::nullopt, 1, 0},
      {std::nullopt, 0, 0},
      {std::vector<int64_t>{1}, 1, 0},
      {std::vector<int64_t>{-1}, 0, 0},
      {std::vector<int64_t>{0, 2}, 1, 0},
      {std::vector<int64_t>{2, -3}, 0, 0},
      {std::vector<int64_t>{0, 1}, 0, 0},
      {std::vector<int64_t>{}, 0, 1},
      {std::nullopt, 0, 1},
      {std::vector<int64_t>{}, 1, 0},
  };
  for (auto& [op, fold] : reduce_folds()) {
    bool positive = op == "ReduceLogSum";
    Tensor x = random_tensor(DType::f32, dims, positive ? kPositive : kRandom, rng());
    std::vector<double> xv = values_of(x);
    for (const ReduceCase& c : cases) {
      SCOPED_TRACE(op + " keepdims=" + std::to_string(c.keepdims) + " noop=" + std::to_string(c.noop) +
                   " axes=" + (c.axes ? dims_str(*c.axes) : "none"));
      std::vector<bool> reduced(dims.size(), false);
      bool all = !c.axes || c.axes->empty();
      if (all)
        reduced.assign(dims.size(), !c.noop);
      else
        for (int64_t a : *c.axes) reduced[size_t(a < 0 ? a + 3 : a)] = true;
      std::vector<int64_t> kept;
      std::vector<double> want = naive_reduce(xv, dims, reduced, fold, &kept);
      std::vector<int64_t> out_dims;
      for (size_t d = 0; d < dims.size(); ++d)
        if (!reduced[d] || c.keepdims) out_dims.push_back(kept[d]);
      std::vector<In> ins = {rt(x)};
      if (c.axes) ins.push_back(rt(i64_tensor(*c.axes)));
      auto out = run_node(op, ins, {{"keepdims", int64_t(c.keepdims)}, {"noop_with_empty_axes", int64_t(c.noop)}});
      expect_near_all(out[0], out_dims, want, 2e-5, 1e-5);
    }
  }
}

TEST(Reduce, EmptySetGivesIdentity) {
  const double inf = std::numeric_limits<double>::infinity();
  Tensor x = Tensor::empty(DType::f32, {2, 0, 4});
  std::map<std::string, double> identity = {
      {"ReduceSum", 0.0},       {"ReduceProd", 1.0},    {"ReduceMax", -inf},
      {"ReduceMin", inf},       {"ReduceL1", 0.0},      {"ReduceL2", 0.0},
      {"ReduceSumSquare", 0.0}, {"ReduceLogSum", -inf}, {"ReduceLogSumExp", -inf},
  };
  for (auto& [op, v] : identity) {
    SCOPED_TRACE(op);
    auto out = run_node(op, {rt(x), cst(i64_tensor({1}))});
    expect_near_all(out[0], {2, 1, 4}, std::vector<double>(8, v));
  }
  auto mean = run_node("ReduceMean", {rt(x), cst(i64_tensor({1}))}, {{"keepdims", int64_t(0)}});
  expect_near_all(mean[0], {2, 4}, std::vector<double>(8, std::nan("")));
  Tensor xi = Tensor::empty(DType::i32, {3, 0});
  auto imax = run_node("ReduceMax", {rt(xi), cst(i64_tensor({-1}))});
  expect_near_all(imax[0], {3, 1}, std::vector<double>(3, double(INT32_MIN)));
}

TEST(Reduce, IntegerAndHalfInputs) {
  std::vector<double> v = {7, -3, 12, 5, -9, 4, 100000, 3, -2, 1, 8, -6};
  Tensor xi = make_tensor(DType::i64, {3, 4}, v);
  auto sum = run_node("ReduceSum", {rt(xi), cst(i64_tensor({1}))}, {{"keepdims", int64_t(0)}});
  EXPECT_EQ(sum[0].dtype(), DType::i64);
  expect_near_all(sum[0], {3}, {7 - 3 + 12 + 5, -9 + 4 + 100000 + 3, -2 + 1 + 8 - 6}, 0, 0);
  auto mean = run_node("ReduceMean", {rt(xi), cst(i64_tensor({0}))});
  // Integer mean truncates toward zero, as numpy's mean with an integer dtype.
  expect_near_all(mean[0], {1, 4}, {-1, 0, 33340, 0}, 0, 0);
  auto prod = run_node("ReduceProd", {rt(make_tensor(DType::i32, {3, 4}, v)), cst(i64_tensor({0}))});
  expect_near_all(prod[0], {1, 4}, {7 * -9 * -2, -3 * 4 * 1, 12 * 100000 * 8, 5 * 3 * -6}, 0, 0);
  Tensor b = make_tensor(DType::boolean, {2, 3}, {0, 1, 0, 0, 0, 0});
  auto bmax = run_node("ReduceMax", {rt(b), cst(i64_tensor({1}))}, {{"keepdims", int64_t(0)}});
  EXPECT_EQ(bmax[0].dtype(), DType::boolean);
  expect_near_all(bmax[0], {2}, {1, 0}, 0, 0);

  Tensor h = random_tensor(DType::f16, {4, 33}, kRandom, rng());
  std::vector<int64_t> kept;
  std::vector<double> want =
      naive_reduce(values_of(h), {4, 33}, {false, true}, reduce_folds()["ReduceSumSquare"], &kept);
  auto hs = run_node("ReduceSumSquare", {rt(h), cst(i64_tensor({1}))}, {{"keepdims", int64_t(0)}});
  EXPECT_EQ(hs[0].dtype(), DType::f16);
  expect_near_all(hs[0], {4}, want, 1e-3, 1e-3);
}

TEST(Reduce, LogSumExpIsStableForLargeValues) {
  Tensor x = make_tensor(DType::f32, {1, 3}, {1000.0, 999.0, 998.0});
  auto out = run_node("ReduceLogSumExp", {rt(x), cst(i64_tensor({1}))});
  double want = 1000.0 + std::log(1 + std::exp(-1.0) + std::exp(-2.0));
  expect_near_all(out[0], {1, 1}, {want}, 1e-6, 0);
}

// ------------------------------------------------------------ ArgMax / TopK

TEST(ArgReduce, MatchesNaiveWithTiesAndSelectLastIndex) {
  // Values drawn from a small set so that ties are common.
  std::uniform_int_distribution<int> small(1, 3);
  std::vector<int64_t> dims = {3, 4, 5};
  std::vector<double> v(60);
  for (auto& x : v) x = small(rng());
  Tensor x = make_tensor(DType::f32, dims, v);
  for (std::string op : {"ArgMax", "ArgMin"})
    for (int64_t axis : {0, 1, -1})
      for (int64_t keep : {0, 1})
        for (int64_t last : {0, 1}) {
          SCOPED_TRACE(op + " axis=" + std::to_string(axis) + " keep=" + std::to_string(keep) +
                       " last=" + std::to_string(last));
          size_t ax = size_t(axis < 0 ? axis + 3 : axis);
          std::vector<int64_t> od = dims;
          od[ax] = 1;
          std::vector<double> want;
          std::vector<int64_t> st = strides_of(dims);
          for (int64_t o = 0; o < numel_of(od); ++o) {
            std::vector<int64_t> idx = unravel(o, od);
            int64_t best = 0;
            double bv = 0;
            for (int64_t k = 0; k < dims[ax]; ++k) {
              idx[ax] = k;
              int64_t off = 0;
              for (size_t d = 0; d < 3; ++d) off += idx[d] * st[d];
              double val = v[size_t(off)];
              bool better = op == "ArgMax" ? val > bv : val < bv;
              if (k == 0 || better || (last && val == bv)) {
                best = k;
                bv = val;
              }
            }
            want.push_back(double(best));
          }
          if (!keep) od.erase(od.begin() + long(ax));
          auto out = run_node(op, {rt(x)}, {{"axis", axis}, {"keepdims", keep}, {"select_last_index", last}});
          EXPECT_EQ(out[0].dtype(), DType::i64);
          expect_near_all(out[0], od, want, 0, 0);
        }
}

TEST(TopK, TiesGoToTheLowerIndex) {
  Tensor x = make_tensor(DType::i64, {6}, {3, 1, 3, 2, 3, 1});
  auto big = run_node("TopK", {rt(x), cst(i64_tensor({4}))}, {}, 2);
  expect_near_all(big[0], {4}, {3, 3, 3, 2}, 0, 0);
  expect_near_all(big[1], {4}, {0, 2, 4, 3}, 0, 0);
  auto small = run_node("TopK", {rt(x), rt(i64_tensor({3}))}, {{"largest", int64_t(0)}}, 2);
  expect_near_all(small[0], {3}, {1, 1, 2}, 0, 0);
  expect_near_all(small[1], {3}, {1, 5, 3}, 0, 0);
}

TEST(TopK, MatchesStableSortAlongAnyAxis) {
  std::uniform_int_distribution<int> small(-4, 4);
  std::vector<int64_t> dims = {5, 3, 4};
  std::vector<double> v(60);
  for (auto& x : v) x = small(rng()) + 0.5;
  Tensor x = make_tensor(DType::f32, dims, v);
  for (int64_t axis : {0, -2, 2})
    for (int64_t largest : {0, 1}) {
      SCOPED_TRACE("axis=" + std::to_string(axis) + " largest=" + std::to_string(largest));
      size_t ax = size_t(axis < 0 ? axis + 3 : axis);
      int64_t k = dims[ax] - 1;
      std::vector<int64_t> od = dims;
      od[ax] = k;
      std::vector<int64_t> st = strides_of(dims), ost = strides_of(od);
      std::vector<double> want_v(size_t(numel_of(od))), want_i(want_v.size());
      std::vector<int64_t> base_dims = dims;
      base_dims[ax] = 1;
      for (int64_t b = 0; b < numel_of(base_dims); ++b) {
        std::vector<int64_t> idx = unravel(b, base_dims);
        std::vector<std::pair<double, int64_t>> items;
        for (int64_t j = 0; j < dims[ax]; ++j) {
          idx[ax] = j;
          int64_t off = 0;
          for (size_t d = 0; d < 3; ++d) off += idx[d] * st[d];
          items.push_back({largest ? -v[size_t(off)] : v[size_t(off)], j});
        }
        std::stable_sort(items.begin(), items.end(), [](auto& a, auto& c) { return a.first < c.first; });
        for (int64_t j = 0; j < k; ++j) {
          idx[ax] = j;
          int64_t off = 0;
          for (size_t d = 0; d < 3; ++d) off += idx[d] * ost[d];
          want_v[size_t(off)] = largest ? -items[size_t(j)].first : items[size_t(j)].first;
          want_i[size_t(off)] = double(items[size_t(j)].second);
        }
      }
      auto out = run_node("TopK", {rt(x), rt(i64_tensor({k}))}, {{"axis", axis}, {"largest", largest}}, 2);
      expect_near_all(out[0], od, want_v, 0, 0);
      expect_near_all(out[1], od, want_i, 0, 0);
    }
}

TEST(TopK, KLargerThanAxisIsAnError) {
  Tensor x = random_tensor(DType::f32, {2, 3}, kRandom, rng());
  EXPECT_THROW(run_node("TopK", {rt(x), rt(i64_tensor({4}))}, {}, 2), Error);
}

// ------------------------------------------------------ Softmax / LayerNorm

std::vector<double> naive_softmax(const std::vector<double>& x, const std::vector<int64_t>& dims, size_t axis,
                                  bool log) {
  std::vector<double> y(x.size());
  std::vector<int64_t> st = strides_of(dims);
  for (int64_t i = 0; i < int64_t(x.size()); ++i) {
    std::vector<int64_t> idx = unravel(i, dims);
    double denom = 0;
    for (int64_t k = 0; k < dims[axis]; ++k) denom += std::exp(x[size_t(i + (k - idx[axis]) * st[axis])]);
    y[size_t(i)] = log ? x[size_t(i)] - std::log(denom) : std::exp(x[size_t(i)]) / denom;
  }
  return y;
}

TEST(Softmax, MatchesNaiveAlongEachAxis) {
  std::vector<int64_t> dims = {2, 3, 7};
  for (DType dt : {DType::f32, DType::f64, DType::f16})
    for (std::string op : {"Softmax", "LogSoftmax"})
      for (int64_t axis : {-1, 0, 1}) {
        SCOPED_TRACE(op + " " + std::string(dtype_name(dt)) + " axis " + std::to_string(axis));
        Tensor x = random_tensor(dt, dims, kRandom, rng());
        std::vector<double> want =
            naive_softmax(values_of(x), dims, size_t(axis < 0 ? axis + 3 : axis), op == "LogSoftmax");
        auto out = run_node(op, {rt(x)}, {{"axis", axis}});
        EXPECT_EQ(out[0].dtype(), dt);
        double tol = dt == DType::f16 ? 2e-3 : 1e-5;
        expect_near_all(out[0], dims, want, tol, tol);
      }
}

TEST(Softmax, StableForLargeInputs) {
  Tensor x = make_tensor(DType::f32, {1, 3}, {1000, 1001, 1002});
  std::vector<double> want = naive_softmax({0, 1, 2}, {1, 3}, 1, false);
  expect_near_all(run_node("Softmax", {rt(x)})[0], {1, 3}, want);
  std::vector<double> want_log = naive_softmax({0, 1, 2}, {1, 3}, 1, true);
  expect_near_all(run_node("LogSoftmax", {rt(x)})[0], {1, 3}, want_log, 1e-5, 1e-4);
}

TEST(Softmax, LongF32RowsAreAccurateAndMaskedEntriesExactlyZero) {
  // Rows longer than the 8-wide vector loop, with a tail; values up to +-20.
  for (int64_t n : {37, 128}) {
    std::vector<double> v = random_values(3 * n, 0.1, 20.0);
    v[5] = -std::numeric_limits<double>::infinity();  // a masked logit
    v[size_t(n + 9)] = -3.4e38;                       // a finfo.min mask
    Tensor x = make_tensor(DType::f32, {3, n}, values_of(make_tensor(DType::f32, {3, n}, v)));
    std::vector<double> xv = values_of(x);
    for (bool log : {false, true}) {
      SCOPED_TRACE("n=" + std::to_string(n) + (log ? " log" : ""));
      std::vector<double> want = naive_softmax(xv, {3, n}, 1, log);
      Tensor y = run_node(log ? "LogSoftmax" : "Softmax", {rt(x)})[0];
      if (!log) {
        EXPECT_EQ(y.get_double(5), 0.0);
        EXPECT_EQ(y.get_double(n + 9), 0.0);
      }
      expect_near_all(y, {3, n}, want, 2e-6, log ? 1e-5 : 1e-12);
    }
  }
  // A NaN makes its whole row NaN (as exp(x - max) / sum does), other rows are unaffected.
  Tensor x = random_tensor(DType::f32, {2, 11}, kRandom, rng());
  x.data<float>()[3] = std::nanf("");
  Tensor y = run_node("Softmax", {rt(x)})[0];
  for (int i = 0; i < 11; ++i) EXPECT_TRUE(std::isnan(y.get_double(i))) << i;
  for (int i = 11; i < 22; ++i) EXPECT_FALSE(std::isnan(y.get_double(i))) << i;
}

struct LayerNormWant {
  std::vector<double> y, mean, inv_std;
};

// Scale/B given over the normalized dims only (the usual layout).
LayerNormWant naive_layer_norm(const std::vector<double>& x, int64_t rows, int64_t n, const std::vector<double>* scale,
                               const std::vector<double>* bias, double eps) {
  LayerNormWant w;
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t k = 0; k < n; ++k) mean += x[size_t(r * n + k)];
    mean /= double(n);
    for (int64_t k = 0; k < n; ++k) var += std::pow(x[size_t(r * n + k)] - mean, 2);
    var /= double(n);
    double inv = 1 / std::sqrt(var + eps);
    w.mean.push_back(mean);
    w.inv_std.push_back(inv);
    for (int64_t k = 0; k < n; ++k) {
      double v = (x[size_t(r * n + k)] - mean) * inv;
      if (scale) v *= (*scale)[size_t(k)];
      if (bias) v += (*bias)[size_t(k)];
      w.y.push_back(v);
    }
  }
  return w;
}

TEST(LayerNormalization, OutputsMatchNaiveWithMeanAndInvStdDev) {
  std::vector<int64_t> dims = {2, 3, 4};
  Tensor x = random_tensor(DType::f32, dims, kRandom, rng());
  for (int64_t axis : {-1, 1, 0}) {
    SCOPED_TRACE("axis " + std::to_string(axis));
    size_t ax = size_t(axis < 0 ? axis + 3 : axis);
    std::vector<int64_t> norm_dims(dims.begin() + long(ax), dims.end());
    int64_t n = numel_of(norm_dims), rows = numel_of(dims) / n;
    Tensor scale = random_tensor(DType::f32, norm_dims, kRandom, rng()),
           bias = random_tensor(DType::f32, norm_dims, kRandom, rng());
    std::vector<double> sv = values_of(scale), bv = values_of(bias);
    LayerNormWant w = naive_layer_norm(values_of(x), rows, n, &sv, &bv, 1e-3);
    auto out = run_node("LayerNormalization", {rt(x), cst(scale), rt(bias)}, {{"axis", axis}, {"epsilon", 1e-3f}}, 3);
    std::vector<int64_t> stat_dims = dims;
    for (size_t d = ax; d < 3; ++d) stat_dims[d] = 1;
    expect_near_all(out[0], dims, w.y);
    EXPECT_EQ(out[1].dtype(), DType::f32);
    expect_near_all(out[1], stat_dims, w.mean);
    expect_near_all(out[2], stat_dims, w.inv_std);
  }
}

TEST(LayerNormalization, BroadcastScaleNoBiasAndHalf) {
  // Scale [1,4] broadcast over X [3,2,4] normalized over the last two dims.
  Tensor x = random_tensor(DType::f32, {3, 2, 4}, kRandom, rng());
  Tensor scale = random_tensor(DType::f32, {1, 4}, kRandom, rng());
  std::vector<double> s4 = values_of(scale), s8;
  for (int r = 0; r < 2; ++r) s8.insert(s8.end(), s4.begin(), s4.end());
  LayerNormWant w = naive_layer_norm(values_of(x), 3, 8, &s8, nullptr, 1e-5);
  auto out = run_node("LayerNormalization", {rt(x), rt(scale)}, {{"axis", int64_t(1)}});
  expect_near_all(out[0], {3, 2, 4}, w.y);

  Tensor xh = random_tensor(DType::f16, {4, 16}, kRandom, rng());
  Tensor sh = random_tensor(DType::f16, {16}, kRandom, rng()), bh = random_tensor(DType::f16, {16}, kRandom, rng());
  std::vector<double> sv = values_of(sh), bv = values_of(bh);
  LayerNormWant wh = naive_layer_norm(values_of(xh), 4, 16, &sv, &bv, 1e-5);
  auto outh = run_node("LayerNormalization", {rt(xh), rt(sh), rt(bh)}, {}, 2);
  EXPECT_EQ(outh[0].dtype(), DType::f16);
  EXPECT_EQ(outh[1].dtype(), DType::f32);  // Mean is in stash_type (float)
  expect_near_all(outh[0], {4, 16}, wh.y, 4e-3, 4e-3);
  expect_near_all(outh[1], {4, 1}, wh.mean, 1e-5, 1e-5);
}

// ------------------------------------------------------------ MatMul / Gemm

// C[b][i][j] = sum_k A[b][i][k] B[b][k][j] for plain 2-D operands.
std::vector<double> naive_mm(const std::vector<double>& a, const std::vector<double>& b, int64_t M, int64_t K,
                             int64_t N, bool ta = false, bool tb = false) {
  std::vector<double> c(size_t(M * N), 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k)
        c[size_t(i * N + j)] +=
            (ta ? a[size_t(k * M + i)] : a[size_t(i * K + k)]) * (tb ? b[size_t(j * K + k)] : b[size_t(k * N + j)]);
  return c;
}

TEST(MatMul, TwoDAndOneDPromotion) {
  Tensor a = random_tensor(DType::f32, {5, 7}, kRandom, rng()), b = random_tensor(DType::f32, {7, 3}, kRandom, rng());
  std::vector<double> av = values_of(a), bv = values_of(b);
  expect_near_all(run_node("MatMul", {rt(a), rt(b)})[0], {5, 3}, naive_mm(av, bv, 5, 7, 3));
  Tensor v7 = random_tensor(DType::f32, {7}, kRandom, rng());
  std::vector<double> v7v = values_of(v7);
  expect_near_all(run_node("MatMul", {rt(v7), rt(b)})[0], {3}, naive_mm(v7v, bv, 1, 7, 3));
  expect_near_all(run_node("MatMul", {rt(a), rt(v7)})[0], {5}, naive_mm(av, v7v, 5, 7, 1));
  expect_near_all(run_node("MatMul", {rt(v7), rt(v7)})[0], {}, naive_mm(v7v, v7v, 1, 7, 1));
  // 1-D times a batched matrix: [4] x [2,4,3] -> [2,3].
  Tensor v4 = random_tensor(DType::f32, {4}, kRandom, rng()), b3 = random_tensor(DType::f32, {2, 4, 3}, kRandom, rng());
  std::vector<double> v4v = values_of(v4), b3v = values_of(b3), want;
  for (int bi = 0; bi < 2; ++bi) {
    std::vector<double> mat(b3v.begin() + bi * 12, b3v.begin() + (bi + 1) * 12);
    auto r = naive_mm(v4v, mat, 1, 4, 3);
    want.insert(want.end(), r.begin(), r.end());
  }
  expect_near_all(run_node("MatMul", {rt(v4), rt(b3)})[0], {2, 3}, want);
}

TEST(MatMul, BroadcastsBatchDims) {
  // [3,1,2,4] x [2,4,5] -> [3,2,2,5]
  Tensor a = random_tensor(DType::f32, {3, 1, 2, 4}, kRandom, rng()),
         b = random_tensor(DType::f32, {2, 4, 5}, kRandom, rng());
  std::vector<double> av = values_of(a), bv = values_of(b), want;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) {
      std::vector<double> am(av.begin() + i * 8, av.begin() + (i + 1) * 8);
      std::vector<double> bm(bv.begin() + j * 20, bv.begin() + (j + 1) * 20);
      auto r = naive_mm(am, bm, 2, 4, 5);
      want.insert(want.end(), r.begin(), r.end());
    }
  expect_near_all(run_node("MatMul", {rt(a), rt(b)})[0], {3, 2, 2, 5}, want);
}

TEST(MatMul, IntegerIsExactAndHalfIsClose) {
  std::vector<double> av = {1, -2, 3, 4, 5, -6}, bv = {7, 8, -9, 10, 11, 12};
  Tensor a = make_tensor(DType::i64, {2, 3}, av), b = make_tensor(DType::i64, {3, 2}, bv);
  auto out = run_node("MatMul", {rt(a), rt(b)});
  EXPECT_EQ(out[0].dtype(), DType::i64);
  expect_near_all(out[0], {2, 2}, naive_mm(av, bv, 2, 3, 2), 0, 0);
  Tensor ah = random_tensor(DType::f16, {3, 16}, kRandom, rng()),
         bh = random_tensor(DType::f16, {16, 2}, kRandom, rng());
  auto oh = run_node("MatMul", {rt(ah), rt(bh)});
  EXPECT_EQ(oh[0].dtype(), DType::f16);
  expect_near_all(oh[0], {3, 2}, naive_mm(values_of(ah), values_of(bh), 3, 16, 2), 2e-3, 1e-2);
}

TEST(MatMul, SpansSeveralCacheBlocks) {
  // Larger than the reference GEMM's 128 x 512 blocks of B in both directions.
  Tensor a = random_tensor(DType::f32, {3, 300}, kRandom, rng()),
         b = random_tensor(DType::f32, {300, 1100}, kRandom, rng());
  expect_near_all(run_node("MatMul", {rt(a), rt(b)})[0], {3, 1100}, naive_mm(values_of(a), values_of(b), 3, 300, 1100),
                  1e-5, 1e-4);
  Tensor bt = random_tensor(DType::f32, {1100, 300}, kRandom, rng());
  expect_near_all(run_node("Gemm", {rt(a), rt(bt)}, {{"transB", int64_t(1)}})[0], {3, 1100},
                  naive_mm(values_of(a), values_of(bt), 3, 300, 1100, false, true), 1e-5, 1e-4);
}

TEST(MatMul, InnerDimMismatchNamesBothShapes) {
  Tensor a = random_tensor(DType::f32, {2, 3}, kRandom, rng()), b = random_tensor(DType::f32, {4, 5}, kRandom, rng());
  try {
    run_node("MatMul", {rt(a), rt(b)});
    FAIL() << "expected cb::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("[2,3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4,5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("MatMul"), std::string::npos) << msg;
  }
}

TEST(Gemm, TransposesAlphaBetaAndBroadcastC) {
  const int64_t M = 4, K = 6, N = 5;
  for (int ta : {0, 1})
    for (int tb : {0, 1})
      for (auto cdims : std::vector<std::vector<int64_t>>{{N}, {M, 1}, {1}, {M, N}, {}}) {
        SCOPED_TRACE("transA=" + std::to_string(ta) + " transB=" + std::to_string(tb) + " C" + dims_str(cdims));
        Tensor a =
            random_tensor(DType::f32, ta ? std::vector<int64_t>{K, M} : std::vector<int64_t>{M, K}, kRandom, rng());
        Tensor b =
            random_tensor(DType::f32, tb ? std::vector<int64_t>{N, K} : std::vector<int64_t>{K, N}, kRandom, rng());
        Tensor c = random_tensor(DType::f32, cdims, kRandom, rng());
        std::vector<double> cv = values_of(c);
        std::vector<double> want = naive_mm(values_of(a), values_of(b), M, K, N, ta, tb);
        const double alpha = 0.75, beta = -1.5;
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            int64_t ci = cdims.size() == 2                    ? (cdims[1] == 1 ? i : i * N + j)
                         : cdims.size() == 1 && cdims[0] == N ? j
                                                              : 0;
            double& w = want[size_t(i * N + j)];
            w = alpha * w + beta * cv[size_t(ci)];
          }
        auto out = run_node(
            "Gemm", {rt(a), rt(b), rt(c)},
            {{"transA", int64_t(ta)}, {"transB", int64_t(tb)}, {"alpha", float(alpha)}, {"beta", float(beta)}});
        expect_near_all(out[0], {M, N}, want);
      }
  // No C, f64.
  Tensor a = random_tensor(DType::f64, {3, 2}, kRandom, rng()), b = random_tensor(DType::f64, {2, 4}, kRandom, rng());
  auto out = run_node("Gemm", {rt(a), rt(b)});
  expect_near_all(out[0], {3, 4}, naive_mm(values_of(a), values_of(b), 3, 2, 4), 1e-12, 1e-12);
}

TEST(Gemm, MismatchAndBadCAreErrors) {
  Tensor a = random_tensor(DType::f32, {3, 4}, kRandom, rng()), b = random_tensor(DType::f32, {3, 5}, kRandom, rng());
  EXPECT_THROW(run_node("Gemm", {rt(a), rt(b)}), Error);
  EXPECT_NO_THROW(run_node("Gemm", {rt(a), rt(b)}, {{"transA", int64_t(1)}}));
  Tensor c = random_tensor(DType::f32, {2, 5}, kRandom, rng());
  EXPECT_THROW(run_node("Gemm", {rt(a), rt(b), rt(c)}, {{"transA", int64_t(1)}}), Error);
}

// ------------------------------------------------------------------ Einsum

Tensor einsum(const std::string& eq, std::vector<Tensor> ins) {
  std::vector<In> in;
  for (auto& t : ins) in.push_back(rt(t));
  return run_node("Einsum", in, {{"equation", eq}})[0];
}

TEST(Einsum, MatmulTransposeAndOuterProduct) {
  Tensor a = random_tensor(DType::f32, {3, 4}, kRandom, rng()), b = random_tensor(DType::f32, {4, 5}, kRandom, rng());
  std::vector<double> av = values_of(a), bv = values_of(b);
  expect_near_all(einsum("ij,jk->ik", {a, b}), {3, 5}, naive_mm(av, bv, 3, 4, 5));
  expect_near_all(einsum("ij,jk", {a, b}), {3, 5}, naive_mm(av, bv, 3, 4, 5));
  std::vector<double> at;
  for (int j = 0; j < 4; ++j)
    for (int i = 0; i < 3; ++i) at.push_back(av[size_t(i * 4 + j)]);
  expect_near_all(einsum("ij->ji", {a}), {4, 3}, at);
  expect_near_all(einsum("ba", {a}), {4, 3}, at);  // implicit output is alphabetical
  Tensor u = random_tensor(DType::f32, {3}, kRandom, rng()), v = random_tensor(DType::f32, {2}, kRandom, rng());
  std::vector<double> uv = values_of(u), vv = values_of(v), outer;
  for (double x : uv)
    for (double y : vv) outer.push_back(x * y);
  expect_near_all(einsum("i,j->ij", {u, v}), {3, 2}, outer);
  std::vector<double> rowsum;
  for (int i = 0; i < 3; ++i)
    rowsum.push_back(av[size_t(i * 4)] + av[size_t(i * 4 + 1)] + av[size_t(i * 4 + 2)] + av[size_t(i * 4 + 3)]);
  expect_near_all(einsum("ij->i", {a}), {3}, rowsum);
}

TEST(Einsum, TraceDiagonalAndBatchMatmul) {
  Tensor s = random_tensor(DType::f64, {4, 4}, kRandom, rng());
  std::vector<double> sv = values_of(s), diag;
  double trace = 0;
  for (int i = 0; i < 4; ++i) {
    diag.push_back(sv[size_t(i * 5)]);
    trace += sv[size_t(i * 5)];
  }
  expect_near_all(einsum("ii->i", {s}), {4}, diag);
  expect_near_all(einsum("ii", {s}), {}, {trace});
  expect_near_all(einsum("ii->", {s}), {}, {trace});
  Tensor a = random_tensor(DType::f32, {2, 3, 4}, kRandom, rng()),
         b = random_tensor(DType::f32, {2, 4, 5}, kRandom, rng());
  std::vector<double> av = values_of(a), bv = values_of(b), want;
  for (int i = 0; i < 2; ++i) {
    auto r = naive_mm({av.begin() + i * 12, av.begin() + (i + 1) * 12},
                      {bv.begin() + i * 20, bv.begin() + (i + 1) * 20}, 3, 4, 5);
    want.insert(want.end(), r.begin(), r.end());
  }
  expect_near_all(einsum("bij,bjk->bik", {a, b}), {2, 3, 5}, want);
  // Ellipsis with broadcasting: [2,3,4] x [1,4,5] via "...ij,...jk->...ik".
  Tensor b1 = random_tensor(DType::f32, {1, 4, 5}, kRandom, rng());
  std::vector<double> b1v = values_of(b1), want1;
  for (int i = 0; i < 2; ++i) {
    auto r = naive_mm({av.begin() + i * 12, av.begin() + (i + 1) * 12}, b1v, 3, 4, 5);
    want1.insert(want1.end(), r.begin(), r.end());
  }
  expect_near_all(einsum("...ij,...jk->...ik", {a, b1}), {2, 3, 5}, want1);
  expect_near_all(einsum("...ij,...jk", {a, b1}), {2, 3, 5}, want1);
  // Sum over the ellipsis dims is not implied: "...i->i" is an error in numpy.
  EXPECT_THROW(einsum("...ij->ij", {a}), Error);
}

TEST(Einsum, BadEquationsAreErrors) {
  Tensor a = random_tensor(DType::f32, {3, 4}, kRandom, rng());
  EXPECT_THROW(einsum("ijk->i", {a}), Error);
  EXPECT_THROW(einsum("ij,jk->ik", {a}), Error);
  EXPECT_THROW(einsum("ij->iz", {a}), Error);
  Tensor b = random_tensor(DType::f32, {5, 2}, kRandom, rng());
  EXPECT_THROW(einsum("ij,jk->ik", {a, b}), Error);
}

// ------------------------------------------------------------------ Losses

struct LossWant {
  std::vector<double> none;
  double sum = 0, mean = 0;
};

// ONNX semantics: loss = -logp[n, t, d] * w[t]; ignored targets give 0 and are
// excluded from the mean's denominator (sum of applied weights).
LossWant naive_nll(const std::vector<double>& logp, const std::vector<int64_t>& target, int64_t N, int64_t C, int64_t D,
                   const std::vector<double>* w, std::optional<int64_t> ignore) {
  LossWant r;
  double wsum = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) {
      int64_t t = target[size_t(n * D + d)];
      double l = 0, wt = 0;
      if (!(ignore && t == *ignore)) {
        wt = w ? (*w)[size_t(t)] : 1.0;
        l = -logp[size_t((n * C + t) * D + d)] * wt;
      }
      r.none.push_back(l);
      r.sum += l;
      wsum += wt;
    }
  r.mean = r.sum / wsum;
  return r;
}

TEST(Loss, NegativeLogLikelihoodWithWeightsAndIgnoreIndex) {
  const int64_t N = 3, C = 5, D = 4;
  Tensor x = random_tensor(DType::f32, {N, C, 2, 2}, kRandom, rng());
  std::vector<int64_t> t = {0, 4, 2, 2, 1, 1, 3, 0, 4, 2, 2, 3};
  Tensor target = Tensor::from_vector<int64_t>(t, {N, 2, 2});
  Tensor w = random_tensor(DType::f32, {C}, true ? kPositive : kRandom, rng());
  std::vector<double> xv = values_of(x), wv = values_of(w);
  for (bool use_w : {false, true})
    for (std::optional<int64_t> ignore : {std::optional<int64_t>{}, std::optional<int64_t>{2}}) {
      SCOPED_TRACE(std::string("weight=") + (use_w ? "yes" : "no") +
                   " ignore=" + (ignore ? std::to_string(*ignore) : "none"));
      LossWant want = naive_nll(xv, t, N, C, D, use_w ? &wv : nullptr, ignore);
      for (std::string red : {"none", "sum", "mean"}) {
        std::map<std::string, AttrValue> attrs = {{"reduction", red}};
        if (ignore) attrs["ignore_index"] = *ignore;
        std::vector<In> ins = {rt(x), rt(target)};
        if (use_w) ins.push_back(rt(w));
        auto out = run_node("NegativeLogLikelihoodLoss", ins, attrs);
        if (red == "none")
          expect_near_all(out[0], {N, 2, 2}, want.none);
        else
          expect_near_all(out[0], {}, {red == "sum" ? want.sum : want.mean});
      }
    }
}

TEST(Loss, NegativeLogLikelihoodRejectsOutOfRangeTargets) {
  Tensor x = random_tensor(DType::f32, {2, 3}, kRandom, rng());
  Tensor bad = Tensor::from_vector<int64_t>({1, 3}, {2});
  EXPECT_THROW(run_node("NegativeLogLikelihoodLoss", {rt(x), rt(bad)}), Error);
  // An out-of-range value equal to ignore_index is fine.
  Tensor ignored = Tensor::from_vector<int64_t>({1, -100}, {2});
  auto out = run_node("NegativeLogLikelihoodLoss", {rt(x), rt(ignored)}, {{"ignore_index", int64_t(-100)}});
  expect_near_all(out[0], {}, {-x.get_double(1)});
}

TEST(Loss, SoftmaxCrossEntropyWithLogProbOutput) {
  const int64_t N = 4, C = 6, D = 3;
  Tensor x = random_tensor(DType::f32, {N, C, D}, kRandom, rng());
  std::vector<int64_t> t = {5, 0, 1, 2, 2, 3, 4, 4, 0, 1, 5, 2};
  Tensor target = Tensor::from_vector<int64_t>(t, {N, D});
  Tensor w = random_tensor(DType::f32, {C}, true ? kPositive : kRandom, rng());
  std::vector<double> logp = naive_softmax(values_of(x), {N, C, D}, 1, true), wv = values_of(w);
  for (std::string red : {"none", "sum", "mean"}) {
    SCOPED_TRACE(red);
    LossWant want = naive_nll(logp, t, N, C, D, &wv, int64_t(4));
    auto out = run_node("SoftmaxCrossEntropyLoss", {rt(x), rt(target), rt(w)},
                        {{"reduction", red}, {"ignore_index", int64_t(4)}}, 2);
    if (red == "none")
      expect_near_all(out[0], {N, D}, want.none);
    else
      expect_near_all(out[0], {}, {red == "sum" ? want.sum : want.mean});
    expect_near_all(out[1], {N, C, D}, logp);
  }
  // Rank-2 scores, i32 labels, no weight, default mean, single output.
  Tensor x2 = random_tensor(DType::f32, {5, 3}, kRandom, rng());
  std::vector<int64_t> t2 = {0, 2, 1, 1, 2};
  Tensor target2 = make_tensor(DType::i32, {5}, {0, 2, 1, 1, 2});
  LossWant want2 = naive_nll(naive_softmax(values_of(x2), {5, 3}, 1, true), t2, 5, 3, 1, nullptr, {});
  expect_near_all(run_node("SoftmaxCrossEntropyLoss", {rt(x2), rt(target2)})[0], {}, {want2.mean});
}

// ------------------------------------------------------- symbolic inference

Shape sym_shape(std::vector<Dim> dims) { return Shape(std::move(dims)); }

TEST(Inference, SymbolicDimsFlowThroughMatMulSoftmaxAndReductions) {
  Graph g;
  Dim batch = Dim::sym("batch"), seq = Dim::sym("seq");
  Value* x = g.add_input("x", {DType::f32, sym_shape({batch, seq, Dim::fixed(768)})});
  Value* w = g.add_constant("w", Tensor::empty(DType::f32, {768, 3072}));  // never read
  Value* axes = g.add_constant("axes", i64_tensor({-1}));
  Value* dyn_axes = g.add_input("dyn_axes", {DType::i64, Shape::of({1})});
  Value* k = g.add_constant("k", i64_tensor({5}));
  Value *mm = g.add_value("mm"), *sm = g.add_value("sm"), *mean_keep = g.add_value("mean_keep"),
        *mean_drop = g.add_value("mean_drop"), *dyn_keep = g.add_value("dyn_keep"), *dyn_drop = g.add_value("dyn_drop"),
        *ln = g.add_value("ln"), *ln_mean = g.add_value("ln_mean"), *topv = g.add_value("topv"),
        *topi = g.add_value("topi"), *es = g.add_value("es"), *am = g.add_value("am"), *gm = g.add_value("gm");
  g.add_node("MatMul", {x, w}, {mm});
  g.add_node("Softmax", {mm}, {sm});
  g.add_node("ReduceMean", {x, axes}, {mean_keep});
  g.add_node("ReduceMean", {x, axes}, {mean_drop}, {{"keepdims", int64_t(0)}});
  g.add_node("ReduceSum", {x, dyn_axes}, {dyn_keep});
  g.add_node("ReduceSum", {x, dyn_axes}, {dyn_drop}, {{"keepdims", int64_t(0)}});
  g.add_node("LayerNormalization", {x}, {ln, ln_mean});
  g.add_node("TopK", {mm, k}, {topv, topi});
  g.add_node("Einsum", {x, x}, {es}, {{"equation", std::string("bsd,btd->bst")}});
  g.add_node("ArgMax", {x}, {am}, {{"axis", int64_t(1)}, {"keepdims", int64_t(0)}});
  Value* x2 = g.add_input("x2", {DType::f32, sym_shape({Dim::sym("rows"), Dim::fixed(768)})});
  g.add_node("Gemm", {x2, w}, {gm});
  infer_types(g);
  auto str = [](Value* v) { return v->type.str(); };
  EXPECT_EQ(str(mm), "f32[batch,seq,3072]");
  EXPECT_EQ(str(sm), "f32[batch,seq,3072]");
  EXPECT_EQ(str(mean_keep), "f32[batch,seq,1]");
  EXPECT_EQ(str(mean_drop), "f32[batch,seq]");
  EXPECT_EQ(str(dyn_keep), "f32[?,?,?]");  // rank known, which axes unknown
  EXPECT_EQ(str(dyn_drop), "f32[?,?]");    // one axis (axes has static shape [1])
  EXPECT_EQ(str(ln), "f32[batch,seq,768]");
  EXPECT_EQ(str(ln_mean), "f32[batch,seq,1]");
  EXPECT_EQ(str(topv), "f32[batch,seq,5]");
  EXPECT_EQ(str(topi), "i64[batch,seq,5]");
  EXPECT_EQ(str(es), "f32[batch,seq,seq]");
  EXPECT_EQ(str(am), "i64[batch,768]");
  EXPECT_EQ(str(gm), "f32[rows,3072]");
}

TEST(Inference, MatMulBroadcastsSymbolicBatchAndRejectsStaticMismatch) {
  Graph g;
  Value* a = g.add_input("a", {DType::f32, sym_shape({Dim::sym("b"), Dim::fixed(1), Dim::sym("m"), Dim::fixed(64)})});
  Value* b = g.add_input("b", {DType::f32, sym_shape({Dim::fixed(12), Dim::fixed(64), Dim::sym("n")})});
  Value* c = g.add_value("c");
  g.add_node("MatMul", {a, b}, {c});
  infer_types(g);
  EXPECT_EQ(c->type.str(), "f32[b,12,m,n]");

  Graph bad;
  Value* p = bad.add_input("p", {DType::f32, sym_shape({Dim::sym("s"), Dim::fixed(3)})});
  Value* q = bad.add_input("q", {DType::f32, Shape::of({4, 2})});
  bad.add_node("MatMul", {p, q}, {bad.add_value("r")});
  try {
    infer_types(bad);
    FAIL() << "expected cb::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("[s,3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4,2]"), std::string::npos) << msg;
  }
}

TEST(Inference, LossShapes) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, sym_shape({Dim::sym("n"), Dim::fixed(10), Dim::sym("d")})});
  Value* t = g.add_input("t", {DType::i64, sym_shape({Dim::sym("n"), Dim::sym("d")})});
  Value *none = g.add_value("none"), *mean = g.add_value("mean"), *lp = g.add_value("lp");
  g.add_node("NegativeLogLikelihoodLoss", {x, t}, {none}, {{"reduction", std::string("none")}});
  g.add_node("SoftmaxCrossEntropyLoss", {x, t}, {mean, lp});
  infer_types(g);
  EXPECT_EQ(none->type.str(), "f32[n,d]");
  EXPECT_EQ(mean->type.str(), "f32[]");
  EXPECT_EQ(lp->type.str(), "f32[n,10,d]");
}

}  // namespace
