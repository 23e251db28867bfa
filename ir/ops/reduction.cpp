// Schemas of reductions: the Reduce* family (axes as an optional i64 input,
// keepdims, noop_with_empty_axes), ArgMax/ArgMin and TopK. Shape inference
// keeps symbolic dims on the axes that are not reduced; when the axes (or K)
// are not known at compile time it infers as much as the attributes allow.
#include <algorithm>
#include <optional>

#include "ir/op_registry.h"

namespace cb {
namespace {

enum class DTypes { floats, numeric, numeric_or_bool };

void check_dtype(const InferContext& ctx, size_t i, DTypes allowed) {
  DType t = ctx.input_dtype(i);
  if (t == DType::undefined) return;
  bool ok = dtype_is_float(t) || (allowed != DTypes::floats && dtype_is_int(t)) ||
            (allowed == DTypes::numeric_or_bool && t == DType::boolean);
  const char* what = allowed == DTypes::floats    ? "a float type"
                     : allowed == DTypes::numeric ? "a numeric type"
                                                  : "a numeric type or bool";
  if (!ok) ctx.fail("input " + std::to_string(i) + " has dtype " + std::string(dtype_name(t)) + ", expected " + what);
}

// Reads a constant 1-D (or scalar) integer input such as axes or K.
std::vector<int64_t> int_list(const InferContext& ctx, size_t i, const char* what) {
  const Tensor* v = ctx.input_value(i);
  ctx.check(dtype_is_int(v->dtype()),
            std::string(what) + " must be an integer tensor, got " + std::string(dtype_name(v->dtype())));
  ctx.check(v->rank() <= 1, std::string(what) + " must be 1-D, got shape " + dims_str(v->dims()));
  return v->to_int_vector();
}

void infer_reduce(InferContext& ctx, DTypes allowed) {
  check_dtype(ctx, 0, allowed);
  DType dt = ctx.input_dtype(0);
  const Shape& in = ctx.input_shape(0);
  bool keepdims = ctx.node().attr_int("keepdims", 1) != 0;
  bool noop = ctx.node().attr_int("noop_with_empty_axes", 0) != 0;

  std::optional<std::vector<int64_t>> axes;  // nullopt: not known now
  if (!ctx.has_input(1)) {
    axes.emplace();
  } else if (ctx.input_value(1)) {
    axes = int_list(ctx, 1, "axes");
  } else {
    // Axes known only at run time.
    DType at = ctx.input_dtype(1);
    ctx.check(at == DType::undefined || at == DType::i64, "axes must be i64, got " + std::string(dtype_name(at)));
    if (!in.rank_known) return ctx.set_output(0, dt, Shape::unknown_rank());
    if (keepdims) {
      Shape out = in;
      for (auto& d : out.dims)
        if (!(d.is_static() && d.value == 1)) d = Dim::unknown();
      return ctx.set_output(0, dt, out);
    }
    const Shape& as = ctx.input_shape(1);
    if (as.rank_known && as.rank() == 1 && as[0].is_static() && as[0].value > 0 && as[0].value <= int64_t(in.rank())) {
      Shape out;
      out.dims.assign(in.rank() - size_t(as[0].value), Dim::unknown());
      return ctx.set_output(0, dt, out);
    }
    return ctx.set_output(0, dt, Shape::unknown_rank());
  }

  if (axes->empty() && noop) return ctx.set_output(0, dt, in);
  if (!in.rank_known) {
    if (axes->empty() && !keepdims) return ctx.set_output(0, dt, Shape());
    return ctx.set_output(0, dt, Shape::unknown_rank());
  }
  int64_t rank = int64_t(in.rank());
  ctx.check(rank > 0 || axes->empty(), "a scalar input has no axis to reduce over");
  std::vector<bool> reduced(in.rank(), axes->empty());
  for (int64_t a : *axes) {
    int64_t n = ctx.axis(a, rank, "axes entry");
    ctx.check(!reduced[size_t(n)], "axis " + std::to_string(a) + " is listed twice in axes");
    reduced[size_t(n)] = true;
  }
  Shape out;
  for (size_t i = 0; i < in.rank(); ++i) {
    if (!reduced[i])
      out.dims.push_back(in[i]);
    else if (keepdims)
      out.dims.push_back(Dim::fixed(1));
  }
  ctx.set_output(0, dt, out);
}

void infer_arg_reduce(InferContext& ctx) {
  check_dtype(ctx, 0, DTypes::numeric);
  const Shape& in = ctx.input_shape(0);
  if (!in.rank_known) return ctx.set_output(0, DType::i64, Shape::unknown_rank());
  int64_t axis = ctx.axis(ctx.node().attr_int("axis", 0), int64_t(in.rank()));
  ctx.check(in.rank() > 0, "input must have rank >= 1");
  ctx.check(!(in[size_t(axis)].is_static() && in[size_t(axis)].value == 0),
            "cannot reduce the empty axis " + std::to_string(axis) + " of " + in.str());
  Shape out;
  for (size_t i = 0; i < in.rank(); ++i) {
    if (int64_t(i) != axis)
      out.dims.push_back(in[i]);
    else if (ctx.node().attr_int("keepdims", 1))
      out.dims.push_back(Dim::fixed(1));
  }
  ctx.set_output(0, DType::i64, out);
}

void infer_topk(InferContext& ctx) {
  check_dtype(ctx, 0, DTypes::numeric);
  DType dt = ctx.input_dtype(0);
  const Shape& in = ctx.input_shape(0);
  DType kt = ctx.input_dtype(1);
  ctx.check(kt == DType::undefined || kt == DType::i64, "K must be i64, got " + std::string(dtype_name(kt)));
  if (!in.rank_known) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    ctx.set_output(1, DType::i64, Shape::unknown_rank());
    return;
  }
  ctx.check(in.rank() > 0, "input must have rank >= 1");
  int64_t axis = ctx.axis(ctx.node().attr_int("axis", -1), int64_t(in.rank()));
  Shape out = in;
  Dim& d = out.dims[size_t(axis)];
  if (ctx.input_value(1)) {
    std::vector<int64_t> k = int_list(ctx, 1, "K");
    ctx.check(k.size() == 1, "K must hold exactly one value, got " + std::to_string(k.size()));
    ctx.check(k[0] >= 0, "K must be >= 0, got " + std::to_string(k[0]));
    const Dim& n = in[size_t(axis)];
    ctx.check(!n.is_static() || k[0] <= n.value, "K = " + std::to_string(k[0]) + " exceeds the size " +
                                                     std::to_string(n.value) + " of axis " + std::to_string(axis) +
                                                     " of " + in.str());
    d = Dim::fixed(k[0]);
  } else {
    d = Dim::unknown();
  }
  ctx.set_output(0, dt, out);
  ctx.set_output(1, DType::i64, out);
}

OpSchema make_schema(const char* name, int min_in, int max_in, int min_out, int max_out,
                     std::function<void(InferContext&)> infer, const char* doc) {
  return make_op_schema(name, min_in, max_in, min_out, max_out, std::move(infer), doc);
}

void add_reduce(OpRegistry& r, const char* name, DTypes allowed, const char* doc) {
  r.add(make_schema(
      name, 1, 2, 1, 1, [allowed](InferContext& c) { infer_reduce(c, allowed); }, doc));
}

}  // namespace

