// Schemas of the tensor and shape ops (Reshape, Transpose, Concat, Slice,
// Gather, Pad, Range, ...): arity and ONNX latest-opset shape inference.
//
// Inference keeps symbolic dims wherever an op copies them (Transpose,
// Unsqueeze, Concat on other axes, Reshape's 0, ...) and sizes every output
// exactly whenever the input values it depends on are known, which is always
// the case at run time (the runtime sizes outputs from these functions).
// Index values that are out of range fail here, before any kernel runs.
#include <algorithm>
#include <climits>
#include <cmath>
#include <optional>
#include <set>

#include "ir/op_registry.h"
#include "support/checked_size.h"

namespace cb {
namespace {

// ------------------------------------------------------------------ helpers

Shape unknown_dims(size_t rank) {
  // The rank can come from a declared length (a Reshape whose shape input is
  // declared [2^31]): refuse absurd ranks before allocating them (found by fuzzing).
  constexpr size_t kMaxRank = 4096;
  CB_CHECK(rank <= kMaxRank, "an inferred rank of " << rank << " is over the limit of " << kMaxRank);
  Shape s;
  s.dims.assign(rank, Dim::unknown());
  return s;
}

std::string ints_str(const std::vector<int64_t>& v) { return dims_str(v); }

// Shapes computed from input values can be absurd (a Reshape to [2^40,2^40]);
// the runtime allocates them, so their element count must not overflow.
constexpr __int128 kMaxElements = __int128(1) << 56;

Shape checked(const InferContext& ctx, Shape s) {
  int64_t n = 1;
  bool fits = true;
  for (auto& d : s.dims)
    if (d.is_static()) fits = fits && mul_size(n, d.value);
  ctx.check(fits && n <= kMaxElements, "output shape " + s.str() + " has too many elements");
  return s;
}

// Fails unless input i, when present and typed, is int32 or int64.
void check_index_input(const InferContext& ctx, size_t i, const char* what) {
  if (!ctx.has_input(i)) return;
  DType t = ctx.input_dtype(i);
  ctx.check(t == DType::undefined || t == DType::i32 || t == DType::i64,
            std::string(what) + " must be int32 or int64, got " + std::string(dtype_name(t)));
}

// The integer contents of input i when known: constants at compile time,
// every input at run time.
std::optional<std::vector<int64_t>> known_ints(const InferContext& ctx, size_t i) {
  if (!ctx.has_input(i) || !ctx.input_value(i)) return std::nullopt;
  const Tensor& t = *ctx.input_value(i);
  ctx.check(dtype_is_int(t.dtype()),
            "input " + std::to_string(i) + " must be an integer tensor, got " + std::string(dtype_name(t.dtype())));
  return t.to_int_vector();
}

// A known single-element integer input (a scalar or a 1-element tensor).
std::optional<int64_t> known_scalar(const InferContext& ctx, size_t i, const char* what) {
  auto v = known_ints(ctx, i);
  if (!v) return std::nullopt;
  ctx.check(v->size() == 1, std::string(what) + " must hold one value, got " + std::to_string(v->size()));
  return (*v)[0];
}

// The static length of a 1-D input, so an unknown value still fixes a rank.
std::optional<int64_t> static_length(const InferContext& ctx, size_t i) {
  const Shape& s = ctx.input_shape(i);
  if (s.rank_known && s.rank() == 1 && s[0].is_static()) return s[0].value;
  return std::nullopt;
}

// Normalises an axis in [-rank, rank-1].
int64_t norm_axis(const InferContext& ctx, int64_t a, int64_t rank, const char* what = "axis") {
  ctx.check(a >= -rank && a < rank,
            std::string(what) + " " + std::to_string(a) + " is out of range for rank " + std::to_string(rank));
  return a < 0 ? a + rank : a;
}

// Normalises a list of axes, rejecting duplicates.
std::vector<int64_t> norm_axes(const InferContext& ctx, const std::vector<int64_t>& axes, int64_t rank,
                               const char* what = "axes") {
  std::vector<int64_t> out;
  std::set<int64_t> seen;
  for (int64_t a : axes) {
    int64_t n = norm_axis(ctx, a, rank, what);
    ctx.check(seen.insert(n).second, std::string(what) + " " + ints_str(axes) + " repeat axis " + std::to_string(n));
    out.push_back(n);
  }
  return out;
}

// Product of dims[begin, end): static when all are (or any is 0); a lone
// symbolic dim times static 1s stays symbolic; anything else is unknown.
Dim dim_product(const std::vector<Dim>& dims, size_t begin, size_t end) {
  int64_t p = 1;
  int non_static = 0;
  const Dim* other = nullptr;
  for (size_t i = begin; i < end; ++i) {
    if (dims[i].is_static()) {
      if (!mul_size(p, dims[i].value)) return Dim::unknown();  // absurd: left to the output shape check
    } else {
      ++non_static;
      other = &dims[i];
    }
  }
  if (p == 0 || non_static == 0) return Dim::fixed(p);
  if (non_static == 1 && p == 1) return *other;
  return Dim::unknown();
}

// Two dims that must be equal: the more precise one. Fails if two static dims differ.
Dim unify_dims(const InferContext& ctx, const Dim& a, const Dim& b, const std::string& what) {
  if (a.is_static() && b.is_static()) {
    ctx.check(a.value == b.value, what);
    return a;
  }
  if (a.is_static()) return a;
  if (b.is_static()) return b;
  return a.is_symbolic() ? a : b;
}

// Elements of a slice of a dim of size d, after ONNX's clamping rules.
int64_t slice_count(int64_t start, int64_t end, int64_t step, int64_t d) {
  if (start < 0) start += d;
  if (end < 0) end += d;
  if (step > 0) {
    start = std::min(std::max<int64_t>(start, 0), d);
    end = std::min(std::max<int64_t>(end, 0), d);
    return end > start ? (end - start - 1) / step + 1 : 0;
  }
  start = std::min(std::max<int64_t>(start, 0), d - 1);
  end = std::min(std::max<int64_t>(end, -1), d - 1);
  uint64_t mag = uint64_t(-(step + 1)) + 1;
  return start > end ? int64_t(uint64_t(start - end - 1) / mag + 1) : 0;
}

// Total static elements and symbol multiset of a shape; false if a dim is unknown.
bool split_product(const std::vector<Dim>& dims, int64_t& stat, std::multiset<std::string>& syms) {
  __int128 p = 1;
  for (auto& d : dims) {
    if (d.is_static())
      p = std::min(p * d.value, kMaxElements + 1);
    else if (d.is_symbolic())
      syms.insert(d.symbol);
    else
      return false;
  }
  stat = int64_t(p);
  return true;
}

// ------------------------------------------------------------- reshaping

void infer_reshape(InferContext& ctx) {
  check_index_input(ctx, 1, "shape");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  bool allowzero = ctx.node().attr_int("allowzero", 0) != 0;
  auto target = known_ints(ctx, 1);
  if (!target) {
    auto n = static_length(ctx, 1);
    ctx.set_output(0, dt, n ? unknown_dims(size_t(*n)) : Shape::unknown_rank());
    return;
  }
  const Shape& target_shape = ctx.input_shape(1);
  ctx.check(!target_shape.rank_known || target_shape.rank() == 1, "shape input must be 1-D, got " + target_shape.str());
  Shape out;
  int64_t infer_at = -1;
  bool has_zero = false;
  for (size_t i = 0; i < target->size(); ++i) {
    int64_t v = (*target)[i];
    if (v == -1) {
      ctx.check(infer_at < 0, "shape value " + ints_str(*target) + " has more than one -1");
      infer_at = int64_t(i);
      out.dims.push_back(Dim::unknown());
    } else if (v == 0 && !allowzero) {
      if (!in.rank_known) {
        out.dims.push_back(Dim::unknown());
      } else {
        ctx.check(i < in.rank(), "shape value " + ints_str(*target) + " copies dim " + std::to_string(i) +
                                     " (0) of input " + in.str() + " which has no such dim");
        out.dims.push_back(in[i]);
      }
    } else {
      ctx.check(v >= 0, "shape value " + ints_str(*target) + " has invalid entry " + std::to_string(v));
      has_zero |= v == 0;
      out.dims.push_back(Dim::fixed(v));
    }
  }
  ctx.check(!(allowzero && has_zero && infer_at >= 0),
            "shape value " + ints_str(*target) + " has both 0 and -1 with allowzero=1");
  auto mismatch = [&]() {
    return "cannot reshape input " + in.str() + " to shape value " + ints_str(*target) + " (element counts differ)";
  };
  if (!in.rank_known) {
    ctx.set_output(0, dt, out);
    return;
  }
  int64_t in_stat = 1, out_stat = 1;
  std::multiset<std::string> in_syms, out_syms;
  bool in_ok = split_product(in.dims, in_stat, in_syms);
  std::vector<Dim> others = out.dims;
  if (infer_at >= 0) others.erase(others.begin() + infer_at);
  bool out_ok = split_product(others, out_stat, out_syms);
  if (in_ok && out_ok) {
    // Cancel symbols that appear on both sides.
    for (auto& s : std::multiset<std::string>(out_syms)) {
      auto it = in_syms.find(s);
      if (it != in_syms.end()) {
        in_syms.erase(it);
        out_syms.erase(out_syms.find(s));
      }
    }
    if (infer_at >= 0) {
      if (out_syms.empty() && in_syms.empty()) {
        ctx.check(out_stat != 0 || in_stat == 0, mismatch());
        ctx.check(out_stat != 0, "cannot infer the -1 in shape value " + ints_str(*target) + " for input " + in.str() +
                                     ": the other dims have 0 elements");
        ctx.check(in_stat % out_stat == 0, mismatch());
        out.dims[size_t(infer_at)] = Dim::fixed(in_stat / out_stat);
      } else if (out_syms.empty() && in_syms.size() == 1 && in_stat == out_stat) {
        out.dims[size_t(infer_at)] = Dim::sym(*in_syms.begin());
      }
    } else if (out_syms.empty() && in_syms.empty()) {
      ctx.check(in_stat == out_stat, mismatch());
    }
  }
  ctx.set_output(0, dt, checked(ctx, out));
}

void infer_flatten(InferContext& ctx) {
  const Shape& in = ctx.input_shape(0);
  int64_t axis = ctx.node().attr_int("axis", 1);
  if (!in.rank_known) {
    ctx.set_output(0, ctx.input_dtype(0), unknown_dims(2));
    return;
  }
  int64_t r = int64_t(in.rank());
  ctx.check(axis >= -r && axis <= r, "axis " + std::to_string(axis) + " is out of range for input " + in.str());
  if (axis < 0) axis += r;
  Shape out({dim_product(in.dims, 0, size_t(axis)), dim_product(in.dims, size_t(axis), size_t(r))});
  ctx.set_output(0, ctx.input_dtype(0), out);
}

void infer_squeeze(InferContext& ctx) {
  check_index_input(ctx, 1, "axes");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  if (ctx.has_input(1)) {
    auto axes = known_ints(ctx, 1);
    if (!axes || !in.rank_known) {
      auto n = static_length(ctx, 1);
      bool rank_ok = in.rank_known && n && int64_t(in.rank()) >= *n;
      ctx.set_output(0, dt, rank_ok ? unknown_dims(in.rank() - size_t(*n)) : Shape::unknown_rank());
      return;
    }
    std::vector<int64_t> ax = norm_axes(ctx, *axes, int64_t(in.rank()));
    Shape out;
    for (size_t i = 0; i < in.rank(); ++i) {
      bool squeezed = std::find(ax.begin(), ax.end(), int64_t(i)) != ax.end();
      if (!squeezed) {
        out.dims.push_back(in[i]);
        continue;
      }
      ctx.check(!in[i].is_static() || in[i].value == 1,
                "cannot squeeze axis " + std::to_string(i) + " of size " + in[i].str() + " (input " + in.str() + ")");
    }
    ctx.set_output(0, dt, out);
    return;
  }
  // No axes: drop every dim of size 1; a non-static dim might be 1 in some run.
  if (!in.is_static()) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    return;
  }
  Shape out;
  for (auto& d : in.dims)
    if (d.value != 1) out.dims.push_back(d);
  ctx.set_output(0, dt, out);
}

void infer_unsqueeze(InferContext& ctx) {
  check_index_input(ctx, 1, "axes");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  auto axes = known_ints(ctx, 1);
  if (!axes || !in.rank_known) {
    auto n = static_length(ctx, 1);
    ctx.set_output(0, dt, in.rank_known && n ? unknown_dims(in.rank() + size_t(*n)) : Shape::unknown_rank());
    return;
  }
  int64_t out_rank = int64_t(in.rank() + axes->size());
  std::vector<int64_t> ax = norm_axes(ctx, *axes, out_rank);
  Shape out;
  size_t next = 0;
  for (int64_t i = 0; i < out_rank; ++i) {
    if (std::find(ax.begin(), ax.end(), i) != ax.end())
      out.dims.push_back(Dim::fixed(1));
    else
      out.dims.push_back(in[next++]);
  }
  ctx.set_output(0, dt, out);
}

void infer_transpose(InferContext& ctx) {
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  bool has_perm = ctx.node().has_attr("perm");
  if (!in.rank_known) {
    ctx.set_output(0, dt, has_perm ? unknown_dims(ctx.node().attr_ints("perm").size()) : Shape::unknown_rank());
    return;
  }
  size_t r = in.rank();
  std::vector<int64_t> perm = ctx.node().attr_ints("perm");
  if (!has_perm)
    for (size_t i = 0; i < r; ++i) perm.push_back(int64_t(r - 1 - i));
  ctx.check(perm.size() == r, "perm " + ints_str(perm) + " does not match input " + in.str());
  std::vector<bool> used(r, false);
  Shape out;
  for (int64_t p : perm) {
    ctx.check(p >= 0 && p < int64_t(r) && !used[size_t(p)],
              "perm " + ints_str(perm) + " is not a permutation of the axes of " + in.str());
    used[size_t(p)] = true;
    out.dims.push_back(in[size_t(p)]);
  }
  ctx.set_output(0, dt, out);
}

// ------------------------------------------------------ joining/splitting

void infer_concat(InferContext& ctx) {
  ctx.check(ctx.node().has_attr("axis"), "attribute 'axis' is required");
  int64_t axis = ctx.node().attr_int("axis", 0);
  DType dt = DType::undefined;
  const Shape* first = nullptr;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const TensorType& t = ctx.input_type(i);
    if (dt == DType::undefined) dt = t.dtype;
    ctx.check(t.dtype == DType::undefined || t.dtype == dt, "input " + std::to_string(i) + " is " +
                                                                std::string(dtype_name(t.dtype)) + " but input 0 is " +
                                                                std::string(dtype_name(dt)));
    if (!first && t.shape.rank_known) first = &t.shape;
  }
  if (!first) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    return;
  }
  int64_t r = int64_t(first->rank());
  int64_t a = norm_axis(ctx, axis, r);
  Shape out = *first;
  int64_t axis_static = 0;
  int axis_non_static = 0;
  Dim axis_other;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Shape& s = ctx.input_shape(i);
    if (!s.rank_known) {
      ++axis_non_static;
      continue;
    }
    ctx.check(int64_t(s.rank()) == r, "input " + std::to_string(i) + " has shape " + s.str() +
                                          " but another input has rank " + std::to_string(r));
    for (int64_t d = 0; d < r; ++d) {
      if (d == a) continue;
      out[size_t(d)] = unify_dims(ctx, out[size_t(d)], s[size_t(d)],
                                  "input " + std::to_string(i) + " has shape " + s.str() + ", which differs from " +
                                      first->str() + " off axis " + std::to_string(a));
    }
    if (s[size_t(a)].is_static()) {
      ctx.check(add_size(axis_static, s[size_t(a)].value),
                "the inputs' sizes along axis " + std::to_string(a) + " add up to more than 2^62");
    } else {
      ++axis_non_static;
      axis_other = s[size_t(a)];
    }
  }
  if (axis_non_static == 0)
    out[size_t(a)] = Dim::fixed(axis_static);
  else if (axis_non_static == 1 && axis_static == 0)
    out[size_t(a)] = axis_other;
  else
    out[size_t(a)] = Dim::unknown();
  ctx.set_output(0, dt, out);
}

