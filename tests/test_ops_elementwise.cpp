// Tests for the elementwise ops: each op runs as a one-node graph on the
// reference backend with random inputs and is compared with a direct
// computation here (double or int64 arithmetic and an independent broadcast
// index mapping). Also covers shape inference, symbolic dims and errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "backends/backend.h"
#include "ir/graph.h"
#include "ir/op_registry.h"
#include "ir/verifier.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::random_tensor;

namespace {

const std::vector<DType> kFloatTypes = {DType::f32, DType::f64, DType::f16, DType::bf16};
const std::vector<DType> kSignedIntTypes = {DType::i64, DType::i32, DType::i16, DType::i8};
const std::vector<DType> kUnsignedIntTypes = {DType::u64, DType::u32, DType::u16, DType::u8};
const std::vector<DType> kAllTypes = {DType::f32, DType::f64, DType::f16,    DType::bf16, DType::i64,
                                      DType::i32, DType::i16, DType::i8,     DType::u64,  DType::u32,
                                      DType::u16, DType::u8,  DType::boolean};

std::vector<DType> numeric_types() {
  std::vector<DType> v = kFloatTypes;
  v.insert(v.end(), kSignedIntTypes.begin(), kSignedIntTypes.end());
  v.insert(v.end(), kUnsignedIntTypes.begin(), kUnsignedIntTypes.end());
  return v;
}

std::mt19937& rng() {
  static std::mt19937 g(1234);
  return g;
}

// Stores v (a double or an int64 that wraps) as element i of t.
template <typename V>
void set_element(Tensor& t, int64_t i, V v) {
  dtype_dispatch(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_integral_v<V> && std::is_integral_v<T> && !std::is_same_v<T, bool>)
      t.data<T>()[i] = static_cast<T>(v);
    else
      t.data<T>()[i] = from_double<T>(double(v));
  });
}

// Random whole numbers in [lo, hi] stored in any dtype (exact in every float
// dtype for small ranges, so ties and exact sums occur).
Tensor random_ints(DType t, std::vector<int64_t> dims, int64_t lo, int64_t hi) {
  Tensor x = Tensor::empty(t, dims);
  for (int64_t i = 0; i < x.numel(); ++i)
    set_element(x, i, double(std::uniform_int_distribution<int64_t>(lo, hi)(rng())));
  return x;
}

template <typename T>
Tensor make(std::vector<T> v, std::vector<int64_t> dims) {
  return Tensor::from_vector<T>(v, dims);
}

// Runs a single `op` node over the given inputs (null = omitted) on the
// reference backend and returns its outputs.
std::vector<Tensor> run_op(const std::string& op, const std::vector<const Tensor*>& inputs,
                           std::map<std::string, AttrValue> attrs = {}, int num_outputs = 1) {
  std::vector<test::NodeInput> in;
  for (const Tensor* t : inputs) in.push_back(t ? test::NodeInput(*t) : test::NodeInput());
  return test::run_node("reference", op, "", in, attrs, std::vector<bool>(size_t(num_outputs), true));
}

Tensor run1(const std::string& op, const std::vector<const Tensor*>& inputs,
            std::map<std::string, AttrValue> attrs = {}) {
  return run_op(op, inputs, std::move(attrs)).at(0);
}

// Numpy broadcast of several shapes (the test's own implementation).
std::vector<int64_t> broadcast_all(const std::vector<const Tensor*>& ins) {
  size_t rank = 0;
  for (auto* t : ins) rank = std::max(rank, t->rank());
  std::vector<int64_t> out(rank, 1);
  for (auto* t : ins)
    for (size_t i = 0; i < t->rank(); ++i) {
      int64_t& o = out[rank - t->rank() + i];
      int64_t d = t->dim(i);
      if (o == 1)
        o = d;
      else
        EXPECT_TRUE(d == 1 || d == o) << "test bug: shapes do not broadcast";
    }
  return out;
}

// Flat index into `in` of the element that output index `flat` reads.
int64_t source_index(int64_t flat, const std::vector<int64_t>& out_dims, const Tensor& in) {
  std::vector<int64_t> idx(out_dims.size());
  for (size_t d = out_dims.size(); d-- > 0;) {
    idx[d] = flat % out_dims[d];
    flat /= out_dims[d];
  }
  int64_t src = 0;
  size_t offset = out_dims.size() - in.rank();
  for (size_t d = 0; d < in.rank(); ++d) src = src * in.dim(d) + (in.dim(d) == 1 ? 0 : idx[offset + d]);
  return src;
}

// out[i] = f(inputs at i) with broadcasting, computed in V (double or int64_t).
template <typename V>
Tensor expected_map(const std::vector<const Tensor*>& ins, DType out_dtype,
                    const std::function<V(const std::vector<V>&)>& f) {
  std::vector<int64_t> dims = broadcast_all(ins);
  Tensor out = Tensor::empty(out_dtype, dims);
  std::vector<V> args(ins.size());
  for (int64_t i = 0; i < out.numel(); ++i) {
    for (size_t k = 0; k < ins.size(); ++k) {
      int64_t s = source_index(i, dims, *ins[k]);
      if constexpr (std::is_integral_v<V>)
        args[k] = ins[k]->get_int(s);
      else
        args[k] = ins[k]->get_double(s);
    }
    set_element(out, i, f(args));
  }
  return out;
}

Tensor expect_unary(const Tensor& x, DType out, std::function<double(double)> f) {
  return expected_map<double>({&x}, out, [&](const std::vector<double>& v) { return f(v[0]); });
}
Tensor expect_binary(const Tensor& a, const Tensor& b, DType out, std::function<double(double, double)> f) {
  return expected_map<double>({&a, &b}, out, [&](const std::vector<double>& v) { return f(v[0], v[1]); });
}
Tensor expect_binary_int(const Tensor& a, const Tensor& b, DType out, std::function<int64_t(int64_t, int64_t)> f) {
  return expected_map<int64_t>({&a, &b}, out, [&](const std::vector<int64_t>& v) { return f(v[0], v[1]); });
}

