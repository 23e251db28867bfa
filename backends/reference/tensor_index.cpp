// Reference kernels for the indexing ops: Gather, GatherElements, GatherND,
// ScatterElements, ScatterND, OneHot and NonZero. Every index is checked
// against its axis before use (a bad index is a cb::Error naming the node, the
// index and the shapes, never an out-of-bounds read); negative indices count
// from the end. Gather copies whole inner slices with memcpy (the embedding
// lookup of GPT-2 runs through it).
#include <cmath>
#include <type_traits>

#include "backends/reference/reference_backend.h"
#include "backends/reference/tensor_copy.h"

namespace cb {
namespace {

// Normalises index v into [0, size), or throws naming the node and shapes.
int64_t checked_index(const KernelContext& ctx, int64_t v, int64_t size, const char* what) {
  if (v < -size || v >= size) {
    std::string shapes;
    for (size_t i = 0; i < ctx.inputs.size(); ++i)
      if (ctx.inputs[i]) shapes += (shapes.empty() ? "" : ", ") + dims_str(ctx.inputs[i]->dims());
    CB_FAIL(ctx.node.describe() << ": index " << v << " is out of range for " << what << " of size " << size
                                << " (input shapes " << shapes << ")");
  }
  return v < 0 ? v + size : v;
}

void gather_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.in(0);
  Tensor& out = ctx.out(0);
  int64_t axis = norm_axis(ctx.node.attr_int("axis", 0), int64_t(data.rank()));
  int64_t size = data.dim(size_t(axis));
  std::vector<int64_t> idx = ctx.in(1).to_int_vector();
  for (auto& v : idx) v = checked_index(ctx, v, size, "the gather axis");
  size_t inner = size_t(dims_product(data.dims(), size_t(axis) + 1, data.rank())) * dtype_size(data.dtype());
  int64_t outer = dims_product(data.dims(), 0, size_t(axis));
  const uint8_t* src = bytes_of(data);
  uint8_t* dst = bytes_of(out);
  if (inner == 0) return;
  for (int64_t o = 0; o < outer; ++o) {
    const uint8_t* row = src + size_t(o * size) * inner;
    for (int64_t v : idx) {
      std::memcpy(dst, row + size_t(v) * inner, inner);
      dst += inner;
    }
  }
}

// Offsets into data (off the axis) for every position of `indices`, checking
// that indices fit inside data on the other axes.
std::vector<int64_t> element_offsets(const KernelContext& ctx, const Tensor& data, const Tensor& indices,
                                     int64_t axis) {
  CB_CHECK(data.rank() == indices.rank(), ctx.node.describe() << ": data " << dims_str(data.dims()) << " and indices "
                                                              << dims_str(indices.dims()) << " differ in rank");
  for (size_t d = 0; d < data.rank(); ++d)
    CB_CHECK(int64_t(d) == axis || indices.dim(d) <= data.dim(d),
             ctx.node.describe() << ": indices " << dims_str(indices.dims()) << " exceed data " << dims_str(data.dims())
                                 << " on axis " << d);
  std::vector<int64_t> strides = contiguous_strides(data.dims());
  strides[size_t(axis)] = 0;
  std::vector<int64_t> offsets;
  offsets.reserve(size_t(indices.numel()));
  const std::vector<int64_t> s[1] = {strides};
  for_each_offset(indices.dims(), s, [&](const int64_t* off) { offsets.push_back(off[0]); });
  return offsets;
}

void gather_elements_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  int64_t axis = norm_axis(ctx.node.attr_int("axis", 0), int64_t(data.rank()));
  std::vector<int64_t> offsets = element_offsets(ctx, data, indices, axis);
  std::vector<int64_t> idx = indices.to_int_vector();
  int64_t axis_stride = contiguous_strides(data.dims())[size_t(axis)];
  elem_size_dispatch(dtype_size(data.dtype()), [&](auto tag) {
    using E = decltype(tag);
    const E* src = static_cast<const E*>(data.raw());
    E* dst = static_cast<E*>(ctx.out(0).raw());
    for (size_t n = 0; n < idx.size(); ++n)
      dst[n] = src[offsets[n] + checked_index(ctx, idx[n], data.dim(size_t(axis)), "the gather axis") * axis_stride];
  });
}