void register_reduction_ops(OpRegistry& r) {
  add_reduce(r, "ReduceSum", DTypes::numeric, "Sum over axes (empty set: 0).");
  add_reduce(r, "ReduceMean", DTypes::numeric, "Mean over axes (empty set: NaN).");
  add_reduce(r, "ReduceMax", DTypes::numeric_or_bool, "Max over axes (empty set: lowest value).");
  add_reduce(r, "ReduceMin", DTypes::numeric_or_bool, "Min over axes (empty set: highest value).");
  add_reduce(r, "ReduceProd", DTypes::numeric, "Product over axes (empty set: 1).");
  add_reduce(r, "ReduceL1", DTypes::numeric, "Sum of absolute values over axes.");
  add_reduce(r, "ReduceL2", DTypes::numeric, "Square root of the sum of squares over axes.");
  add_reduce(r, "ReduceLogSum", DTypes::floats, "Log of the sum over axes.");
  add_reduce(r, "ReduceLogSumExp", DTypes::floats, "Log of the sum of exponentials over axes.");
  add_reduce(r, "ReduceSumSquare", DTypes::numeric, "Sum of squares over axes.");
  r.add(make_schema("ArgMax", 1, 1, 1, 1, infer_arg_reduce, "Index (i64) of the largest value."));
  r.add(make_schema("ArgMin", 1, 1, 1, 1, infer_arg_reduce, "Index (i64) of the smallest value."));
  r.add(
      make_schema("TopK", 2, 2, 2, 2, infer_topk, "K largest (or smallest) values along axis and their i64 indices."));
}

}  // namespace cb
