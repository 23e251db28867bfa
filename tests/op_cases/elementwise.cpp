// Elementwise ops. The cpu backend's own f32 kernels
// (backends/cpu/elementwise_kernels.*, dnnl_eltwise.*) are exact except Exp,
// Tanh, Erf, Gelu and the oneDNN ones: their cases carry a tolerance (their
// accuracy over dense grids is tested in tests/test_cpu_elementwise.cpp).
// Shapes: odd sizes (partial vectors), scalars, row and column broadcasts,
// sizes split across threads (> 8M elements), empty tensors.
#include <limits>

#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
const DType f32 = DType::f32;

// Magnitudes in [0.1, 2] with random signs: never zero.
const Values kNonZero = magnitudes(0.1, 2.0);

Tensor f32s(std::vector<float> v) { return Tensor::from_vector<float>(v, {int64_t(v.size())}); }

struct Broadcast {
  Dims a, b;
};

// Same shape, scalars on either side, row ("bias") and column broadcasts,
// general broadcasts.
const std::vector<Broadcast> kBroadcasts = {
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
const std::vector<Broadcast> kBigBroadcasts = {
    {{3, 2796203}, {3, 2796203}}, {{8400001}, {}}, {{65537, 129}, {129}}, {{65537, 129}, {65537, 1}},
    {{3, 1, 1400001}, {1, 2, 1}},
};

std::vector<OpCase> binary_cases() {
  std::vector<OpCase> v;
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Min", "Max"})
    for (const Broadcast& b : kBroadcasts)
      v.push_back(OpCase(std::string(op) + "_" + dims_name(b.a) + "_by_" + dims_name(b.b), op)
                      .in(b.a, kNonZero)
                      .in(b.b, kNonZero));
  for (const Broadcast& b : kBigBroadcasts)
    v.push_back(
        OpCase("Div_big_" + dims_name(b.a) + "_by_" + dims_name(b.b), "Div").in(b.a, kNonZero).in(b.b, kNonZero));
  // NaN, infinities and signed zeros propagate as in the reference.
  const Tensor a = f32s({kNaN, 1.f, -0.f, 0.f, kInf, 2.f, kNaN, -kInf, 3.f});
  const Tensor b = f32s({1.f, kNaN, 0.f, -0.f, 2.f, -kInf, kNaN, kInf, 3.f});
  for (const char* op : {"Min", "Max", "Add", "Sub", "Mul", "Div"})
    v.push_back(OpCase(std::string(op) + "_special_values", op).given(a).given(b));
  // Empty tensors.
  for (const char* op : {"Add", "Mul", "Div"})
    v.push_back(OpCase(std::string(op) + "_empty", op).in({0, 5}, kNonZero).in({5}, kNonZero));
  // Other dtypes: the reference kernels.
  for (const char* op : {"Add", "Sub", "Mul", "Div", "Min", "Max"}) {
    v.push_back(OpCase(std::string(op) + "_f64", op).in(DType::f64, {3}, kNonZero).in(DType::f64, {3}, kNonZero));
    v.push_back(OpCase(std::string(op) + "_i32", op)
                    .in(DType::i32, {3}, magnitudes(1, 9))
                    .in(DType::i32, {3}, magnitudes(1, 9)));
  }
  for (const char* op : {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"}) {
    v.push_back(OpCase(std::string(op) + "_f32", op).in({4, 5}, uniform(-3, 3)).in({5}, uniform(-3, 3)));
    v.push_back(OpCase(std::string(op) + "_i64", op)
                    .in(DType::i64, {4, 5}, uniform(-2, 2))
                    .in(DType::i64, {5}, uniform(-2, 2)));
  }
  for (const char* op : {"And", "Or", "Xor"})
    v.push_back(OpCase(std::string(op) + "_broadcast", op).in(DType::boolean, {3, 4}).in(DType::boolean, {4}));
  v.push_back(OpCase("Mod_i32", "Mod").in(DType::i32, {4, 5}, uniform(-20, 20)).in(DType::i32, {5}, magnitudes(1, 7)));
  v.push_back(OpCase("Mod_f32_fmod", "Mod").attr("fmod", int64_t(1)).in({4, 5}, uniform(-20, 20)).in({5}, kNonZero));
  v.push_back(OpCase("BitShift_left_u8", "BitShift")
                  .attr("direction", std::string("LEFT"))
                  .in(DType::u8, {3, 5}, uniform(1, 100))
                  .in(DType::u8, {5}, uniform(0, 10)));
  v.push_back(OpCase("BitShift_right_i32", "BitShift")
                  .attr("direction", std::string("RIGHT"))
                  .in(DType::i32, {3, 5}, uniform(-100, 100))
                  .in(DType::i32, {5}, uniform(-2, 34)));
  return v;
}

std::vector<OpCase> variadic_cases() {
  std::vector<OpCase> v;
  const Dims d = {3, 100003};
  for (const char* op : {"Min", "Max", "Sum"}) {
    const std::string o = op;
    v.push_back(OpCase(o + "_one_input", op).in(d, kNonZero));
    v.push_back(OpCase(o + "_three_inputs", op).in(d, kNonZero).in(d, kNonZero).in(d, kNonZero));
    // A broadcast input: the reference fallback.
    v.push_back(OpCase(o + "_three_inputs_broadcast", op).in(d, kNonZero).in({100003}, kNonZero).in(d, kNonZero));
  }
  v.push_back(OpCase("Sum_two_inputs", "Sum").in(d, kNonZero).in(d, kNonZero));
  v.push_back(OpCase("Sum_four_inputs", "Sum").in(d, kNonZero).in(d, kNonZero).in(d, kNonZero).in(d, kNonZero));
  v.push_back(OpCase("Sum_big", "Sum").in({8400001}, kNonZero).in({8400001}, kNonZero).in({8400001}, kNonZero));
  v.push_back(OpCase("Sum_small", "Sum").in({5, 7}, kNonZero).in({5, 7}, kNonZero).in({5, 7}, kNonZero));
  v.push_back(OpCase("Sum_f64", "Sum").in(DType::f64, {3}, kNonZero).in(DType::f64, {3}, kNonZero));
  v.push_back(OpCase("Mean_broadcast", "Mean").in({2, 3}, kNonZero).in({3}, kNonZero).in({1, 1}, kNonZero));
  v.push_back(
      OpCase("Max_i64_broadcast", "Max").in(DType::i64, {2, 3}, uniform(-5, 5)).in(DType::i64, {3}, uniform(-5, 5)));
  return v;
}

std::vector<OpCase> pow_cases() {
  std::vector<OpCase> v;
  int n = 0;
  for (float e : {2.f, 3.f, 0.5f, -1.5f, 1.f, 4.f})
    for (const Dims& d : std::vector<Dims>{{7}, {5, 13}, {3, 700003}}) {
      const std::string name = "Pow_" + std::to_string(n++) + "_" + dims_name(d);
      // A positive base by a scalar exponent; any base by a [1] exponent (NaN for a fractional one).
      v.push_back(OpCase(name + "_scalar_exponent", "Pow").in(d, positive(0.1, 2.0)).given(Tensor::scalar<float>(e)));
      v.push_back(OpCase(name + "_one_exponent", "Pow").in(d, kNonZero).given(Tensor::from_vector<float>({e}, {1})));
    }
  // Not a single f32 exponent: the reference fallback.
  v.push_back(OpCase("Pow_tensor_exponent", "Pow").in({5, 7}, positive(0.1, 2.0)).in({7}, positive(0.1, 2.0)));
  v.push_back(OpCase("Pow_i64_exponent", "Pow").in({5, 7}, kNonZero).given(Tensor::scalar<int64_t>(3)));
  v.push_back(OpCase("Pow_big", "Pow").in({8400001}, kNonZero).given(Tensor::scalar<float>(2.f)));
  return v;
}

std::vector<OpCase> where_cases() {
  std::vector<OpCase> v;
  struct Shapes {
    Dims c, x, y;
  };
  for (const Shapes& s : std::vector<Shapes>{{{7}, {7}, {7}},
                                             {{3, 5, 7}, {}, {}},
                                             {{256, 1, 33, 33}, {}, {}},
                                             {{1, 1, 33, 33}, {64, 4, 33, 33}, {}},
                                             {{5, 1}, {1, 7}, {5, 7}},
                                             {{3, 100003}, {3, 100003}, {100003}},
                                             {{3, 1}, {3, 2800001}, {2800001}}})
    v.push_back(OpCase("Where_" + dims_name(s.c) + "_" + dims_name(s.x) + "_" + dims_name(s.y), "Where")
                    .in(DType::boolean, s.c)
                    .in(s.x, kNonZero)
                    .in(s.y, kNonZero));
  v.push_back(OpCase("Where_i64", "Where")
                  .in(DType::boolean, {5})
                  .in(DType::i64, {5}, magnitudes(1, 5))
                  .in(DType::i64, {5}, magnitudes(1, 5)));
  return v;
}

std::vector<OpCase> unary_cases() {
  std::vector<OpCase> v;
  // The cpu backend's exact unary kernels: odd sizes, vector multiples, threaded sizes.
  for (const char* op : {"Neg", "Abs", "Relu", "Sqrt", "Reciprocal"}) {
    const Values values = std::string(op) == "Sqrt" ? positive(0.1, 2.0) : kNonZero;
    for (int64_t n : {1, 7, 8, 9, 15, 17, 1000, 65536, 300007})
      v.push_back(OpCase(std::string(op) + "_" + std::to_string(n), op).in({n}, values));
    v.push_back(OpCase(std::string(op) + "_special_values", op)
                    .given(f32s({kNaN, kInf, -kInf, 0.f, -0.f, -1.f, 1e-40f, -1e-40f, 3.f})));
  }
  for (const char* op : {"Neg", "Sqrt"})
    v.push_back(OpCase(std::string(op) + "_big", op).in({8400001}, positive(0.1, 2.0)));
  // Approximations: within a few ulp of the reference; the same for any
  // thread count (the last size is shared with a helper).
  for (const char* op : {"Exp", "Tanh", "Erf"})
    for (int64_t n : {1, 7, 9, 1000, 2100001})
      v.push_back(OpCase(std::string(op) + "_" + std::to_string(n), op)
                      .in({n}, magnitudes(0.01, 5.0))
                      .tol(abs_rel(1.2e-7, 2.5e-7)));
  // Through the cpu backend's own or oneDNN's kernels over each op's useful
  // range (oneDNN's primitive is rebuilt when the size changes).
  struct Range {
    const char* op;
    Attrs attrs;
    double lo, hi;
  };
  for (const Range& r : std::vector<Range>{{"Tanh", {}, -6, 6},
                                           {"Exp", {}, -20, 20},
                                           {"Sigmoid", {}, -10, 10},
                                           {"Relu", {}, -2, 2},
                                           {"LeakyRelu", {{"alpha", 0.2f}}, -2, 2},
                                           {"Sqrt", {}, 0, 100},
                                           {"Gelu", {}, -5, 5},
                                           {"Gelu", {{"approximate", std::string("tanh")}}, -5, 5}})
    for (int64_t n : {1, 7, 4096, 1000}) {
      std::string name =
          std::string(r.op) + (r.attrs.count("approximate") ? "_tanh" : "") + "_range_" + std::to_string(n);
      OpCase c(name, r.op);
      c.attrs = r.attrs;
      v.push_back(c.in({n}, uniform(r.lo, r.hi)).tol(abs_rel(2e-6, 2e-6)));
    }
  // Empty tensors.
  for (const char* op : {"Neg", "Erf", "Exp", "Sqrt"}) v.push_back(OpCase(std::string(op) + "_empty", op).in({3, 0}));
  // Other dtypes: the reference kernels.
  for (const char* op : {"Neg", "Abs", "Sqrt", "Exp", "Tanh", "Erf", "Reciprocal"})
    v.push_back(OpCase(std::string(op) + "_f64", op).in(DType::f64, {3}, positive(0.5, 2.5)));
  // The other unary ops (reference kernels).
  for (const char* op :
       {"Log", "Sin", "Cos", "Tan", "Elu", "Selu", "HardSigmoid", "Softplus", "Ceil", "Floor", "Round", "Sign"})
    v.push_back(
        OpCase(std::string(op) + "_f32", op).in({3, 4}, std::string(op) == "Log" ? positive(0.1, 3) : uniform(-3, 3)));
  v.push_back(OpCase("Abs_i32", "Abs").in(DType::i32, {6}, uniform(-9, 9)));
  v.push_back(OpCase("Sign_i64", "Sign").in(DType::i64, {6}, uniform(-2, 2)));
  v.push_back(OpCase("Not", "Not").in(DType::boolean, {2, 5}));
  for (const char* op : {"IsNaN", "IsInf"})
    v.push_back(OpCase(op, op).given(f32s({kNaN, kInf, -kInf, 0.f, -0.f, 1.f})));
  v.push_back(OpCase("Clip_min_max", "Clip")
                  .in({4, 5}, uniform(-3, 3))
                  .given(Tensor::scalar<float>(-1.f))
                  .given(Tensor::scalar<float>(2.f)));
  v.push_back(OpCase("Clip_max_only", "Clip").in({4, 5}, uniform(-3, 3)).omitted().given(Tensor::scalar<float>(0.5f)));
  v.push_back(OpCase("Clip_i64", "Clip").in(DType::i64, {7}, uniform(-9, 9)).given(Tensor::scalar<int64_t>(-2)));
  v.push_back(OpCase("Cast_f32_to_i32", "Cast").attr("to", int64_t(6)).in({4, 5}, uniform(-100, 100)));
  v.push_back(OpCase("Cast_i64_to_f16", "Cast").attr("to", int64_t(10)).in(DType::i64, {4, 5}, uniform(-1000, 1000)));
  v.push_back(OpCase("CastLike_f32_to_bf16", "CastLike").in({4, 5}, uniform(-3, 3)).in(DType::bf16, {1}));
  v.push_back(OpCase("Identity_i64", "Identity").in(DType::i64, {2, 3}, uniform(-9, 9)));
  v.push_back(OpCase("Dropout_inference", "Dropout").in({3, 4, 5}).outs({true, true}));
  v.push_back(OpCase("Dropout_training", "Dropout")
                  .attr("seed", int64_t(7))
                  .in({30, 40}, positive(0.5, 3))
                  .given(Tensor::scalar<float>(0.25f))
                  .given(Tensor::scalar<bool>(true))
                  .outs({true, true}));
  return v;
}

// Gradient cases: the op's rule against finite differences in f64.
std::vector<OpCase> gradient_cases() {
  std::vector<OpCase> v;
  v.push_back(OpCase("Add_grad_broadcast", "Add").in({2, 3, 4}).in({3, 1}).gradient());
  v.push_back(OpCase("Sub_grad_row", "Sub").in({2, 3}).in({3}).gradient());
  v.push_back(OpCase("Mul_grad_broadcast_both", "Mul").in({2, 1, 4}).in({3, 1}).gradient());
  v.push_back(OpCase("Sub_grad_scalar", "Sub").in({}).in({2, 3}).gradient());
  v.push_back(OpCase("Sum_grad_broadcast", "Sum").in({2, 3}).in({3}).in({1, 1}).gradient());
  v.push_back(OpCase("Div_grad_column", "Div").in({2, 3}).in({2, 1}).gradient());
  v.push_back(OpCase("Pow_grad_cube", "Pow").in({2, 3}).constant(Tensor::scalar<float>(3)).gradient());
  v.push_back(OpCase("Pow_grad_square", "Pow").in({2, 3}).constant(Tensor::scalar<float>(2)).gradient());
  v.push_back(OpCase("Pow_grad_tensor_exponent", "Pow").in({2, 3}, positive()).in({3}).gradient());
  for (const char* op : {"Neg", "Tanh", "Erf", "Exp", "Sin", "Cos", "Reciprocal", "Sigmoid", "Relu", "Identity"})
    v.push_back(OpCase(std::string(op) + "_grad", op).in({2, 3}).gradient());
  // (The cpu backend approximates these: within a few ulp.)
  for (OpCase& c : v)
    if (c.op == "Tanh" || c.op == "Erf" || c.op == "Exp" || c.op == "Sigmoid") c.tol(abs_rel(2e-6, 2e-6));
  for (const char* op : {"Sqrt", "Log"})
    v.push_back(OpCase(std::string(op) + "_grad", op).in({2, 3}, positive()).gradient());
  // Gelu's rule emits one codebook.grad.GeluGrad node, in both forms.
  for (const char* approximate : {"none", "tanh"})
    v.push_back(OpCase(std::string("Gelu_grad_") + approximate, "Gelu")
                    .attr("approximate", std::string(approximate))
                    .in({2, 3})
                    .gradient()
                    .tol(abs_rel(2e-6, 2e-6)));
  v.push_back(OpCase("Where_grad", "Where")
                  .given(Tensor::from_vector<bool>({true, false, true, false, false, true}, {2, 3}))
                  .in({2, 3})
                  .in({3})
                  .gradient());
  // Cast to f64 (11) passes the gradient on.
  v.push_back(OpCase("Cast_grad", "Cast").attr("to", int64_t(11)).in({2, 3}).gradient());
  return v;
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> v;
  for (auto f : {binary_cases, variadic_cases, pow_cases, where_cases, unary_cases, gradient_cases})
    for (OpCase& c : f()) v.push_back(std::move(c));
  return v;
}

const RegisterOpCases kRegistered(all_cases());

}  // namespace
}  // namespace cb::test