void infer_split(InferContext& ctx) {
  check_index_input(ctx, 1, "split");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  const Node& n = ctx.node();
  int64_t nout = int64_t(ctx.num_outputs());
  bool has_num = n.has_attr("num_outputs");
  if (has_num) {
    int64_t num = n.attr_int("num_outputs", 0);
    ctx.check(!ctx.has_input(1), "has both the 'split' input and the 'num_outputs' attribute");
    ctx.check(num >= 1 && num == nout,
              "num_outputs is " + std::to_string(num) + " but the node has " + std::to_string(nout) + " outputs");
  }
  if (!in.rank_known) {
    for (int64_t i = 0; i < nout; ++i) ctx.set_output(size_t(i), dt, Shape::unknown_rank());
    return;
  }
  int64_t a = norm_axis(ctx, n.attr_int("axis", 0), int64_t(in.rank()));
  const Dim& d = in[size_t(a)];
  std::vector<Dim> sizes(size_t(nout), Dim::unknown());
  if (ctx.has_input(1)) {
    if (auto split = known_ints(ctx, 1)) {
      ctx.check(int64_t(split->size()) == nout, "split " + ints_str(*split) + " has " + std::to_string(split->size()) +
                                                    " entries for " + std::to_string(nout) + " outputs");
      int64_t sum = 0;
      for (int64_t s : *split) {
        ctx.check(s >= 0, "split " + ints_str(*split) + " has a negative size");
        ctx.check(add_size(sum, s), "split " + ints_str(*split) + " adds up to more than 2^62");
      }
      ctx.check(!d.is_static() || d.value == sum,
                "split " + ints_str(*split) + " does not add up to dim " + std::to_string(a) + " of input " + in.str());
      for (int64_t i = 0; i < nout; ++i) sizes[size_t(i)] = Dim::fixed((*split)[size_t(i)]);
    }
  } else if (d.is_static()) {
    // Equal parts; when uneven every part is ceil(dim/n) and the last takes the rest.
    int64_t chunk = d.value % nout == 0 ? d.value / nout : d.value / nout + 1;
    int64_t last = d.value - chunk * (nout - 1);
    ctx.check(last >= 0, "cannot split dim " + std::to_string(a) + " of input " + in.str() + " into " +
                             std::to_string(nout) + " parts");
    for (int64_t i = 0; i < nout; ++i) sizes[size_t(i)] = Dim::fixed(i + 1 < nout ? chunk : last);
  } else if (nout == 1) {
    sizes[0] = d;
  }
  for (int64_t i = 0; i < nout; ++i) {
    Shape s = in;
    s[size_t(a)] = sizes[size_t(i)];
    ctx.set_output(size_t(i), dt, s);
  }
}

