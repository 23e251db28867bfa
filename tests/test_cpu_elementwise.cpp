// The cpu backend's fast f32 elementwise kernels (backends/cpu/elementwise_kernels.*)
// against the reference backend on random non-zero inputs: every binary op
// over same-shape, scalar, row, column and general broadcasts, Where, Sum,
// Pow, the unary ops, odd sizes (partial vectors) and sizes big enough to be
// split across threads, with 1 and 2 threads. Exact ops must match the
// reference bit for bit; Exp, Tanh and Erf are approximations checked for
// accuracy against double-precision libm over dense grids. Every result must
// be bit-identical whatever the thread count. Other dtypes fall back to the
// reference kernels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "runtime/executable.h"

using namespace cb;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Random f32 values with magnitudes in [lo, hi] and random signs (never zero).
Tensor random_f32(const std::vector<int64_t>& dims, uint32_t seed, float lo = 0.1f, float hi = 2.f,
                  bool positive = false) {
  Tensor t = Tensor::empty(DType::f32, dims);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> mag(lo, hi);
  std::bernoulli_distribution sign(0.5);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = positive || sign(rng) ? mag(rng) : -mag(rng);
  return t;
}

Tensor random_bool(const std::vector<int64_t>& dims, uint32_t seed) {
  Tensor t = Tensor::empty(DType::boolean, dims);
  std::mt19937 rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<uint8_t>()[i] = rng() & 1;
  return t;
}

// Runs one node on `backend` with `threads` threads and returns its output.
Tensor run_node(const std::string& backend, int threads, const std::string& op, const std::vector<Tensor>& inputs,
                std::map<std::string, AttrValue> attrs = {}) {
  auto g = std::make_shared<Graph>();
  std::vector<Value*> ins;
  std::map<std::string, Tensor> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string name = std::string(1, 'x').append(std::to_string(i));  // "x" + ... trips GCC 12's -Wrestrict
    ins.push_back(g->add_input(name, {inputs[i].dtype(), Shape::of(inputs[i].dims())}));
    feeds[name] = inputs[i];
  }
  Value* y = g->add_value("y");
  g->add_node(op, ins, {y}, std::move(attrs), "node");
  g->outputs = {y};
  CompileOptions opts;
  opts.num_threads = threads;
  return Executable::compile(g, *make_backend(backend), opts)->run(feeds)[0];
}

std::string describe(const std::string& op, const std::vector<Tensor>& inputs) {
  std::string s = op;
  for (auto& t : inputs) {
    s += ' ';
    s += dtype_name(t.dtype());
    s += dims_str(t.dims());
  }
  return s;
}

// Bitwise equality (NaNs compare by bits too; the ops here make the same NaNs).
void expect_bit_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  ASSERT_EQ(got.dims(), want.dims()) << what;
  if (got.bitwise_equal(want)) return;
  const float* g = got.data<float>();
  const float* w = want.data<float>();
  for (int64_t i = 0; i < got.numel(); ++i)
    if (std::memcmp(&g[i], &w[i], 4) != 0) {
      ADD_FAILURE() << what << ": element " << i << " is " << g[i] << ", want " << w[i];
      return;
    }
}

// The cpu result with 1 and 2 threads equals the reference's bit for bit.
void check_exact(const std::string& op, const std::vector<Tensor>& inputs) {
  std::string what = describe(op, inputs);
  Tensor want = run_node("reference", 1, op, inputs);
  for (int threads : {1, 2}) expect_bit_equal(run_node("cpu", threads, op, inputs), want, what + " threads=" + std::to_string(threads));
}

struct BroadcastCase {
  std::vector<int64_t> a, b;
};

// Same shape (odd sizes, partial vectors), scalars on either side, row
// ("bias") and column broadcasts, general broadcasts.
const std::vector<BroadcastCase> kBroadcastCases = {
    {{1}, {1}},
    {{7}, {7}},
    {{3, 5, 7}, {3, 5, 7}},
    {{3, 100003}, {3, 100003}},
    {{3, 5, 7}, {}},
    {{}, {3, 5, 7}},
    {{1}, {9}},
    {{300007}, {}},
    {{}, {300007}},
    {{}, {}},
    {{5, 7}, {7}},
    {{4, 3, 37}, {3, 37}},
    {{1, 1, 5}, {5}},
    {{37}, {4, 3, 37}},
    {{2311, 131}, {131}},
    {{5, 7}, {5, 1}},
    {{5, 1}, {5, 7}},
    {{2311, 131}, {2311, 1}},
    {{64, 4, 33, 40}, {64, 1, 33, 40}},
    {{2, 1, 4}, {3, 1}},
    {{4, 1, 6, 1}, {1, 5, 1, 7}},
    {{16, 1, 33, 40}, {1, 31, 1, 40}},
    {{3, 1, 70001}, {1, 2, 1}},
};