// Relative tolerance for results computed in (and rounded to) dtype t.
double tolerance(DType t) {
  switch (t) {
    case DType::f32: return 2e-5;
    case DType::f64: return 1e-12;
    case DType::f16: return 3e-3;
    case DType::bf16: return 2e-2;
    default: return 0;
  }
}

void expect_close(const Tensor& actual, const Tensor& expected, const std::string& what, double tol = -1) {
  if (tol < 0) tol = tolerance(expected.dtype());
  ASSERT_EQ(dtype_name(actual.dtype()), dtype_name(expected.dtype())) << what;
  ASSERT_EQ(dims_str(actual.dims()), dims_str(expected.dims())) << what;
  int failures = 0;
  for (int64_t i = 0; i < actual.numel() && failures < 5; ++i) {
    double a = actual.get_double(i), e = expected.get_double(i);
    bool ok = (std::isnan(a) && std::isnan(e)) || a == e || std::abs(a - e) <= tol * (1 + std::abs(e));
    if (dtype_is_int(expected.dtype())) ok = actual.get_int(i) == expected.get_int(i);
    if (!ok) {
      ++failures;
      ADD_FAILURE() << what << ": element " << i << " is " << a << ", expected " << e;
    }
  }
}

std::string type_str(DType t) { return std::string(dtype_name(t)); }

// ---- Unary ------------------------------------------------------------------

struct UnaryCase {
  std::string op;
  std::function<double(double)> ref;
  double lo, hi;
  std::map<std::string, AttrValue> attrs = {};
};