void infer_slice(InferContext& ctx) {
  for (size_t i = 1; i < 5; ++i) check_index_input(ctx, i, "starts/ends/axes/steps");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  if (!in.rank_known) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    return;
  }
  int64_t r = int64_t(in.rank());
  auto starts = known_ints(ctx, 1), ends = known_ints(ctx, 2);
  auto axes = ctx.has_input(3) ? known_ints(ctx, 3) : std::nullopt;
  auto steps = ctx.has_input(4) ? known_ints(ctx, 4) : std::nullopt;
  bool axes_known = !ctx.has_input(3) || axes;
  if (!starts || !ends || !axes_known || (ctx.has_input(4) && !steps)) {
    Shape out = unknown_dims(size_t(r));
    if (ctx.has_input(3) && axes) {  // axes known: the others pass through
      out = in;
      for (int64_t ax : norm_axes(ctx, *axes, r)) out[size_t(ax)] = Dim::unknown();
    }
    ctx.set_output(0, dt, out);
    return;
  }
  size_t n = starts->size();
  ctx.check(ends->size() == n, "starts " + ints_str(*starts) + " and ends " + ints_str(*ends) + " differ in length");
  if (!axes) {
    axes.emplace();
    for (size_t i = 0; i < n; ++i) axes->push_back(int64_t(i));
  }
  if (!steps) steps = std::vector<int64_t>(n, 1);
  ctx.check(axes->size() == n && steps->size() == n, "starts, ends, axes and steps differ in length");
  std::vector<int64_t> ax = norm_axes(ctx, *axes, r);
  Shape out = in;
  constexpr int64_t kToEnd = INT32_MAX;  // ends at or past this mean "to the end"
  for (size_t i = 0; i < n; ++i) {
    int64_t st = (*starts)[i], en = (*ends)[i], step = (*steps)[i];
    ctx.check(step != 0, "steps " + ints_str(*steps) + " contain 0");
    const Dim& d = in[size_t(ax[i])];
    if (d.is_static()) {
      out[size_t(ax[i])] = Dim::fixed(slice_count(st, en, step, d.value));
    } else {
      bool whole_forward = step == 1 && st == 0 && en >= kToEnd;
      bool whole_backward = step == -1 && (st == -1 || st >= kToEnd) && en <= -kToEnd;
      out[size_t(ax[i])] = whole_forward || whole_backward ? d : Dim::unknown();
    }
  }
  ctx.set_output(0, dt, out);
}

