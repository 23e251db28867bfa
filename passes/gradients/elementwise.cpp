// Gradient rules of the elementwise ops: arithmetic with broadcasting (each
// input's gradient summed back to its shape), unary math, Where and Cast.
// Every rule builds standard ONNX ops (Gelu's: codebook.grad.GeluGrad) and
// computes only the gradients asked.
#include "ir/ops/grad.h"
#include "passes/gradients/gradient_rule.h"
#include "support/error.h"

namespace cb {
namespace {

std::vector<Value*> add_grad(GradientContext& c) {
  auto r = c.none();
  for (size_t i = 0; i < 2; ++i)
    if (c.want(i)) r[i] = c.b.sum_to(c.dy[0], c.in(i));
  return r;
}

std::vector<Value*> sub_grad(GradientContext& c) {
  auto r = c.none();
  if (c.want(0)) r[0] = c.b.sum_to(c.dy[0], c.in(0));
  if (c.want(1)) r[1] = c.b.neg(c.b.sum_to(c.dy[0], c.in(1)));
  return r;
}

std::vector<Value*> sum_grad(GradientContext& c) {
  auto r = c.none();
  for (size_t i = 0; i < r.size(); ++i)
    if (c.want(i)) r[i] = c.b.sum_to(c.dy[0], c.in(i));
  return r;
}

std::vector<Value*> mul_grad(GradientContext& c) {
  auto r = c.none();
  if (c.want(0)) r[0] = c.b.sum_to(c.b.mul(c.dy[0], c.in(1)), c.in(0));
  if (c.want(1)) r[1] = c.b.sum_to(c.b.mul(c.dy[0], c.in(0)), c.in(1));
  return r;
}

// y = a / b: da = dy / b, db = -dy * y / b.
std::vector<Value*> div_grad(GradientContext& c) {
  auto r = c.none();
  Value* dy_over_b = c.b.div(c.dy[0], c.in(1));
  if (c.want(0)) r[0] = c.b.sum_to(dy_over_b, c.in(0));
  if (c.want(1)) r[1] = c.b.neg(c.b.sum_to(c.b.mul(dy_over_b, c.out(0)), c.in(1)));
  return r;
}

// The scalar value of a constant, if it is one.
bool constant_scalar(const Value* v, double& out) {
  if (!v || !v->constant || v->constant->numel() != 1) return false;
  out = v->constant->get_double(0);
  return true;
}

// y = x ^ e: dx = dy * e * x^(e-1) (constant e folded), de = dy * y * ln(x).
std::vector<Value*> pow_grad(GradientContext& c) {
  auto r = c.none();
  Value* x = c.in(0);
  Value* e = c.in(1);
  DType dt = x->type.dtype;
  if (c.want(0)) {
    double ev;
    if (!constant_scalar(e, ev)) {
      Value* ef = e->type.dtype == dt ? e : c.b.op("Cast", {e}, {{"to", int64_t(dtype_to_onnx(dt))}});
      Value* local = c.b.mul(ef, c.b.op("Pow", {x, c.b.sub(ef, c.b.scalar(dt, 1.0))}));
      r[0] = c.b.sum_to(c.b.mul(c.dy[0], local), x);
    } else if (ev == 1) {
      r[0] = c.b.sum_to(c.dy[0], x);
    } else if (ev != 0) {  // x^0 is constant: no gradient
      Value* local = ev == 2 ? x : c.b.op("Pow", {x, c.b.scalar(dt, ev - 1)});
      r[0] = c.b.sum_to(c.b.mul(c.dy[0], c.b.mul_scalar(local, ev)), x);
    }
  }
  if (c.want(1)) r[1] = c.b.sum_to(c.b.mul(c.b.mul(c.dy[0], c.out(0)), c.b.op("Log", {x})), e);
  return r;
}

// Unary ops: dx = dy * f'(x, y).
using LocalDerivative = Value* (*)(GradientContext& c, Value* dy);

template <LocalDerivative F>
std::vector<Value*> unary_grad(GradientContext& c) {
  auto r = c.none();
  if (c.want(0)) r[0] = F(c, c.dy[0]);
  return r;
}

Value* neg_d(GradientContext& c, Value* dy) { return c.b.neg(dy); }
Value* identity_d(GradientContext&, Value* dy) { return dy; }
Value* sqrt_d(GradientContext& c, Value* dy) { return c.b.div(c.b.mul_scalar(dy, 0.5), c.out(0)); }
Value* exp_d(GradientContext& c, Value* dy) { return c.b.mul(dy, c.out(0)); }
Value* log_d(GradientContext& c, Value* dy) { return c.b.div(dy, c.in(0)); }
Value* sin_d(GradientContext& c, Value* dy) { return c.b.mul(dy, c.b.op("Cos", {c.in(0)})); }
Value* cos_d(GradientContext& c, Value* dy) { return c.b.neg(c.b.mul(dy, c.b.op("Sin", {c.in(0)}))); }
// 1 / x: -dy * y^2.
Value* reciprocal_d(GradientContext& c, Value* dy) {
  Value* y = c.out(0);
  return c.b.neg(c.b.mul(dy, c.b.mul(y, y)));
}
// tanh: dy * (1 - y^2).
Value* tanh_d(GradientContext& c, Value* dy) {
  Value* y = c.out(0);
  return c.b.mul(dy, c.b.sub(c.b.scalar(y->type.dtype, 1.0), c.b.mul(y, y)));
}
// sigmoid: dy * y * (1 - y).
Value* sigmoid_d(GradientContext& c, Value* dy) {
  Value* y = c.out(0);
  return c.b.mul(dy, c.b.mul(y, c.b.sub(c.b.scalar(y->type.dtype, 1.0), y)));
}
// erf: dy * 2/sqrt(pi) * exp(-x^2).
Value* erf_d(GradientContext& c, Value* dy) {
  constexpr double kTwoOverSqrtPi = 1.1283791670955126;
  Value* x = c.in(0);
  Value* e = c.b.op("Exp", {c.b.neg(c.b.mul(x, x))});
  return c.b.mul(dy, c.b.mul_scalar(e, kTwoOverSqrtPi));
}
// Gelu: one codebook.grad GeluGrad node (ir/ops/grad.h) instead of a dozen
// elementwise ops over the MLP's widest activation.
Value* gelu_d(GradientContext& c, Value* dy) {
  return c.b.op("GeluGrad", {dy, c.in(0)}, {{"approximate", c.node.attr_string("approximate", "none")}}, kGradDomain);
}
// relu: dy where x > 0.
Value* relu_d(GradientContext& c, Value* dy) {
  Value* x = c.in(0);
  DType dt = x->type.dtype;
  Value* positive = c.b.op("Greater", {x, c.b.scalar(dt, 0.0)});
  return c.b.op("Where", {positive, dy, c.b.scalar(dt, 0.0)});
}

// Where(cond, a, b): the gradient goes to the branch each element came from.
std::vector<Value*> where_grad(GradientContext& c) {
  auto r = c.none();
  Value* zero = c.b.scalar(c.dy[0]->type.dtype, 0.0);
  if (c.want(1)) r[1] = c.b.sum_to(c.b.op("Where", {c.in(0), c.dy[0], zero}), c.in(1));
  if (c.want(2)) r[2] = c.b.sum_to(c.b.op("Where", {c.in(0), zero, c.dy[0]}), c.in(2));
  return r;
}

// Cast between float types: the gradient is cast back (f32 -> f32 passes it on).
std::vector<Value*> cast_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  DType from = c.in(0)->type.dtype;
  Value* dy = c.dy[0];
  r[0] = dy->type.dtype == from ? dy : c.b.op("Cast", {dy}, {{"to", int64_t(dtype_to_onnx(from))}});
  return r;
}

}  // namespace

void register_elementwise_gradients(GradientTable& t) {
  t.add("Add", add_grad);
  t.add("Sub", sub_grad);
  t.add("Sum", sum_grad);
  t.add("Mul", mul_grad);
  t.add("Div", div_grad);
  t.add("Pow", pow_grad);
  t.add("Neg", unary_grad<neg_d>);
  t.add("Identity", unary_grad<identity_d>);
  t.add("Sqrt", unary_grad<sqrt_d>);
  t.add("Exp", unary_grad<exp_d>);
  t.add("Log", unary_grad<log_d>);
  t.add("Sin", unary_grad<sin_d>);
  t.add("Cos", unary_grad<cos_d>);
  t.add("Reciprocal", unary_grad<reciprocal_d>);
  t.add("Tanh", unary_grad<tanh_d>);
  t.add("Sigmoid", unary_grad<sigmoid_d>);
  t.add("Erf", unary_grad<erf_d>);
  t.add("Gelu", unary_grad<gelu_d>);
  t.add("Relu", unary_grad<relu_d>);
  t.add("Where", where_grad);
  t.add("Cast", cast_grad);
}

}  // namespace cb
