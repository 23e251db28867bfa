// Reference kernels for the Reduce* family, ArgMax/ArgMin and TopK.
// Floats accumulate in double, integers in 64-bit integers (wrapping like
// numpy). When the reduced axes form one block of the layout the input is read
// as [outer, R, inner] with a contiguous inner loop; other axis sets go through
// a precomputed list of offsets.
#include "backends/reference/reduction.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/reference/accumulate.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"

namespace cb {

std::vector<bool> reduced_axes(const KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t rank = int64_t(x.rank());
  std::vector<int64_t> axes;
  if (ctx.inputs.size() > 1 && ctx.inputs[1]) axes = ctx.inputs[1]->to_int_vector();
  if (axes.empty()) {
    bool noop = ctx.node.attr_int("noop_with_empty_axes", 0) != 0;
    return std::vector<bool>(x.rank(), !noop);
  }
  std::vector<bool> r(x.rank(), false);
  for (int64_t a : axes) r[size_t(norm_axis(a, rank))] = true;
  return r;
}

bool reduction_block(const std::vector<int64_t>& dims, const std::vector<bool>& is_reduced, ReduceBlock& block) {
  // Size-1 dims may count as reduced or kept; ignore them when looking for a block.
  int first = -1, last = -1;
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i] != 1 && is_reduced[i]) {
      if (first < 0) first = int(i);
      last = int(i);
    }
  for (int i = first; first >= 0 && i <= last; ++i)
    if (dims[size_t(i)] != 1 && !is_reduced[size_t(i)]) return false;
  block = ReduceBlock{};
  for (size_t i = 0; i < dims.size(); ++i) {
    if (first >= 0 && int(i) >= first && int(i) <= last)
      block.reduced *= dims[i];
    else if (first >= 0 && int(i) > last)
      block.inner *= dims[i];
    else
      block.outer *= dims[i];
  }
  return true;
}

namespace {

template <typename T>
AccOf<T> lowest_value() {
  if constexpr (is_float_storage<T>)
    return -std::numeric_limits<double>::infinity();
  else
    return AccOf<T>(std::numeric_limits<T>::lowest());
}
template <typename T>
AccOf<T> highest_value() {
  if constexpr (is_float_storage<T>)
    return std::numeric_limits<double>::infinity();
  else
    return AccOf<T>(std::numeric_limits<T>::max());
}

enum class ReduceKind { sum, mean, max, min, prod, l1, l2, log_sum, log_sum_exp, sum_square };

// The running state of one output element of a reduction.
template <ReduceKind K, typename T>
struct Reducer {
  using A = AccOf<T>;
  A acc = K == ReduceKind::max    ? lowest_value<T>()
          : K == ReduceKind::min  ? highest_value<T>()
          : K == ReduceKind::prod ? A(1)
                                  : A(0);
  // log_sum_exp: acc holds sum(exp(x - running_max)).
  double running_max = -std::numeric_limits<double>::infinity();
  bool saw_nan = false, saw_pos_inf = false;

  void push(A x) {
    if constexpr (K == ReduceKind::sum || K == ReduceKind::mean || K == ReduceKind::log_sum) {
      acc += x;
    } else if constexpr (K == ReduceKind::max) {
      if (x > acc || is_nan(x)) acc = x;
    } else if constexpr (K == ReduceKind::min) {
      if (x < acc || is_nan(x)) acc = x;
    } else if constexpr (K == ReduceKind::prod) {
      acc *= x;
    } else if constexpr (K == ReduceKind::l1) {
      if constexpr (std::is_unsigned_v<A>)
        acc += x;
      else
        acc += x < 0 ? A(-x) : x;
    } else if constexpr (K == ReduceKind::l2 || K == ReduceKind::sum_square) {
      acc += x * x;
    } else if constexpr (K == ReduceKind::log_sum_exp) {
      double v = double(x);
      if (std::isnan(v)) {
        saw_nan = true;
        return;
      }
      if (std::isinf(v)) {
        saw_pos_inf |= v > 0;
        return;
      }  // exp(-inf) adds nothing
      if (v > running_max) {
        acc = A(double(acc) * std::exp(running_max - v) + 1.0);
        running_max = v;
      } else {
        acc = A(double(acc) + std::exp(v - running_max));
      }
    }
  }

