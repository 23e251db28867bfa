// Gradient rules of the data-movement ops: reshapes, Transpose, Split/Concat,
// Slice, Expand and the gathers. Their gradients move dy back where the
// forward took it from; Gather and Slice write into zeros of the input's
// shape with codebook.grad.GatherGrad / SliceGrad (ir/ops/grad.h).
#include "ir/ops/grad.h"
#include "passes/gradients/gradient_rule.h"
#include "support/error.h"

namespace cb {
namespace {

int64_t rank_of(const Node& n, const Value* v) {
  CB_CHECK(v->type.shape.rank_known, "autodiff: " << n.describe() << ": the rank of '" << v->name << "' is unknown");
  return int64_t(v->type.shape.rank());
}

int64_t normalized_axis(const Node& n, int64_t a, int64_t rank) {
  int64_t r = a < 0 ? a + rank : a;
  CB_CHECK(r >= 0 && r < rank, "autodiff: " << n.describe() << ": axis " << a << " is out of range for rank " << rank);
  return r;
}

// Reshape, Flatten, Squeeze without axes: dy back to x's shape.
std::vector<Value*> reshape_grad(GradientContext& c) {
  auto r = c.none();
  if (c.want(0)) r[0] = c.b.reshape_like(c.dy[0], c.in(0));
  return r;
}

// Unsqueeze(x, axes) <-> Squeeze(x, axes): the other one with the same axes.
std::vector<Value*> unsqueeze_grad(GradientContext& c) {
  auto r = c.none();
  if (c.want(0)) r[0] = c.b.op("Squeeze", {c.dy[0], c.in(1)});
  return r;
}

std::vector<Value*> squeeze_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  r[0] = c.in(1) ? c.b.op("Unsqueeze", {c.dy[0], c.in(1)}) : c.b.reshape_like(c.dy[0], c.in(0));
  return r;
}

std::vector<Value*> transpose_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  int64_t rank = rank_of(c.node, c.in(0));
  std::vector<int64_t> perm = c.node.attr_ints("perm", {});
  if (perm.empty())
    for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[size_t(normalized_axis(c.node, perm[i], rank))] = int64_t(i);
  r[0] = c.b.op("Transpose", {c.dy[0]}, {{"perm", inverse}});
  return r;
}

// Split: the output gradients concatenated (zeros for outputs no gradient reached).
std::vector<Value*> split_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  std::vector<Value*> parts;
  for (size_t i = 0; i < c.node.outputs.size(); ++i) parts.push_back(c.dy_or_zeros(i));
  r[0] = c.b.op("Concat", parts, {{"axis", c.node.attr_int("axis", 0)}});
  return r;
}

// Concat: each wanted input's part of dy, by a Slice with constant bounds when
// the sizes along the axis are static, else by a Split with run-time sizes.
std::vector<Value*> concat_grad(GradientContext& c) {
  auto r = c.none();
  int64_t rank = rank_of(c.node, c.out(0));
  int64_t axis = normalized_axis(c.node, c.node.attr_int("axis", 0), rank);
  bool sizes_static = true;
  for (Value* in : c.node.inputs) sizes_static &= in->type.shape.rank_known && in->type.shape[size_t(axis)].is_static();
  if (sizes_static) {
    int64_t offset = 0;
    for (size_t i = 0; i < c.node.inputs.size(); ++i) {
      int64_t size = c.in(i)->type.shape[size_t(axis)].value;
      if (c.want(i)) r[i] = c.b.op("Slice", {c.dy[0], c.b.i64s({offset}), c.b.i64s({offset + size}), c.b.i64s({axis})});
      offset += size;
    }
    return r;
  }
  std::vector<Value*> sizes;
  for (Value* in : c.node.inputs)
    sizes.push_back(c.b.op("Gather", {c.b.shape_tensor(in), c.b.i64s({axis})}, {{"axis", int64_t(0)}}));
  Value* split = sizes.size() == 1 ? sizes[0] : c.b.op("Concat", sizes, {{"axis", int64_t(0)}});
  std::vector<const Value*> like(c.node.inputs.begin(), c.node.inputs.end());
  std::vector<Value*> parts = c.b.op_n("Split", {c.dy[0], split}, c.node.inputs.size(), {{"axis", axis}}, "", {}, like);
  for (size_t i = 0; i < parts.size(); ++i)
    if (c.want(i)) r[i] = parts[i];
  return r;
}

std::vector<Value*> slice_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  Value* x = c.in(0);
  std::vector<Value*> ins = {c.dy[0], c.b.shape_tensor(x), c.in(1), c.in(2)};
  if (c.in(3) || c.in(4)) ins.push_back(c.in(3));
  if (c.in(4)) ins.push_back(c.in(4));
  r[0] = c.b.op_like(x, "SliceGrad", ins, {}, kGradDomain);
  return r;
}

std::vector<Value*> expand_grad(GradientContext& c) {
  auto r = c.none();
  if (c.want(0)) r[0] = c.b.sum_to(c.dy[0], c.in(0));
  return r;
}

std::vector<Value*> gather_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  Value* data = c.in(0);
  r[0] = c.b.op_like(data, "GatherGrad", {c.dy[0], c.in(1), c.b.shape_tensor(data)},
                     {{"axis", c.node.attr_int("axis", 0)}}, kGradDomain);
  return r;
}

// GatherElements: dy added into zeros at the gathered positions.
std::vector<Value*> gather_elements_grad(GradientContext& c) {
  auto r = c.none();
  if (!c.want(0)) return r;
  Value* data = c.in(0);
  r[0] = c.b.op_like(data, "ScatterElements", {c.b.zeros_like(data), c.in(1), c.dy[0]},
                     {{"axis", c.node.attr_int("axis", 0)}, {"reduction", std::string("add")}});
  return r;
}

}  // namespace

void register_tensor_gradients(GradientTable& t) {
  t.add("Reshape", reshape_grad);
  t.add("Flatten", reshape_grad);
  t.add("Squeeze", squeeze_grad);
  t.add("Unsqueeze", unsqueeze_grad);
  t.add("Transpose", transpose_grad);
  t.add("Split", split_grad);
  t.add("Concat", concat_grad);
  t.add("Slice", slice_grad);
  t.add("Expand", expand_grad);
  t.add("Gather", gather_grad);
  t.add("GatherElements", gather_elements_grad);
}

}  // namespace cb