TEST(ElementwiseUnary, FloatOpsMatchDoubleMathForEveryFloatDtype) {
  const double pi = 3.14159265358979323846;
  auto gelu_tanh = [pi](double x) { return 0.5 * x * (1 + std::tanh(std::sqrt(2 / pi) * (x + 0.044715 * x * x * x))); };
  const double selu_alpha = 1.67326319217681884765625, selu_gamma = 1.05070102214813232421875;
  std::vector<UnaryCase> cases = {
      {"Exp", [](double x) { return std::exp(x); }, -3, 3},
      {"Log", [](double x) { return std::log(x); }, 0.1, 5},
      {"Sqrt", [](double x) { return std::sqrt(x); }, 0.1, 5},
      {"Reciprocal", [](double x) { return 1 / x; }, 0.5, 4},
      {"Sin", [](double x) { return std::sin(x); }, -3, 3},
      {"Cos", [](double x) { return std::cos(x); }, -3, 3},
      {"Tan", [](double x) { return std::tan(x); }, -1.2, 1.2},
      {"Tanh", [](double x) { return std::tanh(x); }, -3, 3},
      {"Sigmoid", [](double x) { return 1 / (1 + std::exp(-x)); }, -8, 8},
      {"Erf", [](double x) { return std::erf(x); }, -3, 3},
      {"Softplus", [](double x) { return std::log(std::exp(x) + 1); }, -5, 5},
      {"Ceil", [](double x) { return std::ceil(x); }, -5, 5},
      {"Floor", [](double x) { return std::floor(x); }, -5, 5},
      {"Round", [](double x) { return std::nearbyint(x); }, -5, 5},
      {"Abs", [](double x) { return std::abs(x); }, -3, 3},
      {"Neg", [](double x) { return -x; }, -3, 3},
      {"Sign", [](double x) { return x > 0 ? 1.0 : -1.0; }, -3, 3},
      {"Relu", [](double x) { return x > 0 ? x : 0.0; }, -3, 3},
      // Float attributes are f32: the reference uses the same rounded values.
      {"LeakyRelu", [](double x) { return x > 0 ? x : double(0.2f) * x; }, -3, 3, {{"alpha", 0.2f}}},
      {"LeakyRelu", [](double x) { return x > 0 ? x : double(0.01f) * x; }, -3, 3},
      {"Elu", [](double x) { return x > 0 ? x : double(0.7f) * (std::exp(x) - 1); }, -3, 3, {{"alpha", 0.7f}}},
      {"Selu", [&](double x) { return x > 0 ? selu_gamma * x : selu_gamma * selu_alpha * (std::exp(x) - 1); }, -3, 3},
      {"HardSigmoid",
       [](double x) { return std::clamp(double(0.3f) * x + double(0.4f), 0.0, 1.0); },
       -4,
       4,
       {{"alpha", 0.3f}, {"beta", 0.4f}}},
      {"Gelu", [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, -4, 4},
      {"Gelu", gelu_tanh, -4, 4, {{"approximate", std::string("tanh")}}},
  };
  for (const UnaryCase& c : cases) {
    for (DType t : kFloatTypes) {
      Tensor x = random_tensor(t, {3, 4, 5}, test::uniform(c.lo, c.hi, true), rng());
      Tensor y = run1(c.op, {&x}, c.attrs);
      expect_close(y, expect_unary(x, t, c.ref), c.op + " " + type_str(t));
    }
  }
}

TEST(ElementwiseUnary, RoundIsHalfToEven) {
  Tensor x = make<float>({0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 2.3f, -2.7f}, {8});
  Tensor y = run1("Round", {&x});
  std::vector<float> want = {0, 2, 2, -0.0f, -2, -2, 2, -3};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(y.data<float>()[i], want[size_t(i)]) << i;
}

TEST(ElementwiseUnary, IntegerOpsForEveryIntegerDtype) {
  for (DType t : kSignedIntTypes) {
    Tensor x = random_tensor(t, {4, 6}, test::uniform(-100, 100), rng());
    expect_close(run1("Abs", {&x}), expect_unary(x, t, [](double v) { return std::abs(v); }), "Abs");
    expect_close(run1("Neg", {&x}), expect_unary(x, t, [](double v) { return -v; }), "Neg");
    expect_close(run1("Relu", {&x}), expect_unary(x, t, [](double v) { return std::max(v, 0.0); }), "Relu");
    expect_close(run1("Sign", {&x}), expect_unary(x, t, [](double v) { return double((v > 0) - (v < 0)); }), "Sign");
  }
  for (DType t : kUnsignedIntTypes) {
    Tensor x = random_tensor(t, {4, 6}, test::uniform(0, 200), rng());
    expect_close(run1("Abs", {&x}), expect_unary(x, t, [](double v) { return v; }), "Abs");
    expect_close(run1("Sign", {&x}), expect_unary(x, t, [](double v) { return v > 0 ? 1.0 : 0.0; }), "Sign");
  }
  // Two's complement wrap-around, as numpy: abs(-128) and -(-128) stay -128 in int8.
  Tensor m = make<int8_t>({-128, 127}, {2});
  EXPECT_EQ(run1("Abs", {&m}).data<int8_t>()[0], -128);
  EXPECT_EQ(run1("Neg", {&m}).data<int8_t>()[0], -128);
  EXPECT_EQ(run1("Neg", {&m}).data<int8_t>()[1], -127);
}

TEST(ElementwiseUnary, NotIsNaNIsInf) {
  Tensor b = random_tensor(DType::boolean, {3, 7}, test::uniform(-3, 3), rng());
  expect_close(run1("Not", {&b}), expect_unary(b, DType::boolean, [](double v) { return v == 0; }), "Not");

  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  for (DType t : kFloatTypes) {
    Tensor x = Tensor::empty(t, {6});
    std::vector<double> vals = {1.5, -inf, inf, nan, -2.0, 0.25};
    for (int64_t i = 0; i < 6; ++i) set_element(x, i, vals[size_t(i)]);
    Tensor isnan = run1("IsNaN", {&x});
    Tensor isinf = run1("IsInf", {&x});
    Tensor pos = run1("IsInf", {&x}, {{"detect_negative", int64_t(0)}});
    Tensor neg = run1("IsInf", {&x}, {{"detect_positive", int64_t(0)}});
    ASSERT_EQ(isnan.dtype(), DType::boolean);
    for (int i = 0; i < 6; ++i) {
      double v = vals[size_t(i)];
      EXPECT_EQ(isnan.data<bool>()[i], std::isnan(v)) << i;
      EXPECT_EQ(isinf.data<bool>()[i], std::isinf(v)) << i;
      EXPECT_EQ(pos.data<bool>()[i], v == inf) << i;
      EXPECT_EQ(neg.data<bool>()[i], v == -inf) << i;
    }
  }
}

// ---- Binary arithmetic ------------------------------------------------------

TEST(ElementwiseBinary, ArithmeticForEveryNumericDtypeWithBroadcast) {
  for (DType t : numeric_types()) {
    bool is_float = dtype_is_float(t);
    Tensor a = random_tensor(t, {2, 3, 4}, test::uniform(-20, 20, true), rng());
    Tensor b = random_tensor(t, {3, 1}, test::uniform(-20, 20, true), rng());
    std::string s = " " + type_str(t);
    if (is_float) {
      expect_close(run1("Add", {&a, &b}), expect_binary(a, b, t, std::plus<>()), "Add" + s);
      expect_close(run1("Sub", {&a, &b}), expect_binary(a, b, t, std::minus<>()), "Sub" + s);
      expect_close(run1("Mul", {&a, &b}), expect_binary(a, b, t, std::multiplies<>()), "Mul" + s);
      expect_close(run1("Div", {&a, &b}), expect_binary(a, b, t, std::divides<>()), "Div" + s);
    } else {  // int64 arithmetic, then wrapped to the dtype
      expect_close(run1("Add", {&a, &b}), expect_binary_int(a, b, t, std::plus<>()), "Add" + s);
      expect_close(run1("Sub", {&a, &b}), expect_binary_int(a, b, t, std::minus<>()), "Sub" + s);
      expect_close(run1("Mul", {&a, &b}), expect_binary_int(a, b, t, std::multiplies<>()), "Mul" + s);
      expect_close(run1("Div", {&a, &b}), expect_binary_int(a, b, t, std::divides<>()), "Div" + s);
    }
  }
}

TEST(ElementwiseBinary, BroadcastShapesIncludingRankZeroAndEmpty) {
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> shapes = {
      {{1, 128, 768}, {768}},
      {{768}, {1, 128, 768}},
      {{1, 12, 16, 16}, {1, 1, 16, 16}},
      {{2, 3, 1}, {1, 1, 4}},
      {{4, 1}, {1, 5}},
      {{3, 1, 5}, {3, 4, 1}},
      {{2, 5, 3}, {2, 1, 3}},
      {{}, {3, 2}},
      {{3, 2}, {}},
      {{}, {}},
      {{1, 1}, {1}},
      {{5}, {5}},
      {{0, 3}, {3}},
      {{2, 0, 3}, {1, 3}},
      {{0}, {}},
      {{2, 1, 4, 1}, {3, 1, 5}},
  };
  for (auto& [sa, sb] : shapes) {
    Tensor a = random_tensor(DType::f32, sa, test::uniform(-3, 3), rng());
    Tensor b = random_tensor(DType::f32, sb, test::uniform(-3, 3), rng());
    Tensor got = run1("Sub", {&a, &b});
    expect_close(got, expect_binary(a, b, DType::f32, std::minus<>()), "Sub " + dims_str(sa) + " - " + dims_str(sb));
  }
}

TEST(ElementwiseBinary, IntegerDivTruncatesAndModFollowsFmod) {
  Tensor a = make<int32_t>({-7, 7, -7, 7, 0, -6}, {6});
  Tensor b = make<int32_t>({2, 2, -2, -2, 3, 3}, {6});
  EXPECT_EQ(run1("Div", {&a, &b}).to_int_vector(), (std::vector<int64_t>{-3, 3, 3, -3, 0, -2}));

  Tensor c = make<int32_t>({3, 3, -3, -3, 3, 3}, {6});
  // fmod = 0: sign of the divisor (Python %); fmod = 1: sign of the dividend (C %).
  EXPECT_EQ(run1("Mod", {&a, &c}).to_int_vector(), (std::vector<int64_t>{2, 1, -1, -2, 0, 0}));
  EXPECT_EQ(run1("Mod", {&a, &c}, {{"fmod", int64_t(1)}}).to_int_vector(), (std::vector<int64_t>{-1, 1, -1, 1, 0, 0}));

  Tensor x = make<float>({-7.5f, 7.5f, -7.5f, 7.5f}, {4});
  Tensor y = make<float>({2, 2, -2, -2}, {4});
  Tensor py = run1("Mod", {&x, &y});
  Tensor cy = run1("Mod", {&x, &y}, {{"fmod", int64_t(1)}});
  std::vector<float> want_py = {0.5f, 1.5f, -1.5f, -0.5f}, want_c = {-1.5f, 1.5f, -1.5f, 1.5f};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(py.data<float>()[i], want_py[size_t(i)]) << i;
    EXPECT_EQ(cy.data<float>()[i], want_c[size_t(i)]) << i;
  }
  // INT_MIN / -1 and INT_MIN % -1 wrap instead of trapping.
  Tensor lo = make<int64_t>({std::numeric_limits<int64_t>::min()}, {1});
  Tensor m1 = make<int64_t>({-1}, {1});
  EXPECT_EQ(run1("Div", {&lo, &m1}).get_int(0), std::numeric_limits<int64_t>::min());
  EXPECT_EQ(run1("Mod", {&lo, &m1}).get_int(0), 0);
}