// Big enough (> 8M elements) to be shared with a helper thread, in pieces
// that start in the middle of rows.
const std::vector<BroadcastCase> kBigBroadcastCases = {
    {{3, 2796203}, {3, 2796203}},
    {{8400001}, {}},
    {{65537, 129}, {129}},
    {{65537, 129}, {65537, 1}},
    {{3, 1, 1400001}, {1, 2, 1}},
};

TEST(CpuElementwise, BinaryOpsMatchReferenceOverBroadcasts) {
  uint32_t seed = 1;
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Min", "Max"})
    for (const auto& c : kBroadcastCases) check_exact(op, {random_f32(c.a, seed++), random_f32(c.b, seed++)});
  for (const auto& c : kBigBroadcastCases) check_exact("Div", {random_f32(c.a, seed++), random_f32(c.b, seed++)});
}

TEST(CpuElementwise, MinMaxPropagateNaNLikeReference) {
  Tensor a = Tensor::from_vector<float>({kNaN, 1.f, -0.f, 0.f, kInf, 2.f, kNaN, -kInf, 3.f}, {9});
  Tensor b = Tensor::from_vector<float>({1.f, kNaN, 0.f, -0.f, 2.f, -kInf, kNaN, kInf, 3.f}, {9});
  for (const char* op : {"Min", "Max", "Add", "Sub", "Mul", "Div"}) check_exact(op, {a, b});
}

TEST(CpuElementwise, VariadicMinMaxAndSum) {
  std::vector<int64_t> d = {3, 100003};
  Tensor a = random_f32(d, 1), b = random_f32(d, 2), c = random_f32(d, 3), e = random_f32(d, 4);
  for (const char* op : {"Min", "Max", "Sum"}) {
    check_exact(op, {a});
    check_exact(op, {a, b, c});
    check_exact(op, {a, random_f32({100003}, 5), c});  // broadcast: reference fallback
  }
  check_exact("Sum", {a, b});
  check_exact("Sum", {a, b, c, e});
  std::vector<int64_t> big = {8400001};
  check_exact("Sum", {random_f32(big, 9), random_f32(big, 10), random_f32(big, 11)});
  check_exact("Sum", {random_f32({5, 7}, 6), random_f32({5, 7}, 7), random_f32({5, 7}, 8)});
}

TEST(CpuElementwise, PowWithScalarExponent) {
  uint32_t seed = 10;
  for (float e : {2.f, 3.f, 0.5f, -1.5f, 1.f, 4.f})
    for (std::vector<int64_t> d : std::vector<std::vector<int64_t>>{{7}, {5, 13}, {3, 700003}}) {
      check_exact("Pow", {random_f32(d, seed++, 0.1f, 2.f, /*positive=*/true), Tensor::scalar<float>(e)});
      check_exact("Pow", {random_f32(d, seed++), Tensor::from_vector<float>({e}, {1})});
    }
  // Not a single f32 exponent: reference fallback.
  check_exact("Pow", {random_f32({5, 7}, seed++, 0.1f, 2.f, true), random_f32({7}, seed++, 0.1f, 2.f, true)});
  check_exact("Pow", {random_f32({5, 7}, seed++), Tensor::scalar<int64_t>(3)});
  check_exact("Pow", {random_f32({8400001}, seed++), Tensor::scalar<float>(2.f)});  // shared with a helper
}

TEST(CpuElementwise, WhereOverBroadcasts) {
  uint32_t seed = 20;
  struct Case {
    std::vector<int64_t> c, x, y;
  };
  for (const Case& k : std::vector<Case>{{{7}, {7}, {7}},
                                         {{3, 5, 7}, {}, {}},
                                         {{256, 1, 33, 33}, {}, {}},
                                         {{1, 1, 33, 33}, {64, 4, 33, 33}, {}},
                                         {{5, 1}, {1, 7}, {5, 7}},
                                         {{3, 100003}, {3, 100003}, {100003}},
                                         {{3, 1}, {3, 2800001}, {2800001}}})
    check_exact("Where", {random_bool(k.c, seed++), random_f32(k.x, seed++), random_f32(k.y, seed++)});
}

