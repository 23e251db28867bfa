// Reference kernels that walk along axes of their input: Trilu (keeps a
// triangle of the last two dims, row by row with memcpy/memset) and CumSum
// (running sums; f16/bf16 accumulate in float, integers in 64 bits).
#include <type_traits>

#include "backends/reference/reference_backend.h"
#include "backends/reference/tensor_copy.h"

namespace cb {
namespace {

void trilu_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  size_t r = in.rank(), esize = dtype_size(in.dtype());
  int64_t rows = in.dim(r - 2), cols = in.dim(r - 1);
  int64_t k = ctx.inputs.size() > 1 && ctx.inputs[1] ? ctx.inputs[1]->get_int(0) : 0;
  k = std::min(std::max(k, -rows - 1), cols + 1);  // beyond this every row is all kept or all zero
  bool upper = ctx.node.attr_int("upper", 1) != 0;
  int64_t mats = dims_product(in.dims(), 0, r - 2);
  const uint8_t* src = bytes_of(in);
  uint8_t* dst = bytes_of(out);
  for (int64_t m = 0; m < mats * rows; ++m) {
    int64_t i = m % rows;
    // Upper keeps columns j >= i + k; lower keeps j <= i + k.
    int64_t keep_from = upper ? std::min(std::max<int64_t>(i + k, 0), cols) : 0;
    int64_t keep_to = upper ? cols : std::min(std::max<int64_t>(i + k + 1, 0), cols);
    size_t row = size_t(m * cols) * esize;
    std::memset(dst + row, 0, size_t(cols) * esize);
    if (keep_to > keep_from)
      std::memcpy(dst + row + size_t(keep_from) * esize, src + row + size_t(keep_from) * esize,
                  size_t(keep_to - keep_from) * esize);
  }
}

template <typename T>
constexpr bool is_half_type = std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>;

template <typename T>
using Accumulator = std::conditional_t<
    is_half_type<T>, float,
    std::conditional_t<std::is_floating_point_v<T>, T, std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>>;

template <typename T>
Accumulator<T> widen(T v) {
  if constexpr (is_half_type<T>)
    return float(to_double(v));
  else
    return Accumulator<T>(v);
}

template <typename T>
T narrow(Accumulator<T> v) {
  if constexpr (is_half_type<T>)
    return from_double<T>(v);
  else
    return T(v);
}

void cum_sum_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  CB_CHECK(ctx.in(1).numel() == 1, ctx.node.describe()
                                       << ": axis must be a scalar, got " << dims_str(ctx.in(1).dims()));
  int64_t rank = int64_t(in.rank());
  int64_t a = ctx.in(1).get_int(0);
  CB_CHECK(a >= -rank && a < rank, ctx.node.describe()
                                       << ": axis " << a << " is out of range for input " << dims_str(in.dims()));
  if (a < 0) a += rank;
  bool exclusive = ctx.node.attr_int("exclusive", 0) != 0, reverse = ctx.node.attr_int("reverse", 0) != 0;
  int64_t outer = dims_product(in.dims(), 0, size_t(a)), n = in.dim(size_t(a));
  int64_t inner = dims_product(in.dims(), size_t(a) + 1, in.rank());
  dtype_dispatch(in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      CB_FAIL(ctx.node.describe() << ": CumSum does not support bool");
    } else {
      using A = Accumulator<T>;
      const T* src = in.data<T>();
      T* dst = out.data<T>();
      std::vector<A> acc(static_cast<size_t>(inner));
      for (int64_t o = 0; o < outer; ++o) {
        std::fill(acc.begin(), acc.end(), A(0));
        for (int64_t s = 0; s < n; ++s) {
          int64_t pos = reverse ? n - 1 - s : s;
          int64_t base = (o * n + pos) * inner;
          for (int64_t i = 0; i < inner; ++i) {
            A x = widen(src[base + i]);
            if (exclusive) {
              dst[base + i] = narrow<T>(acc[size_t(i)]);
              acc[size_t(i)] += x;
            } else {
              acc[size_t(i)] += x;
              dst[base + i] = narrow<T>(acc[size_t(i)]);
            }
          }
        }
      }
    }
  });
}

}  // namespace

void register_reference_tensor_scan(KernelTable& t) {
  t.add("Trilu", trilu_kernel);
  t.add("CumSum", cum_sum_kernel);
}

}  // namespace cb