// ------------------------------------------------------------- indexing

// Fails if a known index is outside [-size, size-1] on a static axis.
void check_indices(const InferContext& ctx, size_t idx_input, const Dim& d, const char* axis_what, const Shape& data) {
  if (!d.is_static()) return;
  auto idx = known_ints(ctx, idx_input);
  if (!idx) return;
  for (int64_t v : *idx)
    ctx.check(v >= -d.value && v < d.value, "index " + std::to_string(v) + " is out of range for " + axis_what +
                                                " of size " + std::to_string(d.value) + " (data " + data.str() +
                                                ", indices " + ctx.input_shape(idx_input).str() + ")");
}

void infer_gather(InferContext& ctx) {
  check_index_input(ctx, 1, "indices");
  const Shape& data = ctx.input_shape(0);
  const Shape& idx = ctx.input_shape(1);
  DType dt = ctx.input_dtype(0);
  if (!data.rank_known || !idx.rank_known) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    return;
  }
  ctx.check(data.rank() >= 1, "data must have rank >= 1, got " + data.str());
  int64_t a = norm_axis(ctx, ctx.node().attr_int("axis", 0), int64_t(data.rank()));
  check_indices(ctx, 1, data[size_t(a)], "gather axis", data);
  Shape out;
  for (int64_t i = 0; i < a; ++i) out.dims.push_back(data[size_t(i)]);
  for (auto& d : idx.dims) out.dims.push_back(d);
  for (size_t i = size_t(a) + 1; i < data.rank(); ++i) out.dims.push_back(data[i]);
  ctx.set_output(0, dt, out);
}