TEST(CpuElementwise, ExactUnaryOpsMatchReference) {
  uint32_t seed = 30;
  for (const char* op : {"Neg", "Abs", "Relu", "Sqrt", "Reciprocal"})
    for (int64_t n : {1, 7, 8, 9, 15, 17, 1000, 65536, 300007}) {
      bool positive = std::string(op) == "Sqrt";
      check_exact(op, {random_f32({n}, seed++, 0.1f, 2.f, positive)});
    }
  for (const char* op : {"Neg", "Sqrt"}) check_exact(op, {random_f32({8400001}, seed++, 0.1f, 2.f, true)});
  Tensor special = Tensor::from_vector<float>({kNaN, kInf, -kInf, 0.f, -0.f, -1.f, 1e-40f, -1e-40f, 3.f}, {9});
  for (const char* op : {"Neg", "Abs", "Relu", "Sqrt", "Reciprocal"}) check_exact(op, {special});
}

// Max error of the cpu kernel against double-precision `exact` over `xs`:
// absolute, and relative to |exact|. The 1- and 2-thread results must be
// bit-identical (grids of more than 2M points are shared with a helper).
struct Errors {
  double abs = 0, rel = 0;
};
Errors approximation_errors(const std::string& op, const std::vector<float>& xs, double (*exact)(double)) {
  Tensor x = Tensor::from_vector<float>(xs, {int64_t(xs.size())});
  Tensor one = run_node("cpu", 1, op, {x});
  Tensor two = run_node("cpu", 2, op, {x});
  expect_bit_equal(two, one, op + " with 2 threads vs 1");
  Errors e;
  for (size_t i = 0; i < xs.size(); ++i) {
    double want = exact(double(xs[i]));
    double got = one.data<float>()[i];
    double err = std::fabs(got - want);
    e.abs = std::max(e.abs, err);
    if (want != 0) e.rel = std::max(e.rel, err / std::fabs(want));
  }
  return e;
}

std::vector<float> grid(float lo, float hi, int64_t n) {
  std::vector<float> xs;
  for (int64_t i = 0; i < n; ++i) xs.push_back(float(lo + (double(hi) - lo) * double(i) / double(n - 1)));
  return xs;
}

TEST(CpuElementwise, ErfAccuracyOverDenseGrid) {
  Errors e = approximation_errors("Erf", grid(-6.f, 6.f, 2400001), [](double x) { return std::erf(x); });
  EXPECT_LT(e.abs, 1e-7);  // 5.7e-8 measured: under one f32 step below 1
  // Near zero erf(x) ~ 1.128 x: the error is relative there.
  Errors tiny = approximation_errors("Erf", grid(-1e-3f, 1e-3f, 20001), [](double x) { return std::erf(x); });
  EXPECT_LT(tiny.rel, 1.5e-7);
}

TEST(CpuElementwise, ExpAccuracyOverDenseGrid) {
  // Relative error within ~1 ulp wherever the result is a normal float (8.6e-8 measured).
  Errors e = approximation_errors("Exp", grid(-87.f, 88.7f, 2200001), [](double x) { return std::exp(x); });
  EXPECT_LT(e.rel, 1.5e-7);
  Errors small = approximation_errors("Exp", grid(-1.f, 1.f, 200001), [](double x) { return std::exp(x); });
  EXPECT_LT(small.rel, 1.5e-7);
  // Subnormal results: within two steps of the subnormal grid (2^-149).
  Errors sub = approximation_errors("Exp", grid(-103.f, -87.5f, 10001), [](double x) { return std::exp(x); });
  EXPECT_LT(sub.abs, 2 * std::ldexp(1.0, -149));
}

TEST(CpuElementwise, TanhAccuracyOverDenseGrid) {
  Errors e = approximation_errors("Tanh", grid(-10.f, 10.f, 2200001), [](double x) { return std::tanh(x); });
  EXPECT_LT(e.rel, 2e-7);  // 1.3e-7 measured
  Errors tiny = approximation_errors("Tanh", grid(-1e-3f, 1e-3f, 20001), [](double x) { return std::tanh(x); });
  EXPECT_LT(tiny.rel, 1e-7);
}