void gather_nd_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  size_t b = size_t(ctx.node.attr_int("batch_dims", 0));
  size_t q = indices.rank();
  size_t k = size_t(indices.dim(q - 1));
  std::vector<int64_t> idx = indices.to_int_vector();
  std::vector<int64_t> strides = contiguous_strides(data.dims());
  int64_t batches = dims_product(data.dims(), 0, b);
  int64_t tuples = dims_product(indices.dims(), b, q - 1);  // per batch
  size_t esize = dtype_size(data.dtype());
  size_t slice = size_t(dims_product(data.dims(), b + k, data.rank())) * esize;
  int64_t batch_stride = dims_product(data.dims(), b, data.rank());
  uint8_t* dst = bytes_of(ctx.out(0));
  const int64_t* tuple = idx.data();
  for (int64_t bt = 0; bt < batches; ++bt)
    for (int64_t t = 0; t < tuples; ++t, tuple += k) {
      int64_t off = bt * batch_stride;
      for (size_t j = 0; j < k; ++j)
        off += checked_index(ctx, tuple[j], data.dim(b + j), "a data axis") * strides[b + j];
      if (slice) std::memcpy(dst, bytes_of(data) + size_t(off) * esize, slice);
      dst += slice;
    }
}

enum class Reduction { none, add, mul, max, min };

Reduction reduction_of(const Node& n) {
  std::string r = n.attr_string("reduction", "none");
  if (r == "add") return Reduction::add;
  if (r == "mul") return Reduction::mul;
  if (r == "max") return Reduction::max;
  if (r == "min") return Reduction::min;
  CB_CHECK(r == "none", n.describe() << ": unknown reduction '" << r << "'");
  return Reduction::none;
}

template <typename T>
T reduce_pair(T a, T b, Reduction r) {
  if constexpr (std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>) {
    return from_double<T>(reduce_pair<float>(float(to_double(a)), float(to_double(b)), r));
  } else {
    switch (r) {
      case Reduction::add: return T(a + b);
      case Reduction::mul: return T(a * b);
      case Reduction::max: return a < b || a != a ? b : a;  // NaN propagates as in numpy
      case Reduction::min: return b < a || a != a ? b : a;
      default: return b;
    }
  }
}

void scatter_elements_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const Tensor& updates = ctx.in(2);
  Tensor& out = ctx.out(0);
  CB_CHECK(updates.dims() == indices.dims(), ctx.node.describe()
                                                 << ": updates " << dims_str(updates.dims()) << " and indices "
                                                 << dims_str(indices.dims()) << " differ in shape");
  int64_t axis = norm_axis(ctx.node.attr_int("axis", 0), int64_t(data.rank()));
  std::vector<int64_t> offsets = element_offsets(ctx, data, indices, axis);
  std::vector<int64_t> idx = indices.to_int_vector();
  int64_t axis_stride = contiguous_strides(data.dims())[size_t(axis)];
  Reduction red = reduction_of(ctx.node);
  if (data.nbytes()) std::memcpy(out.raw(), data.raw(), data.nbytes());
  dtype_dispatch(data.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* upd = updates.data<T>();
    T* dst = out.data<T>();
    for (size_t n = 0; n < idx.size(); ++n) {
      T& o = dst[offsets[n] + checked_index(ctx, idx[n], data.dim(size_t(axis)), "the scatter axis") * axis_stride];
      o = reduce_pair(o, upd[n], red);
    }
  });
}