void infer_gather_elements(InferContext& ctx) {
  check_index_input(ctx, 1, "indices");
  const Shape& data = ctx.input_shape(0);
  const Shape& idx = ctx.input_shape(1);
  DType dt = ctx.input_dtype(0);
  if (data.rank_known) {
    ctx.check(data.rank() >= 1, "data must have rank >= 1, got " + data.str());
    int64_t a = norm_axis(ctx, ctx.node().attr_int("axis", 0), int64_t(data.rank()));
    ctx.check(!idx.rank_known || idx.rank() == data.rank(),
              "indices " + idx.str() + " and data " + data.str() + " differ in rank");
    check_indices(ctx, 1, data[size_t(a)], "gather axis", data);
  }
  ctx.set_output(0, dt, idx);
}

void infer_gather_nd(InferContext& ctx) {
  check_index_input(ctx, 1, "indices");
  const Shape& data = ctx.input_shape(0);
  const Shape& idx = ctx.input_shape(1);
  DType dt = ctx.input_dtype(0);
  int64_t b = ctx.node().attr_int("batch_dims", 0);
  if (!data.rank_known || !idx.rank_known) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    return;
  }
  int64_t r = int64_t(data.rank()), q = int64_t(idx.rank());
  ctx.check(r >= 1 && q >= 1, "data " + data.str() + " and indices " + idx.str() + " need rank >= 1");
  ctx.check(b >= 0 && b < std::min(q, r), "batch_dims " + std::to_string(b) + " must be below the ranks of data " +
                                              data.str() + " and indices " + idx.str());
  const Dim& kd = idx[size_t(q - 1)];
  if (!kd.is_static()) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    return;
  }
  int64_t k = kd.value;
  ctx.check(k >= 1 && k <= r - b, "indices " + idx.str() + " index tuples of length " + std::to_string(k) +
                                      " do not fit data " + data.str() + " with batch_dims " + std::to_string(b));
  Shape out;
  for (int64_t i = 0; i < q - 1; ++i) {
    Dim d = idx[size_t(i)];
    if (i < b)
      d = unify_dims(ctx, data[size_t(i)], d,
                     "batch dims of data " + data.str() + " and indices " + idx.str() + " differ");
    out.dims.push_back(d);
  }
  for (int64_t i = b + k; i < r; ++i) out.dims.push_back(data[size_t(i)]);
  ctx.set_output(0, dt, out);
}

void check_reduction(const InferContext& ctx) {
  std::string red = ctx.node().attr_string("reduction", "none");
  ctx.check(red == "none" || red == "add" || red == "mul" || red == "max" || red == "min",
            "unknown reduction '" + red + "'");
}

void check_updates_dtype(const InferContext& ctx) {
  DType a = ctx.input_dtype(0), u = ctx.input_dtype(2);
  ctx.check(a == DType::undefined || u == DType::undefined || a == u,
            "updates are " + std::string(dtype_name(u)) + " but data is " + std::string(dtype_name(a)));
}

void infer_scatter_elements(InferContext& ctx) {
  check_index_input(ctx, 1, "indices");
  check_reduction(ctx);
  check_updates_dtype(ctx);
  const Shape& data = ctx.input_shape(0);
  const Shape& idx = ctx.input_shape(1);
  const Shape& upd = ctx.input_shape(2);
  if (data.rank_known) {
    ctx.check(data.rank() >= 1, "data must have rank >= 1, got " + data.str());
    int64_t a = norm_axis(ctx, ctx.node().attr_int("axis", 0), int64_t(data.rank()));
    ctx.check(!idx.rank_known || idx.rank() == data.rank(),
              "indices " + idx.str() + " and data " + data.str() + " differ in rank");
    check_indices(ctx, 1, data[size_t(a)], "scatter axis", data);
  }
  if (idx.rank_known && upd.rank_known) {
    ctx.check(idx.rank() == upd.rank(), "indices " + idx.str() + " and updates " + upd.str() + " differ in shape");
    for (size_t i = 0; i < idx.rank(); ++i)
      unify_dims(ctx, idx[i], upd[i], "indices " + idx.str() + " and updates " + upd.str() + " differ in shape");
  }
  ctx.set_output(0, ctx.input_dtype(0), data);
}

void infer_scatter_nd(InferContext& ctx) {
  check_index_input(ctx, 1, "indices");
  check_reduction(ctx);
  check_updates_dtype(ctx);
  const Shape& data = ctx.input_shape(0);
  const Shape& idx = ctx.input_shape(1);
  const Shape& upd = ctx.input_shape(2);
  if (data.rank_known && idx.rank_known) {
    int64_t r = int64_t(data.rank()), q = int64_t(idx.rank());
    ctx.check(r >= 1 && q >= 1, "data " + data.str() + " and indices " + idx.str() + " need rank >= 1");
    const Dim& kd = idx[size_t(q - 1)];
    if (kd.is_static()) {
      int64_t k = kd.value;
      ctx.check(k >= 1 && k <= r, "indices " + idx.str() + " index tuples of length " + std::to_string(k) +
                                      " do not fit data " + data.str());
      if (upd.rank_known) {
        std::string msg = "updates " + upd.str() + " must have shape indices[:-1] ++ data[" + std::to_string(k) +
                          ":] (indices " + idx.str() + ", data " + data.str() + ")";
        ctx.check(int64_t(upd.rank()) == q - 1 + r - k, msg);
        for (int64_t i = 0; i < q - 1; ++i) unify_dims(ctx, idx[size_t(i)], upd[size_t(i)], msg);
        for (int64_t i = k; i < r; ++i) unify_dims(ctx, data[size_t(i)], upd[size_t(q - 1 + i - k)], msg);
      }
    }
  }
  ctx.set_output(0, ctx.input_dtype(0), data);
}