TEST(ElementwiseBinary, ModMatchesFloorAndTruncFormulasForEveryDtype) {
  for (DType t : numeric_types()) {
    Tensor a = random_tensor(t, {4, 5}, test::uniform(-30, 30, true), rng());
    Tensor b = random_tensor(t, {5}, test::uniform(-7, 7, true), rng());
    auto floor_mod = [](double x, double y) { return x - std::floor(x / y) * y; };
    auto trunc_mod = [](double x, double y) { return x - std::trunc(x / y) * y; };
    std::string s = " " + type_str(t);
    // Float results are compared with an absolute tolerance scaled by |b|.
    double tol = dtype_is_float(t) ? tolerance(t) * 10 : 0;
    expect_close(run1("Mod", {&a, &b}), expect_binary(a, b, t, floor_mod), "Mod fmod=0" + s, tol);
    expect_close(run1("Mod", {&a, &b}, {{"fmod", int64_t(1)}}), expect_binary(a, b, t, trunc_mod), "Mod fmod=1" + s,
                 tol);
  }
}

TEST(ElementwiseBinary, IntegerDivisionByZeroIsAnError) {
  Tensor a = make<int32_t>({1, 2}, {2});
  Tensor b = make<int32_t>({1, 0}, {2});
  EXPECT_THROW(run1("Div", {&a, &b}), Error);
  EXPECT_THROW(run1("Mod", {&a, &b}), Error);
}

TEST(ElementwiseBinary, PowKeepsBaseDtypeForEveryExponentDtype) {
  for (DType base : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    Tensor a = random_tensor(base, {2, 3}, test::uniform(0.5, 2), rng());
    Tensor ef = random_tensor(DType::f32, {3}, test::uniform(-2, 2), rng());
    expect_close(run1("Pow", {&a, &ef}), expect_binary(a, ef, base, [](double x, double y) { return std::pow(x, y); }),
                 "Pow " + type_str(base) + "^f32");
    for (DType e : {DType::i64, DType::i32, DType::u8, DType::f16, DType::f64}) {
      Tensor x = random_tensor(base, {2, 3}, test::uniform(-2, 2, true), rng());
      Tensor y = random_tensor(e, {}, test::uniform(-3, 3), rng());
      expect_close(run1("Pow", {&x, &y}), expect_binary(x, y, base, [](double p, double q) { return std::pow(p, q); }),
                   "Pow " + type_str(base) + "^" + type_str(e));
    }
  }
  for (DType base : {DType::i64, DType::i32}) {
    Tensor a = random_tensor(base, {3, 4}, test::uniform(-5, 5), rng());
    Tensor b = random_tensor(DType::i64, {4}, test::uniform(0, 6), rng());
    expect_close(run1("Pow", {&a, &b}),
                 expect_binary_int(a, b, base,
                                   [](int64_t x, int64_t y) {
                                     int64_t r = 1;
                                     for (int64_t i = 0; i < y; ++i) r *= x;
                                     return r;
                                   }),
                 "Pow " + type_str(base) + "^i64");
    Tensor f = make<float>({0.5f, 2.0f, 1.5f, 3.0f}, {4});
    Tensor positive = random_tensor(base, {3, 4}, test::uniform(1, 9), rng());
    // Integer base, float exponent: the real result truncated toward zero.
    expect_close(run1("Pow", {&positive, &f}),
                 expect_binary(positive, f, base, [](double x, double y) { return std::trunc(std::pow(x, y)); }),
                 "Pow " + type_str(base) + "^f32");
  }
  // Scalar exponents 2 and 3 (multiplication fast path), also when the scalar has rank 3.
  for (DType t : kFloatTypes) {
    Tensor x = random_tensor(t, {3}, test::uniform(-3, 3, true), rng());
    for (double e : {2.0, 3.0, -1.0}) {
      Tensor y = Tensor::empty(DType::f32, {1, 1, 1});
      set_element(y, 0, e);
      expect_close(run1("Pow", {&x, &y}), expect_binary(x, y, t, [](double p, double q) { return std::pow(p, q); }),
                   "Pow " + type_str(t) + "^" + std::to_string(e));
    }
  }
  Tensor base = make<int64_t>({2, 1, -1, -1, 5}, {5});
  Tensor neg = make<int64_t>({-1, -3, -3, -2, 0}, {5});
  EXPECT_EQ(run1("Pow", {&base, &neg}).to_int_vector(), (std::vector<int64_t>{0, 1, -1, 1, 1}));
}

// ---- Comparison and logic ---------------------------------------------------

