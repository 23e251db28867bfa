// GradBuilder (the gradient rules' Builder options, shape helpers, broadcast
// reduction) and the gradient rule table; see gradient_rule.h.
#include <algorithm>

#include "passes/gradients/gradient_rule.h"
#include "support/error.h"

namespace cb {

namespace {
BuilderOptions grad_builder_options() {
  BuilderOptions o;
  o.naming.output_suffix = "_out";
  o.naming.numbered_constants = true;
  o.infer_types = true;
  o.allow_omitted_inputs = true;
  return o;
}
}  // namespace

GradBuilder::GradBuilder(Graph& g) : Builder(g, grad_builder_options()) { set_scope("grad"); }

Value* GradBuilder::op_like(const Value* like, const std::string& type, std::vector<Value*> inputs, Attrs attrs,
                            const std::string& domain) {
  return op_n(type, std::move(inputs), 1, std::move(attrs), domain, {}, {like})[0];
}

Value* GradBuilder::mul_scalar(Value* a, double s) {
  if (s == 1.0) return a;
  return mul(a, scalar(a->type.dtype, s));
}

Value* GradBuilder::shape_tensor(Value* v) {
  auto it = shapes_.find(v);
  if (it != shapes_.end()) return it->second;
  Value* s = v->type.shape.is_static() ? i64s(v->type.shape.sizes()) : op("Shape", {v});
  shapes_[v] = s;
  return s;
}

Value* GradBuilder::zeros_like(Value* v) {
  Tensor zero = Tensor::zeros(v->type.dtype, {1});
  return op_like(v, "ConstantOfShape", {shape_tensor(v)}, {{"value", zero}});
}

Value* GradBuilder::reshape_like(Value* grad, Value* v) {
  const Shape& gs = grad->type.shape;
  const Shape& vs = v->type.shape;
  bool same = gs.rank_known && vs.rank_known && gs.rank() == vs.rank();
  for (size_t i = 0; same && i < gs.rank(); ++i) same = gs[i].same_as(vs[i]);
  if (same) return grad;
  return op_like(v, "Reshape", {grad, shape_tensor(v)}, {{"allowzero", int64_t(1)}});
}

Value* GradBuilder::sum_to(Value* grad, const Value* like) {
  const Shape& gs = grad->type.shape;
  const Shape& ls = like->type.shape;
  CB_CHECK(gs.rank_known && ls.rank_known, "autodiff (" << scope_name() << "): cannot sum the gradient "
                                                        << grad->type.str() << " back to '" << like->name << "' "
                                                        << like->type.str() << ": unknown rank");
  auto static_one = [](const Dim& d) { return d.is_static() && d.value == 1; };
  const size_t gr = gs.rank(), lr = ls.rank();
  // like's extra leading dims (when it has more) must be 1: they come back by Unsqueeze.
  const size_t extra = lr > gr ? lr - gr : 0, lead = gr > lr ? gr - lr : 0;
  for (size_t i = 0; i < extra; ++i)
    CB_CHECK(static_one(ls[i]), "autodiff (" << scope_name() << "): the gradient " << grad->type.str()
                                             << " cannot be summed back to '" << like->name << "' "
                                             << like->type.str());
  std::vector<int64_t> axes;
  for (size_t i = 0; i < lead; ++i) axes.push_back(int64_t(i));
  for (size_t i = lead; i < gr; ++i)
    if (static_one(ls[i - lead + extra]) && !static_one(gs[i])) axes.push_back(int64_t(i));
  Value* r = grad;
  if (!axes.empty()) r = op("ReduceSum", {r, i64s(axes)}, {{"keepdims", int64_t(1)}});
  if (lead > 0) {
    std::vector<int64_t> leading;
    for (size_t i = 0; i < lead; ++i) leading.push_back(int64_t(i));
    r = op("Squeeze", {r, i64s(leading)});
  }
  if (extra > 0) {
    std::vector<int64_t> leading;
    for (size_t i = 0; i < extra; ++i) leading.push_back(int64_t(i));
    r = op("Unsqueeze", {r, i64s(leading)});
  }
  return r;
}

Value* GradientContext::dy_or_zeros(size_t i) {
  if (i < dy.size() && dy[i]) return dy[i];
  Value* o = out(i);
  CB_CHECK(o, "autodiff: " << node.describe() << " has no output " << i);
  return b.zeros_like(o);
}

const GradientTable& gradient_rules() {
  static const GradientTable table = [] {
    GradientTable t;
    register_elementwise_gradients(t);
    register_tensor_gradients(t);
    register_reduction_gradients(t);
    register_nn_gradients(t);
    register_codebook_gradients(t);
    register_attention_gradients(t);
    return t;
  }();
  return table;
}

}  // namespace cb
