// The cpu backend's fast f32 elementwise approximations
// (backends/cpu/elementwise_kernels.*): Exp, Tanh and Erf checked for
// accuracy against double-precision libm over dense grids and on special
// values; every result must be bit-identical whatever the thread count.
// The comparisons of every elementwise kernel with the reference backend on
// random inputs (broadcasts, odd and threaded sizes, NaN propagation, other
// dtypes, empty tensors) are cases of the op harness
// (tests/op_cases/elementwise.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "tests/test_util.h"

using namespace cb;
using cb::test::expect_bitwise_equal;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// One node of `op` over x on the cpu backend with `threads` threads.
Tensor run_cpu(const std::string& op, const Tensor& x, int threads = 1) {
  return cb::test::run_node("cpu", op, "", {x}, {}, {true}, threads)[0];
}

// Max error of the cpu kernel against double-precision `exact` over `xs`:
// absolute, and relative to |exact|. The 1- and 2-thread results must be
// bit-identical (grids of more than 2M points are shared with a helper).
struct Errors {
  double abs = 0, rel = 0;
};
Errors approximation_errors(const std::string& op, const std::vector<float>& xs, double (*exact)(double)) {
  Tensor x = Tensor::from_vector<float>(xs, {int64_t(xs.size())});
  Tensor one = run_cpu(op, x, 1);
  Tensor two = run_cpu(op, x, 2);
  expect_bitwise_equal(two, one, op + " with 2 threads vs 1");
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
  Tensor exp = run_cpu("Exp", x);
  Tensor tanh = run_cpu("Tanh", x);
  Tensor erf = run_cpu("Erf", x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    float v = x.data<float>()[i];
    auto same = [&](float got, float want, const char* op) {
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(got)) << op << "(" << v << ") = " << got;
      else if (want == 0 || std::isinf(want))
        EXPECT_EQ(got, want) << op << "(" << v << ")";
      else
        EXPECT_NEAR(got, want, 2.5e-7 * std::fabs(want)) << op << "(" << v << ")";
      if (want == 0) {
        EXPECT_EQ(std::signbit(got), std::signbit(want)) << op << "(" << v << ") sign";
      }
    };
    same(exp.data<float>()[i], std::exp(v), "Exp");
    same(tanh.data<float>()[i], std::tanh(v), "Tanh");
    same(erf.data<float>()[i], std::erf(v), "Erf");
  }
}

}  // namespace