// ------------------------------------------------------------ broadcasting

void infer_expand(InferContext& ctx) {
  check_index_input(ctx, 1, "shape");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  auto target = known_ints(ctx, 1);
  if (!target) {
    auto n = static_length(ctx, 1);
    if (!n || !in.rank_known) {
      ctx.set_output(0, dt, Shape::unknown_rank());
      return;
    }
    size_t r = std::max(in.rank(), size_t(*n));
    Shape out = unknown_dims(r);
    for (size_t i = 0; i < in.rank(); ++i) {
      const Dim& d = in[i];
      if (d.is_static() && d.value != 1) out[r - in.rank() + i] = d;
    }
    ctx.set_output(0, dt, out);
    return;
  }
  for (int64_t v : *target) ctx.check(v >= 0, "shape value " + ints_str(*target) + " has a negative dim");
  ctx.set_output(0, dt, checked(ctx, broadcast_shapes(ctx, in, Shape::of(*target))));
}

void infer_tile(InferContext& ctx) {
  check_index_input(ctx, 1, "repeats");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  auto reps = known_ints(ctx, 1);
  if (!in.rank_known) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    return;
  }
  if (!reps) {
    ctx.set_output(0, dt, unknown_dims(in.rank()));
    return;
  }
  ctx.check(reps->size() == in.rank(), "repeats " + ints_str(*reps) + " do not match input " + in.str());
  Shape out;
  for (size_t i = 0; i < in.rank(); ++i) {
    int64_t rep = (*reps)[i];
    ctx.check(rep >= 0, "repeats " + ints_str(*reps) + " has a negative entry");
    const Dim& d = in[i];
    if (d.is_static() || rep == 0) {
      __int128 size = d.is_static() ? __int128(d.value) * rep : 0;
      ctx.check(size <= kMaxElements, "repeats " + ints_str(*reps) + " make input " + in.str() + " too large");
      out.dims.push_back(Dim::fixed(int64_t(size)));
    } else {
      out.dims.push_back(rep == 1 ? d : Dim::unknown());
    }
  }
  ctx.set_output(0, dt, checked(ctx, out));
}

// ------------------------------------------------------- shape and values

void infer_shape(InferContext& ctx) {
  const Shape& in = ctx.input_shape(0);
  if (!in.rank_known) {
    ctx.set_output(0, DType::i64, unknown_dims(1));
    return;
  }
  int64_t r = int64_t(in.rank());
  auto clamp_axis = [&](int64_t a) { return std::min(std::max<int64_t>(a < 0 ? a + r : a, 0), r); };
  int64_t start = clamp_axis(ctx.node().attr_int("start", 0));
  int64_t end = clamp_axis(ctx.node().attr_int("end", r));
  ctx.set_output(0, DType::i64, Shape::of({std::max<int64_t>(end - start, 0)}));
}

void infer_size(InferContext& ctx) {
  ctx.input_type(0);
  ctx.set_output(0, DType::i64, Shape());
}

void infer_range(InferContext& ctx) {
  DType dt = ctx.input_dtype(0);
  for (size_t i = 1; i < 3; ++i)
    ctx.check(ctx.input_dtype(i) == dt || ctx.input_dtype(i) == DType::undefined,
              "start, limit and delta must have one dtype, got " + std::string(dtype_name(dt)) + " and " +
                  std::string(dtype_name(ctx.input_dtype(i))));
  ctx.check(dt == DType::undefined || dt == DType::f32 || dt == DType::f64 || dt == DType::f16 || dt == DType::bf16 ||
                dt == DType::i16 || dt == DType::i32 || dt == DType::i64,
            "unsupported dtype " + std::string(dtype_name(dt)));
  int64_t stash = ctx.node().attr_int("stash_type", 1);
  ctx.check(stash == 1 || stash == 11, "stash_type must be FLOAT (1) or DOUBLE (11), got " + std::to_string(stash));
  const Tensor* v[3] = {ctx.input_value(0), ctx.input_value(1), ctx.input_value(2)};
  if (!v[0] || !v[1] || !v[2]) {
    ctx.set_output(0, dt, unknown_dims(1));
    return;
  }
  for (auto* t : v) ctx.check(t->numel() == 1, "start, limit and delta must be scalars, got " + dims_str(t->dims()));
  int64_t n;
  if (dtype_is_int(dt)) {
    int64_t start = v[0]->get_int(0), limit = v[1]->get_int(0), delta = v[2]->get_int(0);
    ctx.check(delta != 0, "delta is 0");
    __int128 span = __int128(limit) - start;
    __int128 q = span / delta;
    if (q * delta != span && ((span > 0) == (delta > 0))) ++q;  // ceil
    ctx.check(q <= kMaxElements, "range from " + std::to_string(start) + " to " + std::to_string(limit) + " by " +
                                     std::to_string(delta) + " is too long");
    n = int64_t(std::max<__int128>(q, 0));
  } else {
    double start = v[0]->get_double(0), limit = v[1]->get_double(0), delta = v[2]->get_double(0);
    ctx.check(delta != 0, "delta is 0");
    double c = std::ceil((limit - start) / delta);
    ctx.check(std::isfinite(c), "start " + std::to_string(start) + ", limit " + std::to_string(limit) + ", delta " +
                                    std::to_string(delta) + " give no finite length");
    ctx.check(c < 1e12, "range of " + std::to_string(c) + " elements is too long");
    n = c > 0 ? int64_t(c) : 0;
  }
  ctx.set_output(0, dt, Shape::of({n}));
}

