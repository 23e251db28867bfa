// Reference kernels for the elementwise ops (see ir/ops/elementwise.cpp for
// their schemas). Each op is a small functor over the arithmetic type
// (compute_t); a handful of templated drivers apply it per dtype, with numpy
// broadcasting, through the loops in elementwise_util.h. Integer arithmetic
// wraps (computed in unsigned types, so there is no undefined behaviour).
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <type_traits>

#include "backends/reference/elementwise_util.h"
#include "backends/reference/reference_backend.h"

namespace cb {

namespace {

using PowBaseTypes = TypeList<float, double, Half, BFloat16, int32_t, int64_t>;

// Ops with attributes take the node in their constructor; the rest are empty.
template <typename Op>
Op make_op(const Node& node) {
  if constexpr (std::is_constructible_v<Op, const Node&>)
    return Op(node);
  else
    return Op{};
}

// a `f` b evaluated in an unsigned type at least as wide as int, then wrapped
// back to T (two's complement), so integer overflow is defined.
template <typename T, typename F>
T wrapping(T a, T b, F f) {
  using W = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, std::make_unsigned_t<T>>;
  return static_cast<T>(f(W(a), W(b)));
}
template <typename T>
T wrapping_neg(T x) {
  return wrapping(T(0), x, std::minus<>());
}

// ---- Unary ops ------------------------------------------------------------

struct AbsOp {
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>)
      return x;
    else if constexpr (std::is_integral_v<T>)
      return x < 0 ? wrapping_neg(x) : x;
    else
      return std::abs(x);
  }
};
struct NegOp {
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping_neg(x);
    else
      return -x;
  }
};
struct SignOp {  // NaN and signed zeros pass through, as numpy.sign
  template <typename T>
  T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>)
      return x > 0 ? T(1) : T(0);
    else
      return x > 0 ? T(1) : x < 0 ? T(-1) : x;
  }
};
struct ReluOp {  // NaN passes through
  template <typename T>
  T operator()(T x) const {
    return x < T(0) ? T(0) : x;
  }
};

#define CB_FLOAT_UNARY(NAME, EXPR) \
  struct NAME {                    \
    template <typename T>          \
    T operator()(T x) const {      \
      return EXPR;                 \
    }                              \
  };
CB_FLOAT_UNARY(ExpOp, std::exp(x))
CB_FLOAT_UNARY(LogOp, std::log(x))
CB_FLOAT_UNARY(SqrtOp, std::sqrt(x))
CB_FLOAT_UNARY(ReciprocalOp, T(1) / x)
CB_FLOAT_UNARY(SinOp, std::sin(x))
CB_FLOAT_UNARY(CosOp, std::cos(x))
CB_FLOAT_UNARY(TanOp, std::tan(x))
CB_FLOAT_UNARY(TanhOp, std::tanh(x))
CB_FLOAT_UNARY(ErfOp, std::erf(x))
CB_FLOAT_UNARY(CeilOp, std::ceil(x))
CB_FLOAT_UNARY(FloorOp, std::floor(x))
CB_FLOAT_UNARY(RoundOp, std::nearbyint(x))  // default rounding mode: half to even
CB_FLOAT_UNARY(SigmoidOp, x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x)))
CB_FLOAT_UNARY(SoftplusOp, x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)))
#undef CB_FLOAT_UNARY

struct LeakyReluOp {
  float alpha;
  explicit LeakyReluOp(const Node& n) : alpha(n.attr_float("alpha", 0.01f)) {}
  template <typename T>
  T operator()(T x) const {
    return x < T(0) ? T(alpha) * x : x;
  }
};
struct EluOp {
  float alpha;
  explicit EluOp(const Node& n) : alpha(n.attr_float("alpha", 1.0f)) {}
  template <typename T>
  T operator()(T x) const {
    return x < T(0) ? T(alpha) * std::expm1(x) : x;
  }
};
struct SeluOp {
  float alpha, gamma;
  explicit SeluOp(const Node& n)
      : alpha(n.attr_float("alpha", 1.67326319217681884765625f)),
        gamma(n.attr_float("gamma", 1.05070102214813232421875f)) {}
  template <typename T>
  T operator()(T x) const {
    return x > T(0) ? T(gamma) * x : T(gamma) * (T(alpha) * std::exp(x) - T(alpha));
  }
};
struct HardSigmoidOp {
  float alpha, beta;
  explicit HardSigmoidOp(const Node& n) : alpha(n.attr_float("alpha", 0.2f)), beta(n.attr_float("beta", 0.5f)) {}
  template <typename T>
  T operator()(T x) const {
    T y = T(alpha) * x + T(beta);
    return y < T(0) ? T(0) : y > T(1) ? T(1) : y;
  }
};
struct GeluOp {
  bool tanh_approximation;
  explicit GeluOp(const Node& n) : tanh_approximation(n.attr_string("approximate", "none") == "tanh") {}
  template <typename T>
  T operator()(T x) const {
    if (tanh_approximation) {
      const T sqrt_2_over_pi = T(0.7978845608028654);
      return T(0.5) * x * (T(1) + std::tanh(sqrt_2_over_pi * (x + T(0.044715) * x * x * x)));
    }
    return T(0.5) * x * (T(1) + std::erf(x * T(0.7071067811865476)));
  }
};