TEST(ElementwiseBinary, ComparisonsGiveBoolForEveryDtype) {
  std::vector<std::pair<std::string, std::function<double(double, double)>>> ops = {
      {"Equal", [](double x, double y) { return x == y; }},
      {"Less", [](double x, double y) { return x < y; }},
      {"Greater", [](double x, double y) { return x > y; }},
      {"LessOrEqual", [](double x, double y) { return x <= y; }},
      {"GreaterOrEqual", [](double x, double y) { return x >= y; }},
  };
  for (DType t : numeric_types()) {
    // Small whole numbers so that ties occur.
    Tensor a = random_ints(t, {3, 4}, 0, 3);
    Tensor b = random_ints(t, {4}, 0, 3);
    for (auto& [op, f] : ops)
      expect_close(run1(op, {&a, &b}), expect_binary(a, b, DType::boolean, f), op + " " + type_str(t));
  }
  Tensor p = random_tensor(DType::boolean, {2, 5}, test::uniform(-3, 3), rng());
  Tensor q = random_tensor(DType::boolean, {5}, test::uniform(-3, 3), rng());
  expect_close(run1("Equal", {&p, &q}), expect_binary(p, q, DType::boolean, std::equal_to<>()), "Equal bool");
  expect_close(run1("And", {&p, &q}), expect_binary(p, q, DType::boolean, std::logical_and<>()), "And");
  expect_close(run1("Or", {&p, &q}), expect_binary(p, q, DType::boolean, std::logical_or<>()), "Or");
  expect_close(run1("Xor", {&p, &q}), expect_binary(p, q, DType::boolean, std::not_equal_to<>()), "Xor");
}

TEST(ElementwiseBinary, BitShiftBothDirectionsAndOutOfRangeAmounts) {
  for (DType t : {DType::u8, DType::u16, DType::u32, DType::u64, DType::i8, DType::i16, DType::i32, DType::i64}) {
    int64_t bits = int64_t(dtype_size(t) * 8);
    bool is_signed = dtype_is_signed_int(t);
    Tensor x = random_tensor(t, {3, 5}, test::uniform(is_signed ? -100 : 1, 100, true), rng());
    Tensor y = random_tensor(t, {5}, test::uniform(is_signed ? -2 : 0, double(bits + 2)), rng());
    auto left = [bits](int64_t v, int64_t s) -> int64_t {
      if (s < 0 || s >= bits) return 0;
      uint64_t mask = bits == 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
      return int64_t((uint64_t(v) * (uint64_t(1) << s)) & mask);
    };
    auto right = [bits](int64_t v, int64_t s) -> int64_t {
      if (s < 0 || s >= bits) return v < 0 ? -1 : 0;
      return int64_t(std::floor(double(v) / std::ldexp(1.0, int(s))));
    };
    std::string s = " " + type_str(t);
    expect_close(run1("BitShift", {&x, &y}, {{"direction", std::string("LEFT")}}), expect_binary_int(x, y, t, left),
                 "BitShift LEFT" + s);
    expect_close(run1("BitShift", {&x, &y}, {{"direction", std::string("RIGHT")}}), expect_binary_int(x, y, t, right),
                 "BitShift RIGHT" + s);
  }
}

// ---- Variadic -----------------------------------------------------------------

TEST(ElementwiseVariadic, MaxMinSumMeanBroadcastAllInputs) {
  auto fold = [](std::function<double(double, double)> f) {
    return [f](const std::vector<double>& v) {
      double r = v[0];
      for (size_t i = 1; i < v.size(); ++i) r = f(r, v[i]);
      return r;
    };
  };
  auto dmax = [](double x, double y) { return std::max(x, y); };
  auto dmin = [](double x, double y) { return std::min(x, y); };
  for (DType t : numeric_types()) {
    Tensor a = random_tensor(t, {2, 1, 4}, test::uniform(-50, 50), rng());
    Tensor b = random_tensor(t, {3, 1}, test::uniform(-50, 50), rng());
    Tensor c = random_tensor(t, {4}, test::uniform(-50, 50), rng());
    std::vector<const Tensor*> ins = {&a, &b, &c};
    std::string s = " " + type_str(t);
    expect_close(run1("Max", ins), expected_map<double>(ins, t, fold(dmax)), "Max" + s);
    expect_close(run1("Min", ins), expected_map<double>(ins, t, fold(dmin)), "Min" + s);
    expect_close(run1("Max", {&b}), b, "Max of one" + s);
    expect_close(run1("Min", {&a, &c}), expected_map<double>({&a, &c}, t, fold(dmin)), "Min of two" + s);
    if (!dtype_is_float(t)) continue;
    // Sum/Mean of small integers: exact in every float dtype.
    Tensor p = random_ints(t, {2, 1, 4}, -8, 8);
    Tensor q = random_ints(t, {3, 1}, -8, 8);
    Tensor r = random_ints(t, {}, -8, 8);
    std::vector<const Tensor*> pqr = {&p, &q, &r};
    auto sum = fold(std::plus<>());
    expect_close(run1("Sum", pqr), expected_map<double>(pqr, t, sum), "Sum" + s);
    expect_close(run1("Mean", pqr),
                 expected_map<double>(pqr, t, [&](const std::vector<double>& v) { return sum(v) / 3; }), "Mean" + s);
    expect_close(run1("Sum", {&q}), q, "Sum of one" + s);
  }
  Tensor n = make<float>({1, std::nanf(""), 3}, {3});
  Tensor m = make<float>({std::nanf(""), 2, 2}, {3});
  Tensor mx = run1("Max", {&n, &m});
  EXPECT_TRUE(std::isnan(mx.data<float>()[0]));
  EXPECT_TRUE(std::isnan(mx.data<float>()[1]));
  EXPECT_EQ(mx.data<float>()[2], 3);
}

// ---- Where, Clip ----------------------------------------------------------------