void scatter_nd_kernel(KernelContext& ctx) {
  const Tensor& data = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  const Tensor& updates = ctx.in(2);
  Tensor& out = ctx.out(0);
  size_t q = indices.rank();
  size_t k = size_t(indices.dim(q - 1));
  int64_t tuples = dims_product(indices.dims(), 0, q - 1);
  int64_t slice = dims_product(data.dims(), k, data.rank());
  CB_CHECK(updates.numel() == tuples * slice,
           ctx.node.describe() << ": updates " << dims_str(updates.dims()) << " do not match indices "
                               << dims_str(indices.dims()) << " and data " << dims_str(data.dims()));
  std::vector<int64_t> idx = indices.to_int_vector();
  std::vector<int64_t> strides = contiguous_strides(data.dims());
  Reduction red = reduction_of(ctx.node);
  if (data.nbytes()) std::memcpy(out.raw(), data.raw(), data.nbytes());
  dtype_dispatch(data.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* upd = updates.data<T>();
    T* dst = out.data<T>();
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t off = 0;
      for (size_t j = 0; j < k; ++j)
        off += checked_index(ctx, idx[size_t(t) * k + j], data.dim(j), "a data axis") * strides[j];
      const T* u = upd + t * slice;
      if (red == Reduction::none) {
        for (int64_t e = 0; e < slice; ++e) dst[off + e] = u[e];
      } else {
        for (int64_t e = 0; e < slice; ++e) dst[off + e] = reduce_pair(dst[off + e], u[e], red);
      }
    }
  });
}

void one_hot_kernel(KernelContext& ctx) {
  const Tensor& indices = ctx.in(0);
  const Tensor& values = ctx.in(2);
  Tensor& out = ctx.out(0);
  int64_t r = int64_t(indices.rank());
  int64_t axis = ctx.node.attr_int("axis", -1);
  if (axis < 0) axis += r + 1;
  int64_t depth = out.dim(size_t(axis));
  CB_CHECK(values.numel() == 2, ctx.node.describe() << ": values must be [off, on], got " << dims_str(values.dims()));
  size_t esize = dtype_size(values.dtype());
  const uint8_t* off_value = bytes_of(values);
  const uint8_t* on_value = off_value + esize;
  fill_bytes(bytes_of(out), out.numel(), off_value, esize);
  int64_t inner = dims_product(indices.dims(), size_t(axis), indices.rank());
  int64_t outer = dims_product(indices.dims(), 0, size_t(axis));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double v = indices.get_double(o * inner + i);
      if (v < 0) v += double(depth);
      if (v < 0 || v >= double(depth) || v != std::floor(v)) continue;  // out of range: all off
      std::memcpy(bytes_of(out) + size_t((o * depth + int64_t(v)) * inner + i) * esize, on_value, esize);
    }
}

void non_zero_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  size_t r = in.rank();
  int64_t count = out.dim(1);
  int64_t* dst = out.data<int64_t>();
  std::vector<int64_t> coord(r, 0);
  int64_t j = 0;
  dtype_dispatch(in.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* p = in.data<T>();
    for (int64_t n = 0; n < in.numel(); ++n) {
      if (to_double(p[n]) != 0.0) {
        CB_CHECK(j < count, ctx.node.describe() << ": more nonzeros than the inferred " << count);
        for (size_t d = 0; d < r; ++d) dst[int64_t(d) * count + j] = coord[d];
        ++j;
      }
      for (int64_t d = int64_t(r) - 1; d >= 0; --d) {
        if (++coord[size_t(d)] < in.dim(size_t(d))) break;
        coord[size_t(d)] = 0;
      }
    }
  });
}

}  // namespace

void register_reference_tensor_index(KernelTable& t) {
  t.add("Gather", gather_kernel);
  t.add("GatherElements", gather_elements_kernel);
  t.add("GatherND", gather_nd_kernel);
  t.add("ScatterElements", scatter_elements_kernel);
  t.add("ScatterND", scatter_nd_kernel);
  t.add("OneHot", one_hot_kernel);
  t.add("NonZero", non_zero_kernel);
}

}  // namespace cb