struct NotOp {
  bool operator()(bool x) const { return !x; }
};
struct IsNaNOp {
  template <typename T>
  bool operator()(T x) const {
    return std::isnan(x);
  }
};
struct IsInfOp {
  bool positive, negative;
  explicit IsInfOp(const Node& n)
      : positive(n.attr_int("detect_positive", 1) != 0), negative(n.attr_int("detect_negative", 1) != 0) {}
  template <typename T>
  bool operator()(T x) const {
    return std::isinf(x) && (x > 0 ? positive : negative);
  }
};

// ---- Binary ops -----------------------------------------------------------

struct AddOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping(a, b, std::plus<>());
    else
      return a + b;
  }
};
struct SubOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping(a, b, std::minus<>());
    else
      return a - b;
  }
};
struct MulOp {
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>)
      return wrapping(a, b, std::multiplies<>());
    else
      return a * b;
  }
};
// Integer division truncates toward zero (C semantics, as ONNX Runtime does).
struct DivOp {
  static constexpr bool kIntegerDivisorMustBeNonzero = true;
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_signed_v<T> && std::is_integral_v<T>)
      return b == T(-1) ? wrapping_neg(a) : T(a / b);
    else
      return a / b;
  }
};
// fmod = 0: result has the sign of the divisor (Python / numpy.mod);
// fmod = 1: result has the sign of the dividend (C fmod / %).
struct ModOp {
  static constexpr bool kIntegerDivisorMustBeNonzero = true;
  bool c_style;
  explicit ModOp(const Node& n) : c_style(n.attr_int("fmod", 0) != 0) {}
  template <typename T>
  T operator()(T a, T b) const {
    if constexpr (std::is_floating_point_v<T>) {
      T r = std::fmod(a, b);
      if (c_style) return r;
      if (r == T(0)) return std::copysign(T(0), b);
      return (r < T(0)) != (b < T(0)) ? r + b : r;
    } else if constexpr (std::is_signed_v<T>) {
      if (b == T(-1)) return T(0);
      T r = T(a % b);
      return !c_style && r != 0 && ((r < 0) != (b < 0)) ? T(r + b) : r;
    } else {
      return T(a % b);
    }
  }
};

// Integer power by squaring (wrapping); negative exponents give what the
// truncated real result would (0 unless the base is 1 or -1).
template <typename T, typename E>
T int_pow(T base, E exp) {
  if constexpr (std::is_signed_v<E>) {
    if (exp < 0) return base == T(1) ? T(1) : base == T(-1) ? (exp % 2 ? T(-1) : T(1)) : T(0);
  }
  T result = 1;
  for (auto e = exp; e > 0; e /= 2) {
    if (e % 2) result = wrapping(result, base, std::multiplies<>());
    base = wrapping(base, base, std::multiplies<>());
  }
  return result;
}
// The base's type is the output type; the exponent may be of any numeric type.
struct PowOp {
  template <typename X, typename Y>
  X operator()(X a, Y b) const {
    if constexpr (std::is_floating_point_v<X>)
      return X(std::pow(a, static_cast<X>(b)));
    else if constexpr (std::is_floating_point_v<Y>)
      return float_to_int<X>(std::pow(double(a), double(b)));
    else
      return int_pow(a, b);
  }
};

