// Building blocks for elementwise kernels: dispatch over a list of C types,
// the arithmetic type used for each storage type (f16/bf16 compute in float),
// dtype-to-dtype value conversion with Cast semantics, and broadcasting loop
// drivers whose innermost loop is contiguous so the compiler can vectorise it.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "backends/backend.h"
#include "backends/reference/kernel_util.h"
#include "support/error.h"

namespace cb {

// ---- Dispatch over a list of C types -------------------------------------

template <typename... Ts>
struct TypeList {};
using FloatTypes = TypeList<float, double, Half, BFloat16>;
using SignedIntTypes = TypeList<int64_t, int32_t, int16_t, int8_t>;
using IntTypes = TypeList<int64_t, int32_t, int16_t, int8_t, uint64_t, uint32_t, uint16_t, uint8_t>;
using SignedNumericTypes = TypeList<float, double, Half, BFloat16, int64_t, int32_t, int16_t, int8_t>;
using NumericTypes =
    TypeList<float, double, Half, BFloat16, int64_t, int32_t, int16_t, int8_t, uint64_t, uint32_t, uint16_t, uint8_t>;
using AllTypes = TypeList<float, double, Half, BFloat16, int64_t, int32_t, int16_t, int8_t, uint64_t, uint32_t,
                          uint16_t, uint8_t, bool>;
using BoolTypes = TypeList<bool>;

// Calls fn(T{}) for the T in `list` whose dtype is `t`; throws cb::Error naming
// the node otherwise (the schema normally rejects such dtypes first).
template <typename... Ts, typename Fn>
void dispatch(DType t, TypeList<Ts...>, const Node& node, Fn&& fn) {
  bool found = ((t == dtype_of<Ts>() ? (fn(Ts{}), true) : false) || ...);
  CB_CHECK(found, node.describe() << ": dtype " << dtype_name(t) << " is not supported");
}

// ---- Arithmetic type per storage type -------------------------------------

template <typename T>
struct ComputeTypeOf {
  using type = T;
};
template <>
struct ComputeTypeOf<Half> {
  using type = float;
};
template <>
struct ComputeTypeOf<BFloat16> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeTypeOf<T>::type;

template <typename T>
inline compute_t<T> load(T v) {
  return v;
}
template <>
inline float load<Half>(Half v) {
  return half_to_float(v.bits);
}
template <>
inline float load<BFloat16>(BFloat16 v) {
  return bf16_to_float(v.bits);
}

template <typename T, typename C>
inline T store(C v) {
  if constexpr (std::is_same_v<T, Half>)
    return Half{float_to_half(float(v))};
  else if constexpr (std::is_same_v<T, BFloat16>)
    return BFloat16{float_to_bf16(float(v))};
  else
    return static_cast<T>(v);
}

// Loops read and write bool tensors as bytes (0 or 1): GCC does not vectorise
// loads and stores of `bool`, but does of uint8_t.
template <typename T>
using storage_t = std::conditional_t<std::is_same_v<T, bool>, uint8_t, T>;

template <typename T>
constexpr bool is_float_v = std::is_floating_point_v<compute_t<T>>;

// ---- Conversion with ONNX Cast semantics ----------------------------------

// Float to integer: truncates toward zero. Out of range is undefined in ONNX;
// here NaN gives 0 and out-of-range values saturate, so there is no UB.
template <typename To, typename From>
inline To float_to_int(From v) {
  if (std::isnan(v)) return 0;
  double d = std::trunc(double(v));
  if (d <= double(std::numeric_limits<To>::lowest())) return std::numeric_limits<To>::lowest();
  if (d >= double(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
  return static_cast<To>(d);
}

// double to float rounded to odd: truncated toward zero, with the lowest
// mantissa bit set when inexact. Rounding that float to f16/bf16 then gives the
// correctly rounded result of the double (no double-rounding error).
inline float to_float_round_odd(double d) {
  float f = static_cast<float>(d);
  if (std::isnan(d) || std::isinf(f) || double(f) == d) return f;
  if (std::abs(double(f)) > std::abs(d)) f = std::nextafter(f, 0.0f);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits |= 1;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Converts one value between any two supported C types: floats to ints
// truncate, anything to bool is `!= 0` (NaN is true), integers wrap modulo 2^n.
template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else {
    auto x = load(v);  // float for f16/bf16, otherwise the value itself
    using X = decltype(x);
    if constexpr (std::is_same_v<To, bool>)
      return x != X(0);
    else if constexpr (is_float_v<To> && sizeof(To) == 2 && !std::is_same_v<X, float>)
      return store<To>(to_float_round_odd(double(x)));  // f64 or integer to f16/bf16
    else if constexpr (is_float_v<To>)
      return store<To>(static_cast<compute_t<To>>(x));
    else if constexpr (std::is_floating_point_v<X>)
      return float_to_int<To>(x);
    else
      return static_cast<To>(x);
  }
}

// ---- Loop drivers ---------------------------------------------------------

// y[i] = fn(x[i]) over two tensors of the same number of elements.
template <typename In, typename Out, typename Fn>
void unary_map(const Tensor& in, Tensor& out, Fn&& fn) {
  const storage_t<In>* x = in.data<storage_t<In>>();
  storage_t<Out>* y = out.data<storage_t<Out>>();
  int64_t n = out.numel();
  for (int64_t i = 0; i < n; ++i) y[i] = store<storage_t<Out>>(fn(load(x[i])));
}

// A broadcasting loop nest over the output and N inputs, simplified: size-1
// output dims dropped and adjacent dims merged wherever every operand is
// contiguous across them. Operand 0 is the (contiguous) output. The innermost
// dim has stride 1 or 0 in every operand; callers loop over it themselves.
template <size_t N>
struct BroadcastPlan {
  std::vector<int64_t> dims;  // never empty; dims.back() is the row length
  std::array<std::vector<int64_t>, N + 1> strides;

  BroadcastPlan(const std::vector<int64_t>& out_dims, const std::array<const std::vector<int64_t>*, N>& in_dims) {
    std::array<std::vector<int64_t>, N + 1> full;
    full[0] = contiguous_strides(out_dims);
    for (size_t k = 0; k < N; ++k) full[k + 1] = broadcast_strides(*in_dims[k], out_dims);
    // Walk from the innermost dim outwards, merging into the current group when possible.
    for (size_t d = out_dims.size(); d-- > 0;) {
      if (out_dims[d] == 1) continue;
      bool merge = !dims.empty();
      for (size_t k = 0; merge && k <= N; ++k) merge = full[k][d] == strides[k].back() * dims.back();
      if (merge) {
        dims.back() *= out_dims[d];
      } else {
        dims.push_back(out_dims[d]);
        for (size_t k = 0; k <= N; ++k) strides[k].push_back(full[k][d]);
      }
    }
    if (dims.empty()) {
      dims.push_back(1);
      for (auto& s : strides) s.push_back(0);
    }
    std::reverse(dims.begin(), dims.end());
    for (auto& s : strides) std::reverse(s.begin(), s.end());
  }

  int64_t row_length() const { return dims.back(); }
  bool row_contiguous(size_t operand) const { return strides[operand].back() != 0; }

  // Calls row(offsets) for every innermost row, offsets[k] being operand k's
  // element offset at the row's start.
  template <typename RowFn>
  void for_each_row(RowFn&& row) const {
    std::vector<int64_t> outer(dims.begin(), dims.end() - 1);
    std::vector<int64_t> outer_strides[N + 1];
    for (size_t k = 0; k <= N; ++k) outer_strides[k].assign(strides[k].begin(), strides[k].end() - 1);
    for_each_offset(outer, outer_strides, row);
  }
};

// Calls f(std::integer_sequence<bool, S...>{}) where S... are the runtime
// `flags` turned into template arguments (2^N instantiations of f).
template <size_t N, bool... S, typename F>
void with_static_flags(const std::array<bool, N>& flags, const F& f) {
  if constexpr (sizeof...(S) == N)
    f(std::integer_sequence<bool, S...>{});
  else if (flags[sizeof...(S)])
    with_static_flags<N, S..., true>(flags, f);
  else
    with_static_flags<N, S..., false>(flags, f);
}

// One input of a row: it advances (kStep) or repeats one broadcast element,
// which is loaded once, outside the loop, so the loop has no invariant loads
// that might alias the output.
template <bool kStep, typename T>
struct RowInput {
  const T* p;
  compute_t<T> first;
  compute_t<T> operator[](int64_t i) const {
    if constexpr (kStep)
      return load(p[i]);
    else
      return first;
  }
};

// One innermost row of n >= 1 elements: o[i] = fn(in[i]...). With the steps
// known at compile time this is a plain loop the compiler vectorises.
template <bool... Step, typename Out, typename Fn, typename... In>
inline void map_row(int64_t n, Out* o, const Fn& fn, const In*... in) {
  auto loop = [&](auto... row_in) {
    for (int64_t i = 0; i < n; ++i) o[i] = store<Out>(fn(row_in[i]...));
  };
  loop(RowInput<Step, In>{in, load(in[0])}...);
}

// The body every broadcasting map shares: plans the broadcast of `ins` to
// `out` and calls drive(plan, row), where `drive` decides which rows to run
// (all of them, or a range on one thread) and row(offsets, length) maps one
// row: out[off[0] + i] = fn(in_k[off[k + 1] + i or the same element]...).
template <typename Out, typename... In, typename Fn, typename Drive>
void broadcast_map_rows(Tensor& out, const std::array<const Tensor*, sizeof...(In)>& ins, const Fn& fn,
                        const Drive& drive) {
  constexpr size_t N = sizeof...(In);
  if (out.numel() == 0) return;
  std::array<const std::vector<int64_t>*, N> in_dims;
  for (size_t k = 0; k < N; ++k) in_dims[k] = &ins[k]->dims();
  BroadcastPlan<N> plan(out.dims(), in_dims);
  std::array<bool, N> steps;
  for (size_t k = 0; k < N; ++k) steps[k] = plan.row_contiguous(k + 1);
  using Inputs = std::index_sequence_for<In...>;
  auto bases = [&]<size_t... K>(std::index_sequence<K...>) {
    return std::tuple<const storage_t<In>*...>(ins[K]->template data<storage_t<In>>()...);
  }
  (Inputs{});
  storage_t<Out>* o = out.data<storage_t<Out>>();
  with_static_flags<N>(
      steps, [&]<bool... S>(std::integer_sequence<bool, S...>) {
        drive(plan, [&](const int64_t* off, int64_t len) {
          [&]<size_t... K>(std::index_sequence<K...>) {
            map_row<S...>(len, o + off[0], fn, (std::get<K>(bases) + off[K + 1])...);
          }
          (Inputs{});
        });
      });
}

// out = fn(ins...) elementwise with numpy broadcasting; `out` is already sized
// to the broadcast shape. In... are the inputs' C types; fn takes their
// compute_t values (bools arrive as 0/1 bytes). Same-shape inputs become one
// long contiguous row; inputs broadcast along leading dims (bias adds,
// attention masks) become long rows in which each input either advances or
// repeats one element. Other broadcasts fall back to shorter rows.
template <typename Out, typename... In, typename Fn>
void broadcast_map(Tensor& out, const std::array<const Tensor*, sizeof...(In)>& ins, const Fn& fn) {
  broadcast_map_rows<Out, In...>(out, ins, fn, [](const auto& plan, const auto& row) {
    const int64_t n = plan.row_length();
    plan.for_each_row([&](const int64_t* off) { row(off, n); });
  });
}

}  // namespace cb