// Dims from a known 1-D shape input, or the rank from its length.
Shape shape_from_input(InferContext& ctx, size_t i) {
  check_index_input(ctx, i, "shape");
  if (auto v = known_ints(ctx, i)) {
    for (int64_t d : *v) ctx.check(d >= 0, "shape value " + ints_str(*v) + " has a negative dim");
    return checked(ctx, Shape::of(*v));
  }
  auto n = static_length(ctx, i);
  return n ? unknown_dims(size_t(*n)) : Shape::unknown_rank();
}

void infer_constant_of_shape(InferContext& ctx) {
  DType dt = DType::f32;
  if (const Tensor* v = ctx.node().attr_tensor("value")) {
    ctx.check(v->numel() == 1, "attribute 'value' must hold one element, got " + dims_str(v->dims()));
    dt = v->dtype();
  }
  ctx.set_output(0, dt, shape_from_input(ctx, 0));
}

void infer_constant(InferContext& ctx) {
  const Node& n = ctx.node();
  int count = 0;
  for (const char* k : {"value", "value_float", "value_floats", "value_int", "value_ints", "value_string",
                        "value_strings", "sparse_value"})
    count += n.has_attr(k);
  ctx.check(count == 1, "needs exactly one value attribute, has " + std::to_string(count));
  if (const Tensor* t = n.attr_tensor("value"))
    ctx.set_output(0, t->dtype(), Shape::of(t->dims()));
  else if (n.has_attr("value_float"))
    ctx.set_output(0, DType::f32, Shape());
  else if (n.has_attr("value_floats"))
    ctx.set_output(0, DType::f32, Shape::of({int64_t(n.attr_floats("value_floats").size())}));
  else if (n.has_attr("value_int"))
    ctx.set_output(0, DType::i64, Shape());
  else if (n.has_attr("value_ints"))
    ctx.set_output(0, DType::i64, Shape::of({int64_t(n.attr_ints("value_ints").size())}));
  else
    ctx.fail("string and sparse constants are not supported");
}

void infer_eye_like(InferContext& ctx) {
  const Shape& in = ctx.input_shape(0);
  ctx.check(!in.rank_known || in.rank() == 2, "input must be 2-D, got " + in.str());
  DType dt = ctx.input_dtype(0);
  if (ctx.node().has_attr("dtype")) {
    int64_t code = ctx.node().attr_int("dtype", 0);
    auto t = dtype_from_onnx(int32_t(code));
    ctx.check(t.has_value(), "unsupported dtype " + onnx_dtype_name(int32_t(code)));
    dt = *t;
  }
  ctx.set_output(0, dt, in.rank_known ? in : unknown_dims(2));
}

void infer_non_zero(InferContext& ctx) {
  const Shape& in = ctx.input_shape(0);
  Dim rank = in.rank_known ? Dim::fixed(int64_t(in.rank())) : Dim::unknown();
  Dim count = Dim::unknown();
  if (const Tensor* t = ctx.input_value(0)) {
    int64_t nz = dtype_dispatch(t->dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* p = t->data<T>();
      int64_t c = 0;
      for (int64_t i = 0; i < t->numel(); ++i) c += to_double(p[i]) != 0.0;
      return c;
    });
    count = Dim::fixed(nz);
  }
  ctx.set_output(0, DType::i64, Shape({rank, count}));
}

void infer_one_hot(InferContext& ctx) {
  const Shape& idx = ctx.input_shape(0);
  DType values_dt = ctx.input_dtype(2);
  const Shape& values = ctx.input_shape(2);
  ctx.check(!values.rank_known || values.rank() == 1, "values must be 1-D [off, on], got " + values.str());
  ctx.check(!values.rank_known || !values[0].is_static() || values[0].value == 2,
            "values must hold [off, on], got " + values.str());
  Dim depth = Dim::unknown();
  if (const Tensor* d = ctx.input_value(1)) {
    ctx.check(d->numel() == 1, "depth must be a scalar, got " + dims_str(d->dims()));
    double v = d->get_double(0);
    ctx.check(v >= 0 && v < 1e12, "depth " + std::to_string(v) + " is invalid");
    depth = Dim::fixed(int64_t(v));
  }
  if (!idx.rank_known) {
    ctx.set_output(0, values_dt, Shape::unknown_rank());
    return;
  }
  int64_t r = int64_t(idx.rank());
  int64_t axis = ctx.node().attr_int("axis", -1);
  ctx.check(axis >= -r - 1 && axis <= r, "axis " + std::to_string(axis) + " is out of range for indices " + idx.str());
  if (axis < 0) axis += r + 1;
  Shape out = idx;
  out.dims.insert(out.dims.begin() + axis, depth);
  ctx.set_output(0, values_dt, checked(ctx, out));
}

// --------------------------------------------------------- element-wise-ish

void infer_trilu(InferContext& ctx) {
  check_index_input(ctx, 1, "k");
  const Shape& in = ctx.input_shape(0);
  ctx.check(!in.rank_known || in.rank() >= 2, "input must have rank >= 2, got " + in.str());
  known_scalar(ctx, 1, "k");
  ctx.set_output(0, ctx.input_dtype(0), in);
}

void infer_cum_sum(InferContext& ctx) {
  check_index_input(ctx, 1, "axis");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  ctx.check(dt == DType::undefined || dtype_is_float(dt) ||
                (dtype_is_int(dt) && dt != DType::i8 && dt != DType::u8 && dt != DType::i16 && dt != DType::u16),
            "unsupported dtype " + std::string(dtype_name(dt)));
  if (auto a = known_scalar(ctx, 1, "axis"); a && in.rank_known) norm_axis(ctx, *a, int64_t(in.rank()));
  ctx.set_output(0, dt, in);
}