// Shifts by a negative amount or by >= the bit width give 0 (or -1 for a
// right shift of a negative value).
struct BitShiftOp {
  bool left;
  explicit BitShiftOp(const Node& n) : left(n.attr_string("direction", "") == "LEFT") {}
  template <typename T>
  T operator()(T x, T y) const {
    constexpr uint64_t bits = sizeof(T) * 8;
    bool negative_x = false;
    if constexpr (std::is_signed_v<T>) {
      negative_x = x < 0;
      if (y < 0) return !left && negative_x ? T(-1) : T(0);
    }
    if (uint64_t(y) >= bits) return !left && negative_x ? T(-1) : T(0);
    if (left) return wrapping(x, y, [](auto u, auto s) { return u << s; });
    return T(x >> y);  // arithmetic for signed T
  }
};

// NaN-propagating max/min, like numpy.maximum / numpy.minimum.
struct MaxOp {
  template <typename T>
  T operator()(T a, T b) const {
    return a > b || a != a ? a : b;
  }
};
struct MinOp {
  template <typename T>
  T operator()(T a, T b) const {
    return a < b || a != a ? a : b;
  }
};

#define CB_BOOL_BINARY(NAME, EXPR)    \
  struct NAME {                       \
    template <typename T>             \
    bool operator()(T a, T b) const { \
      return EXPR;                    \
    }                                 \
  };
CB_BOOL_BINARY(EqualOp, a == b)
CB_BOOL_BINARY(LessOp, a < b)
CB_BOOL_BINARY(GreaterOp, a > b)
CB_BOOL_BINARY(LessOrEqualOp, a <= b)
CB_BOOL_BINARY(GreaterOrEqualOp, a >= b)
CB_BOOL_BINARY(AndOp, a&& b)
CB_BOOL_BINARY(OrOp, a || b)
CB_BOOL_BINARY(XorOp, a != b)
#undef CB_BOOL_BINARY

// ---- Kernel drivers -------------------------------------------------------

template <typename Op, typename Types>
void unary_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Op op = make_op<Op>(ctx.node);
  dispatch(x.dtype(), Types{}, ctx.node, [&](auto tag) {
    using T = decltype(tag);
    using Out = std::conditional_t<std::is_same_v<decltype(op(load(T{}))), bool>, bool, T>;
    unary_map<T, Out>(x, ctx.out(0), op);
  });
}

template <typename T>
void check_nonzero_divisors(const Node& node, const Tensor& b) {
  const T* d = b.data<T>();
  for (int64_t i = 0; i < b.numel(); ++i)
    CB_CHECK(d[i] != T(0), node.describe() << ": integer division by zero (divisor element " << i << " of "
                                           << dtype_name(b.dtype()) << dims_str(b.dims()) << ")");
}

// Same-dtype binary ops; the output is T, or bool for comparisons.
template <typename Op, typename Types>
void binary_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(1);
  Op op = make_op<Op>(ctx.node);
  dispatch(a.dtype(), Types{}, ctx.node, [&](auto tag) {
    using T = decltype(tag);
    using Out = std::conditional_t<std::is_same_v<decltype(op(load(T{}), load(T{}))), bool>, bool, T>;
    if constexpr (requires { Op::kIntegerDivisorMustBeNonzero; } && std::is_integral_v<T>)
      check_nonzero_divisors<T>(ctx.node, b);
    broadcast_map<Out, T, T>(ctx.out(0), {&a, &b}, op);
  });
}

void pow_kernel(KernelContext& ctx) {
  const Tensor& a = ctx.in(0);
  const Tensor& b = ctx.in(1);
  Tensor& out = ctx.out(0);
  dispatch(a.dtype(), PowBaseTypes{}, ctx.node, [&](auto base_tag) {
    using A = decltype(base_tag);
    using C = compute_t<A>;
    if constexpr (std::is_floating_point_v<C>) {
      // x^2 and x^3 (layer norms, tanh-GELU) multiply, as ONNX Runtime does.
      double e = b.numel() == 1 ? b.get_double(0) : 0;
      if (b.numel() == 1 && (e == 2 || e == 3)) {
        if (e == 2)
          unary_map<A, A>(a, out, [](C x) { return x * x; });
        else
          unary_map<A, A>(a, out, [](C x) { return x * x * x; });
        return;
      }
    }
    dispatch(b.dtype(), NumericTypes{}, ctx.node, [&](auto exp_tag) {
      broadcast_map<A, A, decltype(exp_tag)>(out, {&a, &b}, PowOp{});
    });
  });
}

