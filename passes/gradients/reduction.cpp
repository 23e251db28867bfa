// Gradient rules of ReduceSum and ReduceMean: dy (with the reduced axes put
// back when keepdims = 0) expanded to the input's shape, divided by the
// number of reduced elements for the mean. The axes must be constants.
#include <algorithm>

#include "passes/gradients/gradient_rule.h"
#include "support/error.h"

namespace cb {
namespace {

template <bool Mean>
std::vector<Value*> reduce_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  const Node& n = c.node;
  Value* x = c.in(0);
  CB_CHECK(x->type.shape.rank_known, "autodiff: " << n.describe() << ": the rank of '" << x->name << "' is unknown");
  const int64_t rank = int64_t(x->type.shape.rank());
  std::vector<int64_t> axes;
  if (Value* a = c.in(1)) {
    CB_CHECK(a->constant, "autodiff: " << n.describe() << ": the axes input '" << a->name << "' must be a constant");
    axes = a->constant->to_int_vector();
  }
  if (axes.empty()) {
    if (n.attr_int("noop_with_empty_axes", 0) != 0) {
      r[0] = c.dy[0];
      return r;
    }
    for (int64_t i = 0; i < rank; ++i) axes.push_back(i);
  }
  for (auto& a : axes) {
    if (a < 0) a += rank;
    CB_CHECK(a >= 0 && a < rank, "autodiff: " << n.describe() << ": axis out of range for rank " << rank);
  }
  std::sort(axes.begin(), axes.end());
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  Value* g = c.dy[0];
  if (n.attr_int("keepdims", 1) == 0) g = c.b.op("Unsqueeze", {g, c.b.i64s(axes)});
  if (Mean) {
    const Shape& s = x->type.shape;
    bool counted = true;
    double count = 1;
    for (int64_t a : axes) {
      counted &= s[size_t(a)].is_static();
      if (counted) count *= double(s[size_t(a)].value);
    }
    if (counted) {
      g = c.b.mul_scalar(g, 1.0 / count);
    } else {
      Value* dims = c.b.op("Gather", {c.b.shape_tensor(x), c.b.i64s(axes)}, {{"axis", int64_t(0)}});
      Value* n_elems = c.b.op("ReduceProd", {dims}, {{"keepdims", int64_t(0)}});
      g = c.b.div(g, c.b.op("Cast", {n_elems}, {{"to", int64_t(dtype_to_onnx(x->type.dtype))}}));
    }
  }
  r[0] = c.b.op_like(x, "Expand", {g, c.b.shape_tensor(x)});
  return r;
}

}  // namespace

void register_reduction_gradients(GradientTable& t) {
  t.add("ReduceSum", reduce_grad<false>);
  t.add("ReduceMean", reduce_grad<true>);
}

}  // namespace cb