  T result(int64_t n) const {
    if constexpr (K == ReduceKind::mean) {
      if constexpr (std::is_floating_point_v<A>)
        return store<T>(acc / double(n));
      else
        return store<T>(n ? A(acc / A(n)) : A(0));
    } else if constexpr (K == ReduceKind::l2) {
      return store<T>(A(std::sqrt(double(acc))));
    } else if constexpr (K == ReduceKind::log_sum) {
      return store<T>(A(std::log(double(acc))));
    } else if constexpr (K == ReduceKind::log_sum_exp) {
      double r = saw_nan       ? std::nan("")
                 : saw_pos_inf ? std::numeric_limits<double>::infinity()
                               : running_max + std::log(double(acc));
      return store<T>(A(r));
    } else {
      return store<T>(acc);
    }
  }
};

// The layout of a reduction: either one block of reduced axes ([outer, R,
// inner]) or a general set (kept dims/strides and offsets of the reduced elements).
struct ReduceLayout {
  bool block = false;
  int64_t outer = 1, reduced = 1, inner = 1;
  std::vector<int64_t> kept_dims, kept_strides, reduced_offsets;
};

ReduceLayout plan_reduction(const std::vector<int64_t>& dims, const std::vector<bool>& is_reduced) {
  ReduceLayout L;
  ReduceBlock b;
  if (reduction_block(dims, is_reduced, b)) {
    L.block = true;
    L.outer = b.outer;
    L.reduced = b.reduced;
    L.inner = b.inner;
    return L;
  }
  std::vector<int64_t> strides = contiguous_strides(dims), rdims, rstrides;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (is_reduced[i]) {
      rdims.push_back(dims[i]);
      rstrides.push_back(strides[i]);
      L.reduced *= dims[i];
    } else {
      L.kept_dims.push_back(dims[i]);
      L.kept_strides.push_back(strides[i]);
    }
  }
  const std::vector<int64_t> rs[1] = {rstrides};
  for_each_offset(rdims, rs, [&](const int64_t* off) { L.reduced_offsets.push_back(off[0]); });
  return L;
}

template <ReduceKind K, typename T>
void reduce_typed(const Tensor& x, Tensor& y, const ReduceLayout& L) {
  const T* in = x.data<T>();
  T* out = y.data<T>();
  if (L.block && L.inner == 1) {
    for (int64_t o = 0; o < L.outer; ++o) {
      Reducer<K, T> r;
      const T* row = in + o * L.reduced;
      for (int64_t k = 0; k < L.reduced; ++k) r.push(load(row[k]));
      out[o] = r.result(L.reduced);
    }
  } else if (L.block) {
    std::vector<Reducer<K, T>> rs(size_t(L.inner));
    for (int64_t o = 0; o < L.outer; ++o) {
      std::fill(rs.begin(), rs.end(), Reducer<K, T>{});
      for (int64_t k = 0; k < L.reduced; ++k) {
        const T* row = in + (o * L.reduced + k) * L.inner;
        for (int64_t i = 0; i < L.inner; ++i) rs[size_t(i)].push(load(row[i]));
      }
      for (int64_t i = 0; i < L.inner; ++i) out[o * L.inner + i] = rs[size_t(i)].result(L.reduced);
    }
  } else {
    const std::vector<int64_t> ks[1] = {L.kept_strides};
    int64_t o = 0;
    for_each_offset(L.kept_dims, ks, [&](const int64_t* off) {
      Reducer<K, T> r;
      for (int64_t ro : L.reduced_offsets) r.push(load(in[off[0] + ro]));
      out[o++] = r.result(L.reduced);
    });
  }
}

template <ReduceKind K>
void reduce_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  ReduceLayout L = plan_reduction(x.dims(), reduced_axes(ctx));
  dtype_dispatch(x.dtype(), [&](auto tag) { reduce_typed<K, decltype(tag)>(x, ctx.out(0), L); });
}

// [outer, n, inner] view of a tensor around one axis.
struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
};
AxisView view_around(const std::vector<int64_t>& dims, int64_t axis) {
  AxisView v;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (int64_t(i) < axis)
      v.outer *= dims[i];
    else if (int64_t(i) == axis)
      v.n = dims[i];
    else
      v.inner *= dims[i];
  }
  return v;
}

// Total order used by ArgMax/ArgMin/TopK: NaN is greater than every number.
template <typename A>
bool less_nan_last(A a, A b) {
  return !is_nan(a) && (is_nan(b) || a < b);
}