void infer_pad(InferContext& ctx) {
  check_index_input(ctx, 1, "pads");
  check_index_input(ctx, 3, "axes");
  const Shape& in = ctx.input_shape(0);
  DType dt = ctx.input_dtype(0);
  std::string mode = ctx.node().attr_string("mode", "constant");
  ctx.check(mode == "constant" || mode == "reflect" || mode == "edge" || mode == "wrap", "unknown mode '" + mode + "'");
  if (ctx.has_input(2)) {
    const TensorType& cv = ctx.input_type(2);
    ctx.check(cv.dtype == DType::undefined || dt == DType::undefined || cv.dtype == dt,
              "constant_value is " + std::string(dtype_name(cv.dtype)) + " but data is " + std::string(dtype_name(dt)));
    if (const Tensor* t = ctx.input_value(2))
      ctx.check(t->numel() == 1, "constant_value must be a scalar, got " + dims_str(t->dims()));
  }
  if (!in.rank_known) {
    ctx.set_output(0, dt, Shape::unknown_rank());
    return;
  }
  int64_t r = int64_t(in.rank());
  auto pads = known_ints(ctx, 1);
  std::optional<std::vector<int64_t>> axes;
  if (ctx.has_input(3)) {
    axes = known_ints(ctx, 3);
  } else {
    axes.emplace();
    for (int64_t i = 0; i < r; ++i) axes->push_back(i);
  }
  if (!pads || !axes) {
    ctx.set_output(0, dt, unknown_dims(size_t(r)));
    return;
  }
  std::vector<int64_t> ax = norm_axes(ctx, *axes, r);
  size_t n = ax.size();
  ctx.check(pads->size() == 2 * n,
            "pads " + ints_str(*pads) + " must have 2 entries per padded axis (" + std::to_string(n) + " axes)");
  Shape out = in;
  for (size_t i = 0; i < n; ++i) {
    int64_t begin = (*pads)[i], end = (*pads)[n + i];
    const Dim& d = in[size_t(ax[i])];
    if (d.is_static()) {
      __int128 size = __int128(d.value) + begin + end;
      ctx.check(size >= 0, "pads " + ints_str(*pads) + " remove more than input " + in.str() + " has");
      ctx.check(size <= kMaxElements, "pads " + ints_str(*pads) + " make input " + in.str() + " too large");
      ctx.check(mode == "constant" || d.value > 0 || (begin <= 0 && end <= 0),
                "cannot " + mode + "-pad axis " + std::to_string(ax[i]) + " of size 0 (input " + in.str() + ")");
      out[size_t(ax[i])] = Dim::fixed(int64_t(size));
    } else if (__int128(begin) + end != 0) {
      out[size_t(ax[i])] = Dim::unknown();
    }
  }
  ctx.set_output(0, dt, checked(ctx, out));
}

}  // namespace

void register_tensor_ops(OpRegistry& r) {
  auto add = [&](const char* name, int min_in, int max_in, void (*infer)(InferContext&), const char* doc,
                 int min_out = 1,
                 int max_out = 1) { r.add(make_op_schema(name, min_in, max_in, min_out, max_out, infer, doc)); };
  add("Reshape", 2, 2, infer_reshape,
      "Same data, new shape; 0 copies an input dim (unless allowzero), -1 is inferred.");
  add("Flatten", 1, 1, infer_flatten, "2-D view: dims before `axis` and from `axis` on are multiplied.");
  add("Squeeze", 1, 2, infer_squeeze, "Removes size-1 dims (the given axes, or all).");
  add("Unsqueeze", 2, 2, infer_unsqueeze, "Inserts size-1 dims at the given output axes.");
  add("Transpose", 1, 1, infer_transpose, "Permutes axes (default: reversed).");
  add("Concat", 1, 1 << 20, infer_concat, "Joins inputs along `axis`.");
  add("Split", 1, 2, infer_split, "Splits along `axis` by the `split` sizes or into `num_outputs` parts.", 1, 1 << 20);
  add("Slice", 3, 5, infer_slice, "Strided slice by starts/ends/axes/steps inputs, numpy clamping.");
  add("Gather", 2, 2, infer_gather, "Takes slices along `axis` at the given indices.");
  add("GatherElements", 2, 2, infer_gather_elements, "Element-wise gather along `axis`.");
  add("GatherND", 2, 2, infer_gather_nd, "Gathers slices addressed by index tuples, after `batch_dims`.");
  add("ScatterElements", 3, 3, infer_scatter_elements,
      "Copy of data with updates written along `axis` (optionally reduced).");
  add("ScatterND", 3, 3, infer_scatter_nd,
      "Copy of data with slices addressed by index tuples replaced (optionally reduced).");
  add("Expand", 2, 2, infer_expand, "Broadcasts the input to the given shape.");
  add("Tile", 2, 2, infer_tile, "Repeats the input along each axis.");
  add("Shape", 1, 1, infer_shape, "The input's dims [start, end) as int64.");
  add("Size", 1, 1, infer_size, "The input's element count as an int64 scalar.");
  add("Range", 3, 3, infer_range, "start, start+delta, ... up to limit (exclusive).");
  add("ConstantOfShape", 1, 1, infer_constant_of_shape,
      "A tensor of the given shape filled with `value` (default f32 0).");
  add("Constant", 0, 0, infer_constant, "A constant from value / value_float(s) / value_int(s).");
  add("Trilu", 1, 2, infer_trilu, "Keeps the upper (or lower) triangle of the last two dims, from diagonal k.");
  add("CumSum", 2, 2, infer_cum_sum, "Cumulative sum along an axis (exclusive / reverse options).");
  add("Pad", 2, 4, infer_pad, "Pads (or crops) with constant/reflect/edge/wrap mode.");
  add("EyeLike", 1, 1, infer_eye_like, "2-D tensor with ones on diagonal k.");
  add("NonZero", 1, 1, infer_non_zero, "Indices of nonzero elements, [rank, count].");
  add("OneHot", 3, 3, infer_one_hot, "One-hot encoding with [off, on] values along `axis`.");
}

}  // namespace cb