// Max/Min/Sum/Mean: fold the inputs pairwise into the output.
template <typename Op, typename Types, bool kMean = false>
void variadic_kernel(KernelContext& ctx) {
  Tensor& out = ctx.out(0);
  size_t n = ctx.inputs.size();
  dispatch(out.dtype(), Types{}, ctx.node, [&](auto tag) {
    using T = decltype(tag);
    if (n == 1) {
      broadcast_map<T, T>(out, {&ctx.in(0)}, [](auto v) { return v; });
    } else {
      broadcast_map<T, T, T>(out, {&ctx.in(0), &ctx.in(1)}, Op{});
      for (size_t i = 2; i < n; ++i) broadcast_map<T, T, T>(out, {&out, &ctx.in(i)}, Op{});
    }
    if constexpr (kMean) {
      using C = compute_t<T>;
      C count = C(n);
      unary_map<T, T>(out, out, [count](C v) { return v / count; });
    }
  });
}

void where_kernel(KernelContext& ctx) {
  const Tensor& cond = ctx.in(0);
  dispatch(ctx.out(0).dtype(), AllTypes{}, ctx.node, [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    broadcast_map<T, bool, T, T>(ctx.out(0), {&cond, &ctx.in(1), &ctx.in(2)},
                                 [](uint8_t c, C x, C y) { return c ? x : y; });
  });
}

// Omitted bounds do not clamp (for floats this keeps infinities).
void clip_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  auto bound = [&](size_t i) { return i < ctx.inputs.size() ? ctx.inputs[i] : nullptr; };
  dispatch(x.dtype(), NumericTypes{}, ctx.node, [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    using Limits = std::numeric_limits<C>;
    C lo = Limits::has_infinity ? -Limits::infinity() : Limits::lowest();
    C hi = Limits::has_infinity ? Limits::infinity() : Limits::max();
    if (const Tensor* t = bound(1)) lo = load(t->data<T>()[0]);
    if (const Tensor* t = bound(2)) hi = load(t->data<T>()[0]);
    unary_map<T, T>(x, ctx.out(0), [lo, hi](C v) {  // min(max(v, lo), hi); NaN passes
      v = v < lo ? lo : v;
      return hi < v ? hi : v;
    });
  });
}

// out = x converted to out's dtype; `out` is already allocated.
void convert_tensor(const Node& node, const Tensor& x, Tensor& out) {
  dispatch(x.dtype(), AllTypes{}, node, [&](auto from_tag) {
    dispatch(out.dtype(), AllTypes{}, node, [&](auto to_tag) {
      using From = decltype(from_tag);
      using To = decltype(to_tag);
      const From* src = x.data<From>();
      To* dst = out.data<To>();
      for (int64_t i = 0, n = x.numel(); i < n; ++i) dst[i] = convert<To>(src[i]);
    });
  });
}

// Cast/CastLike: a cast to the same dtype shares the input's buffer.
void cast_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  Tensor& out = ctx.out(0);
  if (x.dtype() == out.dtype())
    out = x;
  else
    convert_tensor(ctx.node, x, out);
}

void identity_kernel(KernelContext& ctx) { ctx.out(0) = ctx.in(0); }

// Inference (no training_mode, or ratio 0): output = data, mask all true.
// Training: each element is kept with probability 1 - ratio and scaled by
// 1 / (1 - ratio); the mask comes from a 64-bit Mersenne Twister seeded by the
// `seed` attribute (0 when absent), so runs are reproducible.
void dropout_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  auto opt_in = [&](size_t i) { return i < ctx.inputs.size() ? ctx.inputs[i] : nullptr; };
  double ratio = opt_in(1) ? opt_in(1)->get_double(0) : 0.5;
  bool training = opt_in(2) && opt_in(2)->get_int(0) != 0;
  Tensor* mask = ctx.outputs.size() > 1 ? ctx.outputs[1] : nullptr;
  if (!training || ratio == 0) {
    ctx.out(0) = x;
    if (mask) std::memset(mask->raw(), 1, size_t(mask->numel()));
    return;
  }
  CB_CHECK(ratio > 0 && ratio < 1, ctx.node.describe() << ": ratio must be in [0, 1), got " << ratio);
  std::mt19937_64 rng(uint64_t(ctx.node.attr_int("seed", 0)));
  double scale = 1.0 / (1.0 - ratio);
  dispatch(x.dtype(), FloatTypes{}, ctx.node, [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* in = x.data<T>();
    T* out = ctx.out(0).data<T>();
    bool* keep_out = mask ? mask->data<bool>() : nullptr;
    for (int64_t i = 0, n = x.numel(); i < n; ++i) {
      double uniform = double(rng() >> 11) * 0x1.0p-53;  // [0, 1)
      bool keep = uniform >= ratio;
      out[i] = store<T>(keep ? C(load(in[i]) * C(scale)) : C(0));
      if (keep_out) keep_out[i] = keep;
    }
  });
}

}  // namespace