TEST(ElementwiseWhere, ThreeWayBroadcastForSeveralDtypes) {
  for (DType t : {DType::f32, DType::f16, DType::i64, DType::u8, DType::boolean}) {
    Tensor c = random_tensor(DType::boolean, {2, 1, 4}, test::uniform(-3, 3), rng());
    Tensor x = random_tensor(t, {3, 1}, test::uniform(-10, 10), rng());
    Tensor y = random_tensor(t, {}, test::uniform(-10, 10), rng());
    std::vector<const Tensor*> ins = {&c, &x, &y};
    expect_close(run1("Where", ins),
                 expected_map<double>(ins, t, [](const std::vector<double>& v) { return v[0] != 0 ? v[1] : v[2]; }),
                 "Where " + type_str(t));
  }
  // Attention-mask shape: cond [1,1,8,8], scores [1,2,8,8], fill scalar.
  Tensor c = random_tensor(DType::boolean, {1, 1, 8, 8}, test::uniform(-3, 3), rng());
  Tensor s = random_tensor(DType::f32, {1, 2, 8, 8}, test::uniform(-3, 3), rng());
  Tensor fill = make<float>({-1e9f}, {});
  std::vector<const Tensor*> ins = {&c, &s, &fill};
  expect_close(
      run1("Where", ins),
      expected_map<double>(ins, DType::f32, [](const std::vector<double>& v) { return v[0] != 0 ? v[1] : v[2]; }),
      "Where mask");
}

TEST(ElementwiseClip, BoundsMayBeOmitted) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i8, DType::i64, DType::u16}) {
    Tensor x = random_tensor(t, {4, 5}, test::uniform(0, 40), rng());
    Tensor lo = random_tensor(t, {}, test::uniform(5, 12), rng());
    Tensor hi = random_tensor(t, {1}, test::uniform(25, 33), rng());
    double l = lo.get_double(0), h = hi.get_double(0);
    std::string s = " " + type_str(t);
    expect_close(run1("Clip", {&x, &lo, &hi}),
                 expect_unary(x, t, [&](double v) { return std::min(std::max(v, l), h); }), "Clip" + s);
    expect_close(run1("Clip", {&x, nullptr, &hi}), expect_unary(x, t, [&](double v) { return std::min(v, h); }),
                 "Clip no min" + s);
    expect_close(run1("Clip", {&x, &lo}), expect_unary(x, t, [&](double v) { return std::max(v, l); }),
                 "Clip no max" + s);
    expect_close(run1("Clip", {&x}), x, "Clip no bounds" + s);
    // min > max: everything becomes max.
    expect_close(run1("Clip", {&x, &hi, &lo}), expect_unary(x, t, [&](double) { return l; }), "Clip min>max" + s);
  }
  const float inf = std::numeric_limits<float>::infinity();
  Tensor x = make<float>({-inf, 1, inf}, {3});
  Tensor hi = make<float>({2}, {});
  Tensor y = run1("Clip", {&x, nullptr, &hi});
  EXPECT_EQ(y.data<float>()[0], -inf);
  EXPECT_EQ(y.data<float>()[2], 2);
}

// ---- Cast, CastLike, Identity, Dropout --------------------------------------------

// The value Cast must produce from v (already exactly representable in `from`).
double cast_reference(double v, DType to) {
  if (to == DType::boolean) return v != 0;
  if (dtype_is_float(to)) return v;  // set_element rounds it to the target type
  return std::trunc(v);              // then set_element wraps integers
}

TEST(ElementwiseCast, EveryPairOfDtypes) {
  for (DType from : kAllTypes) {
    for (DType to : kAllTypes) {
      // Float sources stay within every target's range (negative only for signed targets).
      double lo = dtype_is_unsigned_int(to) && dtype_is_float(from) ? 0.5 : -100;
      Tensor x = random_tensor(from, {3, 4}, test::uniform(lo, 100), rng());
      Tensor y = run1("Cast", {&x}, {{"to", int64_t(dtype_to_onnx(to))}});
      Tensor want = Tensor::empty(to, {3, 4});
      for (int64_t i = 0; i < x.numel(); ++i) {
        double r = cast_reference(x.get_double(i), to);
        if (dtype_is_int(to) && !dtype_is_float(from))
          set_element(want, i, x.get_int(i));
        else
          set_element(want, i, r);
      }
      expect_close(y, want, "Cast " + type_str(from) + " -> " + type_str(to), 0);
    }
  }
}

TEST(ElementwiseCast, RoundingTruncationAndSpecialValues) {
  Tensor x = make<float>({-2.7f, 2.7f, -0.5f, 0.0f, std::nanf(""), 65520.0f, 0.1f}, {7});
  Tensor i = run1("Cast", {&x}, {{"to", int64_t(7)}});  // INT64
  EXPECT_EQ(i.get_int(0), -2);
  EXPECT_EQ(i.get_int(1), 2);
  EXPECT_EQ(i.get_int(2), 0);
  Tensor b = run1("Cast", {&x}, {{"to", int64_t(9)}});  // BOOL
  EXPECT_EQ(b.to_int_vector(), (std::vector<int64_t>{1, 1, 1, 0, 1, 1, 1}));
  Tensor h = run1("Cast", {&x}, {{"to", int64_t(10)}});  // FLOAT16
  EXPECT_EQ(h.data<Half>()[5].bits, 0x7c00);             // overflows to inf
  EXPECT_EQ(h.data<Half>()[6].bits, 0x2e66);
  // f64 -> f16 rounds once: 1 + 2^-11 + 2^-40 is just above the midpoint
  // between 1 and 1 + 2^-10 (rounding through f32 first would give 1).
  Tensor d = make<double>({1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)}, {1});
  EXPECT_EQ(run1("Cast", {&d}, {{"to", int64_t(10)}}).data<Half>()[0].bits, 0x3c01);
  EXPECT_EQ(run1("Cast", {&d}, {{"to", int64_t(16)}}).data<BFloat16>()[0].bits, 0x3f80);
  // bf16 round trip of f32 is the shared rounding helper.
  Tensor bf = run1("Cast", {&x}, {{"to", int64_t(16)}});
  EXPECT_EQ(bf.data<BFloat16>()[6].bits, float_to_bf16(0.1f));
}

