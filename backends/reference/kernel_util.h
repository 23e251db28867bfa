// Small helpers shared by reference kernels: strides, broadcasting, and
// iterating over multi-dimensional indices.
#pragma once
#include <cstdint>
#include <vector>

#include "backends/backend.h"
#include "support/error.h"

namespace cb {

// Row-major strides in elements.
inline std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (int64_t i = int64_t(dims.size()) - 2; i >= 0; --i) s[size_t(i)] = s[size_t(i) + 1] * dims[size_t(i) + 1];
  return s;
}

// Strides of `in_dims` read as if broadcast to `out_dims` (right-aligned, 0 on
// broadcast axes), so offset = sum(index[d] * stride[d]).
inline std::vector<int64_t> broadcast_strides(const std::vector<int64_t>& in_dims,
                                              const std::vector<int64_t>& out_dims) {
  std::vector<int64_t> s(out_dims.size(), 0);
  std::vector<int64_t> cs = contiguous_strides(in_dims);
  size_t off = out_dims.size() - in_dims.size();
  for (size_t i = 0; i < in_dims.size(); ++i) s[off + i] = in_dims[i] == 1 ? 0 : cs[i];
  return s;
}

// Calls fn(offsets...) for every element of `out_dims` in row-major order, where
// offsets[k] is the element offset into operand k with strides strides[k].
template <size_t N, typename Fn>
void for_each_offset(const std::vector<int64_t>& out_dims, const std::vector<int64_t> (&strides)[N], Fn&& fn) {
  size_t rank = out_dims.size();
  int64_t total = 1;
  for (auto d : out_dims) total *= d;
  if (total == 0) return;
  std::vector<int64_t> idx(rank, 0);
  int64_t off[N] = {};
  for (int64_t n = 0; n < total; ++n) {
    fn(static_cast<const int64_t*>(off));
    for (int64_t d = int64_t(rank) - 1; d >= 0; --d) {
      size_t ud = size_t(d);
      if (++idx[ud] < out_dims[ud]) {
        for (size_t k = 0; k < N; ++k) off[k] += strides[k][ud];
        break;
      }
      for (size_t k = 0; k < N; ++k) off[k] -= strides[k][ud] * (out_dims[ud] - 1);
      idx[ud] = 0;
    }
  }
}

// Normalises an axis that the schema already validated.
inline int64_t norm_axis(int64_t a, int64_t rank) { return a < 0 ? a + rank : a; }

}  // namespace cb
