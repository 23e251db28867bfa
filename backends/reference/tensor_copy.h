// Byte-level copy helpers for the tensor-op kernels (backends/reference/tensor*.cpp):
// most of those ops only move elements, so they work on raw bytes of any dtype
// and copy contiguous runs with memcpy.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/reference/kernel_util.h"
#include "ir/tensor.h"

namespace cb {

// An element of N bytes, copied by value (lets the compiler use one move).
template <size_t N>
struct Bytes {
  uint8_t b[N];
};

// Calls fn(Bytes<N>{}) for an element size of 1, 2, 4 or 8 bytes.
template <typename Fn>
decltype(auto) elem_size_dispatch(size_t esize, Fn&& fn) {
  switch (esize) {
    case 1: return fn(Bytes<1>{});
    case 2: return fn(Bytes<2>{});
    case 4: return fn(Bytes<4>{});
    default: return fn(Bytes<8>{});
  }
}

// Copies a strided view into contiguous `dst`: output element (i_0, ..., i_n)
// of `dims` comes from src[sum i_k * strides[k]] (strides in elements; 0 and
// negative strides allowed). Adjacent dims are merged first, so whatever is
// contiguous in the source is copied in runs with memcpy; a transpose of the
// two innermost dims is copied in cache-sized tiles.
inline void strided_copy(const uint8_t* src, const std::vector<int64_t>& dims_in,
                         const std::vector<int64_t>& strides_in, uint8_t* dst, size_t esize) {
  std::vector<int64_t> dims, strides;
  for (size_t k = 0; k < dims_in.size(); ++k) {
    if (dims_in[k] == 0) return;
    if (dims_in[k] == 1) continue;
    if (!dims.empty() && strides.back() == strides_in[k] * dims_in[k]) {
      dims.back() *= dims_in[k];
      strides.back() = strides_in[k];
    } else {
      dims.push_back(dims_in[k]);
      strides.push_back(strides_in[k]);
    }
  }
  if (dims.empty()) {
    std::memcpy(dst, src, esize);
    return;
  }
  const int64_t inner = dims.back(), inner_stride = strides.back();
  dims.pop_back();
  strides.pop_back();
  // A 2-D transpose at the bottom (the next dim is contiguous in the source,
  // the innermost is not): copy it in square tiles so both sides stay in cache.
  int64_t tile_rows = 1;
  if (inner_stride != 1 && !dims.empty() && strides.back() == 1 && dims.back() >= 8 && inner >= 8) {
    tile_rows = dims.back();
    dims.pop_back();
    strides.pop_back();
  }
  const size_t block_bytes = size_t(inner * tile_rows) * esize;
  elem_size_dispatch(esize, [&](auto tag) {
    using E = decltype(tag);
    auto copy_block = [&](const uint8_t* s) {
      const E* se = reinterpret_cast<const E*>(s);
      E* de = reinterpret_cast<E*>(dst);
      if (tile_rows > 1) {
        // de[r * inner + c] = se[r + c * inner_stride]
        constexpr int64_t T = 16;
        for (int64_t r0 = 0; r0 < tile_rows; r0 += T)
          for (int64_t c0 = 0; c0 < inner; c0 += T)
            for (int64_t r = r0; r < std::min(r0 + T, tile_rows); ++r)
              for (int64_t c = c0; c < std::min(c0 + T, inner); ++c) de[r * inner + c] = se[r + c * inner_stride];
      } else if (inner_stride == 1) {
        std::memcpy(dst, s, block_bytes);
      } else {
        for (int64_t i = 0; i < inner; ++i) de[i] = se[i * inner_stride];
      }
      dst += block_bytes;
    };
    int64_t outer = 1;
    for (auto d : dims) outer *= d;
    std::vector<int64_t> idx(dims.size(), 0);
    const uint8_t* s = src;
    for (int64_t n = 0; n < outer; ++n) {
      copy_block(s);
      for (int64_t d = int64_t(dims.size()) - 1; d >= 0; --d) {
        size_t ud = size_t(d);
        if (++idx[ud] < dims[ud]) {
          s += strides[ud] * int64_t(esize);
          break;
        }
        s -= strides[ud] * (dims[ud] - 1) * int64_t(esize);
        idx[ud] = 0;
      }
    }
  });
}

// Fills `count` elements of `esize` bytes at dst with copies of `value`.
inline void fill_bytes(uint8_t* dst, int64_t count, const void* value, size_t esize) {
  if (count <= 0) return;
  std::memcpy(dst, value, esize);
  // Doubling copies: log(count) memcpy calls.
  int64_t done = 1;
  while (done < count) {
    int64_t n = std::min(done, count - done);
    std::memcpy(dst + size_t(done) * esize, dst, size_t(n) * esize);
    done += n;
  }
}

// Product of dims[begin, end).
inline int64_t dims_product(const std::vector<int64_t>& dims, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= dims[i];
  return p;
}

inline uint8_t* bytes_of(const Tensor& t) { return static_cast<uint8_t*>(t.raw()); }

}  // namespace cb