TEST(ElementwiseCast, UnsupportedTargetFailsNamingTheType) {
  Tensor x = make<float>({1, 2}, {2});
  try {
    run1("Cast", {&x}, {{"to", int64_t(17)}});
    FAIL() << "expected cb::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("FLOAT8E4M3FN"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run1("Cast", {&x}), Error);  // 'to' is required
}

TEST(ElementwiseCast, CastLikeAndIdentity) {
  Tensor x = random_tensor(DType::f32, {2, 3}, test::uniform(-50, 50), rng());
  Tensor like = make<int32_t>({0}, {1});
  Tensor y = run1("CastLike", {&x, &like});
  ASSERT_EQ(y.dtype(), DType::i32);
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(y.get_int(i), int64_t(std::trunc(x.get_double(i))));
  Tensor z = run1("CastLike", {&x, &x});
  EXPECT_TRUE(z.bitwise_equal(x));
  Tensor n = random_tensor(DType::i64, {4, 1}, test::uniform(-9, 9), rng());
  EXPECT_TRUE(run1("Identity", {&n}).bitwise_equal(n));
}

TEST(ElementwiseDropout, InferenceIsIdentityWithAllTrueMask) {
  Tensor x = random_tensor(DType::f32, {3, 4, 5}, test::uniform(-3, 3), rng());
  Tensor ratio = make<float>({0.3f}, {});
  Tensor off = make<bool>({false}, {});
  for (auto inputs : std::vector<std::vector<const Tensor*>>{{&x}, {&x, &ratio}, {&x, &ratio, &off}}) {
    auto outs = run_op("Dropout", inputs, {}, 2);
    EXPECT_TRUE(outs[0].bitwise_equal(x));
    ASSERT_EQ(outs[1].dtype(), DType::boolean);
    ASSERT_EQ(outs[1].dims(), x.dims());
    for (int64_t i = 0; i < x.numel(); ++i) EXPECT_TRUE(outs[1].data<bool>()[i]);
  }
  Tensor on = make<bool>({true}, {});
  Tensor zero = make<float>({0.0f}, {});
  EXPECT_TRUE(run_op("Dropout", {&x, &zero, &on}, {}, 2)[0].bitwise_equal(x));
}

TEST(ElementwiseDropout, TrainingDropsAndScalesDeterministically) {
  Tensor x = random_tensor(DType::f32, {100, 100}, test::uniform(0.5, 3), rng());
  Tensor ratio = make<float>({0.25f}, {});
  Tensor on = make<bool>({true}, {});
  auto outs = run_op("Dropout", {&x, &ratio, &on}, {{"seed", int64_t(7)}}, 2);
  auto again = run_op("Dropout", {&x, &ratio, &on}, {{"seed", int64_t(7)}}, 2);
  auto other = run_op("Dropout", {&x, &ratio, &on}, {{"seed", int64_t(8)}}, 2);
  EXPECT_TRUE(outs[0].bitwise_equal(again[0]));
  EXPECT_TRUE(outs[1].bitwise_equal(again[1]));
  EXPECT_FALSE(outs[1].bitwise_equal(other[1]));
  int64_t kept = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    bool keep = outs[1].data<bool>()[i];
    kept += keep;
    float want = keep ? x.data<float>()[i] / 0.75f : 0.0f;
    EXPECT_NEAR(outs[0].data<float>()[i], want, 1e-5f * std::abs(want)) << i;
  }
  EXPECT_NEAR(double(kept) / double(x.numel()), 0.75, 0.03);  // seeded: not flaky
  Tensor one = make<float>({1.0f}, {});
  EXPECT_THROW(run_op("Dropout", {&x, &one, &on}, {}, 2), Error);
}

// ---- Shape inference ----------------------------------------------------------

Dim sym(const char* s) { return Dim::sym(s); }
Shape batch_seq(int64_t last) { return Shape({sym("batch"), sym("seq"), Dim::fixed(last)}); }

struct SymbolicGraph {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, batch_seq(8)});
  Value* node(const std::string& op, std::vector<Value*> ins, std::map<std::string, AttrValue> attrs = {},
              int num_outputs = 1) {
    std::vector<Value*> outs;
    for (int i = 0; i < num_outputs; ++i) outs.push_back(g.add_value(op + "_out"));
    g.add_node(op, std::move(ins), outs, std::move(attrs));
    return outs[0];
  }
};

void expect_type(const Value* v, DType t, const Shape& s) {
  EXPECT_EQ(v->type.str(), TensorType({t, s}).str()) << v->name;
}

TEST(ElementwiseInference, UnarySymbolic) {
  SymbolicGraph sg;
  Value* tanh = sg.node("Tanh", {sg.x});
  Value* isnan = sg.node("IsNaN", {tanh});
  Value* gelu = sg.node("Gelu", {tanh}, {{"approximate", std::string("tanh")}});
  infer_types(sg.g);
  expect_type(tanh, DType::f32, batch_seq(8));
  expect_type(isnan, DType::boolean, batch_seq(8));
  expect_type(gelu, DType::f32, batch_seq(8));
}

TEST(ElementwiseInference, BinarySymbolic) {
  SymbolicGraph sg;
  Value* bias = sg.g.add_constant("bias", random_tensor(DType::f32, {8}, test::uniform(-3, 3), rng()));
  Value* y = sg.g.add_input("y", {DType::f32, Shape({sym("seq"), Dim::fixed(1)})});
  Value* z = sg.g.add_input("z", {DType::f32, Shape({sym("batch"), Dim::fixed(1), Dim::fixed(8)})});
  Value* three = sg.g.add_constant("three", Tensor::scalar<int64_t>(3));
  Value* add = sg.node("Add", {sg.x, bias});
  Value* mul = sg.node("Mul", {add, y});
  Value* sub = sg.node("Sub", {z, mul});
  Value* less = sg.node("Less", {sub, bias});
  Value* pow = sg.node("Pow", {sg.x, three});
  infer_types(sg.g);
  expect_type(add, DType::f32, batch_seq(8));
  expect_type(mul, DType::f32, batch_seq(8));
  expect_type(sub, DType::f32, batch_seq(8));
  expect_type(less, DType::boolean, batch_seq(8));
  expect_type(pow, DType::f32, batch_seq(8));
}