TEST(CpuElementwise, ApproximationsOnSpecialValues) {
  Tensor x = Tensor::from_vector<float>({kNaN, kInf, -kInf, 0.f, -0.f, 100.f, -100.f, 89.f, -120.f, 3.9f, -4.5f}, {11});
  Tensor exp = run_node("cpu", 1, "Exp", {x});
  Tensor tanh = run_node("cpu", 1, "Tanh", {x});
  Tensor erf = run_node("cpu", 1, "Erf", {x});
  for (int64_t i = 0; i < x.numel(); ++i) {
    float v = x.data<float>()[i];
    auto same = [&](float got, float want, const char* op) {
      if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << op << "(" << v << ") = " << got;
      else if (want == 0 || std::isinf(want)) EXPECT_EQ(got, want) << op << "(" << v << ")";
      else EXPECT_NEAR(got, want, 2.5e-7 * std::fabs(want)) << op << "(" << v << ")";
      if (want == 0) {
        EXPECT_EQ(std::signbit(got), std::signbit(want)) << op << "(" << v << ") sign";
      }
    };
    same(exp.data<float>()[i], std::exp(v), "Exp");
    same(tanh.data<float>()[i], std::tanh(v), "Tanh");
    same(erf.data<float>()[i], std::erf(v), "Erf");
  }
}

TEST(CpuElementwise, ApproximationsCloseToReferenceOnRandomInputs) {
  uint32_t seed = 40;
  for (const char* op : {"Exp", "Tanh", "Erf"})
    for (int64_t n : {1, 7, 9, 1000, 2100001}) {  // the last is shared with a helper
      Tensor x = random_f32({n}, seed++, 0.01f, 5.f);
      Tensor want = run_node("reference", 1, op, {x});
      Tensor one = run_node("cpu", 1, op, {x});
      expect_bit_equal(run_node("cpu", 2, op, {x}), one, std::string(op) + " threads");
      for (int64_t i = 0; i < n; ++i) {
        float w = want.data<float>()[i];
        ASSERT_NEAR(one.data<float>()[i], w, 1.2e-7 + 2.5e-7 * std::fabs(w)) << op << "(" << x.data<float>()[i] << ")";
      }
    }
}

TEST(CpuElementwise, OtherDtypesFallBackToReference) {
  Tensor a64 = Tensor::from_vector<double>({1.5, -2.25, 3.0}, {3});
  Tensor b64 = Tensor::from_vector<double>({0.5, 4.0, -1.0}, {3});
  Tensor ai = Tensor::from_vector<int32_t>({7, -8, 9}, {3});
  Tensor bi = Tensor::from_vector<int32_t>({2, 3, -4}, {3});
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Min", "Max", "Sum"}) {
    for (auto [a, b] : {std::pair{a64, b64}, std::pair{ai, bi}}) {
      if (a.dtype() == DType::i32 && std::string(op) == "Sum") continue;  // Sum is float-only
      Tensor want = run_node("reference", 1, op, {a, b});
      Tensor got = run_node("cpu", 2, op, {a, b});
      EXPECT_TRUE(got.bitwise_equal(want)) << op << " " << std::string(dtype_name(a.dtype()));
    }
  }
  for (const char* op : {"Neg", "Abs", "Sqrt", "Exp", "Tanh", "Erf", "Reciprocal"}) {
    Tensor x = Tensor::from_vector<double>({0.5, 1.5, 2.5}, {3});
    EXPECT_TRUE(run_node("cpu", 1, op, {x}).bitwise_equal(run_node("reference", 1, op, {x}))) << op;
  }
  Tensor cond = random_bool({5}, 1);
  Tensor xi = Tensor::from_vector<int64_t>({1, 2, 3, 4, 5}, {5});
  Tensor yi = Tensor::from_vector<int64_t>({-1, -2, -3, -4, -5}, {5});
  EXPECT_TRUE(run_node("cpu", 2, "Where", {cond, xi, yi}).bitwise_equal(run_node("reference", 1, "Where", {cond, xi, yi})));
}

TEST(CpuElementwise, EmptyTensors) {
  for (const char* op : {"Add", "Mul", "Div"}) {
    Tensor y = run_node("cpu", 2, op, {random_f32({0, 5}, 1), random_f32({5}, 2)});
    EXPECT_EQ(y.dims(), (std::vector<int64_t>{0, 5})) << op;
  }
  for (const char* op : {"Neg", "Erf", "Exp", "Sqrt"}) {
    Tensor y = run_node("cpu", 2, op, {random_f32({3, 0}, 1)});
    EXPECT_EQ(y.dims(), (std::vector<int64_t>{3, 0})) << op;
  }
}

}  // namespace