void register_reference_elementwise(KernelTable& t) {
  t.add("Abs", unary_kernel<AbsOp, NumericTypes>);
  t.add("Neg", unary_kernel<NegOp, SignedNumericTypes>);
  t.add("Sign", unary_kernel<SignOp, NumericTypes>);
  t.add("Relu", unary_kernel<ReluOp, SignedNumericTypes>);
  t.add("Exp", unary_kernel<ExpOp, FloatTypes>);
  t.add("Log", unary_kernel<LogOp, FloatTypes>);
  t.add("Sqrt", unary_kernel<SqrtOp, FloatTypes>);
  t.add("Reciprocal", unary_kernel<ReciprocalOp, FloatTypes>);
  t.add("Sin", unary_kernel<SinOp, FloatTypes>);
  t.add("Cos", unary_kernel<CosOp, FloatTypes>);
  t.add("Tan", unary_kernel<TanOp, FloatTypes>);
  t.add("Tanh", unary_kernel<TanhOp, FloatTypes>);
  t.add("Sigmoid", unary_kernel<SigmoidOp, FloatTypes>);
  t.add("Erf", unary_kernel<ErfOp, FloatTypes>);
  t.add("Ceil", unary_kernel<CeilOp, FloatTypes>);
  t.add("Floor", unary_kernel<FloorOp, FloatTypes>);
  t.add("Round", unary_kernel<RoundOp, FloatTypes>);
  t.add("Softplus", unary_kernel<SoftplusOp, FloatTypes>);
  t.add("LeakyRelu", unary_kernel<LeakyReluOp, FloatTypes>);
  t.add("Elu", unary_kernel<EluOp, FloatTypes>);
  t.add("Selu", unary_kernel<SeluOp, FloatTypes>);
  t.add("HardSigmoid", unary_kernel<HardSigmoidOp, FloatTypes>);
  t.add("Gelu", unary_kernel<GeluOp, FloatTypes>);
  t.add("Not", unary_kernel<NotOp, BoolTypes>);
  t.add("IsNaN", unary_kernel<IsNaNOp, FloatTypes>);
  t.add("IsInf", unary_kernel<IsInfOp, FloatTypes>);

  t.add("Add", binary_kernel<AddOp, NumericTypes>);
  t.add("Sub", binary_kernel<SubOp, NumericTypes>);
  t.add("Mul", binary_kernel<MulOp, NumericTypes>);
  t.add("Div", binary_kernel<DivOp, NumericTypes>);
  t.add("Mod", binary_kernel<ModOp, NumericTypes>);
  t.add("BitShift", binary_kernel<BitShiftOp, IntTypes>);
  t.add("Equal", binary_kernel<EqualOp, AllTypes>);
  t.add("Less", binary_kernel<LessOp, NumericTypes>);
  t.add("Greater", binary_kernel<GreaterOp, NumericTypes>);
  t.add("LessOrEqual", binary_kernel<LessOrEqualOp, NumericTypes>);
  t.add("GreaterOrEqual", binary_kernel<GreaterOrEqualOp, NumericTypes>);
  t.add("And", binary_kernel<AndOp, BoolTypes>);
  t.add("Or", binary_kernel<OrOp, BoolTypes>);
  t.add("Xor", binary_kernel<XorOp, BoolTypes>);
  t.add("Pow", pow_kernel);

  t.add("Max", variadic_kernel<MaxOp, NumericTypes>);
  t.add("Min", variadic_kernel<MinOp, NumericTypes>);
  t.add("Sum", variadic_kernel<AddOp, FloatTypes>);
  t.add("Mean", variadic_kernel<AddOp, FloatTypes, true>);

  t.add("Where", where_kernel);
  t.add("Clip", clip_kernel);
  t.add("Cast", cast_kernel);
  t.add("CastLike", cast_kernel);
  t.add("Identity", identity_kernel);
  t.add("Dropout", dropout_kernel);
}

}  // namespace cb