template <bool Max, typename T>
void arg_reduce_typed(const Tensor& x, Tensor& y, int64_t axis, bool select_last) {
  AxisView v = view_around(x.dims(), axis);
  const T* in = x.data<T>();
  int64_t* out = y.data<int64_t>();
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t i = 0; i < v.inner; ++i) {
      const T* p = in + o * v.n * v.inner + i;
      auto best = load(p[0]);
      int64_t best_k = 0;
      for (int64_t k = 1; k < v.n; ++k) {
        auto c = load(p[k * v.inner]);
        bool better = Max ? less_nan_last(best, c) : less_nan_last(c, best);
        bool tie = !less_nan_last(best, c) && !less_nan_last(c, best);
        if (better || (select_last && tie)) {
          best = c;
          best_k = k;
        }
      }
      out[o * v.inner + i] = best_k;
    }
}

template <bool Max>
void arg_reduce_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t axis = norm_axis(ctx.node.attr_int("axis", 0), int64_t(x.rank()));
  bool select_last = ctx.node.attr_int("select_last_index", 0) != 0;
  dtype_dispatch(x.dtype(), [&](auto tag) { arg_reduce_typed<Max, decltype(tag)>(x, ctx.out(0), axis, select_last); });
}

template <typename T>
void topk_typed(const Tensor& x, Tensor& values, Tensor& indices, int64_t axis, int64_t k, bool largest) {
  AxisView v = view_around(x.dims(), axis);
  const T* in = x.data<T>();
  T* vals = values.data<T>();
  int64_t* idx = indices.data<int64_t>();
  using A = AccOf<T>;
  std::vector<std::pair<A, int64_t>> items(size_t(v.n));
  // Ties go to the lower index, as ONNX specifies.
  auto before = [largest](const std::pair<A, int64_t>& a, const std::pair<A, int64_t>& b) {
    bool a_first = largest ? less_nan_last(b.first, a.first) : less_nan_last(a.first, b.first);
    bool b_first = largest ? less_nan_last(a.first, b.first) : less_nan_last(b.first, a.first);
    return a_first || (!b_first && a.second < b.second);
  };
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t i = 0; i < v.inner; ++i) {
      const T* p = in + o * v.n * v.inner + i;
      for (int64_t j = 0; j < v.n; ++j) items[size_t(j)] = {load(p[j * v.inner]), j};
      std::partial_sort(items.begin(), items.begin() + k, items.end(), before);
      for (int64_t j = 0; j < k; ++j) {
        int64_t dst = (o * k + j) * v.inner + i;
        vals[dst] = p[items[size_t(j)].second * v.inner];
        idx[dst] = items[size_t(j)].second;
      }
    }
}

void topk_kernel(KernelContext& ctx) {
  const Tensor& x = ctx.in(0);
  int64_t axis = norm_axis(ctx.node.attr_int("axis", -1), int64_t(x.rank()));
  int64_t k = ctx.in(1).get_int(0);
  bool largest = ctx.node.attr_int("largest", 1) != 0;
  dtype_dispatch(x.dtype(), [&](auto tag) { topk_typed<decltype(tag)>(x, ctx.out(0), ctx.out(1), axis, k, largest); });
}

}  // namespace

void register_reference_reduction(KernelTable& t) {
  t.add("ReduceSum", reduce_kernel<ReduceKind::sum>);
  t.add("ReduceMean", reduce_kernel<ReduceKind::mean>);
  t.add("ReduceMax", reduce_kernel<ReduceKind::max>);
  t.add("ReduceMin", reduce_kernel<ReduceKind::min>);
  t.add("ReduceProd", reduce_kernel<ReduceKind::prod>);
  t.add("ReduceL1", reduce_kernel<ReduceKind::l1>);
  t.add("ReduceL2", reduce_kernel<ReduceKind::l2>);
  t.add("ReduceLogSum", reduce_kernel<ReduceKind::log_sum>);
  t.add("ReduceLogSumExp", reduce_kernel<ReduceKind::log_sum_exp>);
  t.add("ReduceSumSquare", reduce_kernel<ReduceKind::sum_square>);
  t.add("ArgMax", arg_reduce_kernel<true>);
  t.add("ArgMin", arg_reduce_kernel<false>);
  t.add("TopK", topk_kernel);
}

}  // namespace cb