TEST(ElementwiseInference, VariadicWhereClipSymbolic) {
  SymbolicGraph sg;
  Value* row = sg.g.add_constant("row", random_tensor(DType::f32, {1, 8}, test::uniform(-3, 3), rng()));
  Value* col = sg.g.add_input("col", {DType::f32, Shape({sym("seq"), Dim::fixed(1)})});
  Value* cond = sg.g.add_input("cond", {DType::boolean, Shape({Dim::fixed(1), sym("seq"), Dim::fixed(1)})});
  Value* fill = sg.g.add_constant("fill", Tensor::scalar<float>(-1e9f));
  Value* max = sg.node("Max", {sg.x, row, col});
  Value* mean = sg.node("Mean", {row, col});
  Value* where = sg.node("Where", {cond, sg.x, fill});
  Value* clip = sg.node("Clip", {sg.x, nullptr, fill});
  infer_types(sg.g);
  expect_type(max, DType::f32, batch_seq(8));
  expect_type(mean, DType::f32, Shape({sym("seq"), Dim::fixed(8)}));
  expect_type(where, DType::f32, batch_seq(8));
  expect_type(clip, DType::f32, batch_seq(8));
}

TEST(ElementwiseInference, CastIdentityDropoutSymbolic) {
  SymbolicGraph sg;
  Value* like = sg.g.add_constant("like", Tensor::scalar<int64_t>(0));
  Value* half = sg.node("Cast", {sg.x}, {{"to", int64_t(10)}});
  Value* ints = sg.node("CastLike", {sg.x, like});
  Value* same = sg.node("Identity", {half});
  Value* drop = sg.node("Dropout", {sg.x}, {}, 2);
  infer_types(sg.g);
  expect_type(half, DType::f16, batch_seq(8));
  expect_type(ints, DType::i64, batch_seq(8));
  expect_type(same, DType::f16, batch_seq(8));
  expect_type(drop, DType::f32, batch_seq(8));
  expect_type(sg.g.nodes().back()->outputs[1], DType::boolean, batch_seq(8));
}

// Runs infer_types on `op` over inputs of types a and b (b undefined: a unary
// op) and returns the error message ("" if none).
std::string inference_error(const std::string& op, TensorType a, TensorType b,
                            std::map<std::string, AttrValue> attrs = {}) {
  Graph g;
  std::vector<Value*> ins = {g.add_input("a", a)};
  if (b.dtype != DType::undefined) ins.push_back(g.add_input("b", b));
  g.add_node(op, ins, {g.add_value("c")}, std::move(attrs), "the_node");
  try {
    infer_types(g);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ElementwiseInference, ErrorsNameTheProblem) {
  std::string msg = inference_error("Add", {DType::f32, Shape::of({2, 3})}, {DType::i64, Shape::of({2, 3})});
  EXPECT_NE(msg.find("f32"), std::string::npos) << msg;
  EXPECT_NE(msg.find("i64"), std::string::npos) << msg;
  EXPECT_NE(msg.find("the_node"), std::string::npos) << msg;

  msg = inference_error("Mul", {DType::f32, Shape::of({2, 3})}, {DType::f32, Shape::of({4})});
  EXPECT_NE(msg.find("[2,3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  msg = inference_error("Add", {DType::f32, batch_seq(8)}, {DType::f32, Shape::of({5})});
  EXPECT_NE(msg.find("broadcast"), std::string::npos) << msg;

  EXPECT_NE(inference_error("Exp", {DType::i32, Shape::of({2})}, {}).find("i32"), std::string::npos);
  EXPECT_NE(inference_error("And", {DType::f32, Shape::of({2})}, {DType::boolean, Shape::of({2})}), "");
  EXPECT_NE(inference_error("Sum", {DType::i32, Shape::of({2})}, {DType::i32, Shape::of({2})}), "");
  EXPECT_NE(inference_error("Neg", {DType::u8, Shape::of({2})}, {}), "");
  EXPECT_NE(inference_error("BitShift", {DType::u8, Shape::of({2})}, {DType::u8, Shape::of({2})}), "");
  EXPECT_EQ(inference_error("BitShift", {DType::u8, Shape::of({2})}, {DType::u8, Shape::of({2})},
                            {{"direction", std::string("LEFT")}}),
            "");
  EXPECT_NE(inference_error("Clip", {DType::f32, Shape::of({2})}, {DType::f32, Shape::of({2})}), "");
  EXPECT_NE(inference_error("Pow", {DType::u8, Shape::of({2})}, {DType::f32, Shape::of({2})}), "");
  EXPECT_NE(inference_error("Mod", {DType::f32, Shape::of({2})}, {DType::f32, Shape::of({2})}, {{"fmod", int64_t(2)}}),
            "");
  EXPECT_NE(inference_error("Gelu", {DType::f32, Shape::of({2})}, {}, {{"approximate", std::string("fast")}}), "");

  Graph g;
  Value* c = g.add_input("c", {DType::f32, Shape::of({2})});
  Value* x = g.add_input("x", {DType::f32, Shape::of({2})});
  g.add_node("Where", {c, x, x}, {g.add_value("w")});
  EXPECT_THROW(infer_types(g), Error);
}

TEST(ElementwiseInference, SymbolicMismatchFailsAtRunTime) {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape({sym("n")})});
  Value* y = g->add_input("y", {DType::f32, Shape::of({3})});
  Value* z = g->add_value("z");
  g->add_node("Add", {x, y}, {z});
  g->outputs = {z};
  infer_types(*g);
  EXPECT_EQ(z->type.shape.str(), "[3]");
  auto backend = make_reference_backend();
  auto exe = Executable::compile(g, *backend);
  Tensor ok = random_tensor(DType::f32, {3}, test::uniform(-3, 3), rng()),
         bad = random_tensor(DType::f32, {4}, test::uniform(-3, 3), rng());
  EXPECT_EQ(exe->run({{"x", ok}, {"y", ok}}).at(0).numel(), 3);
  EXPECT_THROW(exe->run({{"x", bad}, {"y", ok}}), Error);
}

}  // namespace
