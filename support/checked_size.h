// Overflow-checked size arithmetic: element counts (products of dimensions)
// and byte counts. Every product of dimensions that comes from a file (an .npy
// header, an ONNX initializer or graph input, a safetensors entry, a shape
// inferred from them) goes through these, so a shape whose product wraps past
// 2^63 is an error instead of a small count that passes the size checks and is
// then read or written out of bounds. `what` names the thing being sized
// ("input.npy: f32[...]", "initializer 'w'") in the message.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "support/error.h"

namespace cb {

// The largest element or byte count we accept: 2^62, so that a count times a
// small element size and a few such counts added still fit in int64 and size_t.
inline constexpr int64_t kMaxCheckedSize = int64_t(1) << 62;

namespace checked_size_detail {
inline std::string dims_text(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
  return s + "]";
}
}  // namespace checked_size_detail

// acc *= d when d >= 0 and the product stays at most kMaxCheckedSize;
// otherwise false, acc unchanged. The step every checked product is made of,
// for loops that build their message only when it fails (shape inference).
inline bool mul_size(int64_t& acc, int64_t d) {
  int64_t r = 0;
  if (d < 0 || acc < 0 || __builtin_mul_overflow(acc, d, &r) || r > kMaxCheckedSize) return false;
  acc = r;
  return true;
}

// acc += d likewise: false, acc unchanged, when d < 0 or the sum passes kMaxCheckedSize.
inline bool add_size(int64_t& acc, int64_t d) {
  int64_t r = 0;
  if (d < 0 || acc < 0 || __builtin_add_overflow(acc, d, &r) || r > kMaxCheckedSize) return false;
  acc = r;
  return true;
}

// a * b for non-negative sizes; throws naming `what` when it exceeds kMaxCheckedSize.
inline int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  CB_CHECK(a >= 0 && b >= 0, what << ": negative size (" << a << " x " << b << ")");
  int64_t r = a;
  CB_CHECK(mul_size(r, b), what << ": size " << a << " x " << b << " overflows (more than 2^62)");
  return r;
}

// a + b for non-negative sizes; throws naming `what` when it exceeds kMaxCheckedSize.
inline int64_t checked_add(int64_t a, int64_t b, const std::string& what) {
  CB_CHECK(a >= 0 && b >= 0, what << ": negative size (" << a << " + " << b << ")");
  int64_t r = a;
  CB_CHECK(add_size(r, b), what << ": size " << a << " + " << b << " overflows (more than 2^62)");
  return r;
}

// The number of elements of a tensor of shape `dims`: every dim must be >= 0
// and the product at most 2^62 (checked even when a later dim is 0, so that
// an absurd shape is refused whatever its other dims are).
inline int64_t checked_numel(const std::vector<int64_t>& dims, const std::string& what) {
  int64_t n = 1;
  bool zero = false;
  for (int64_t d : dims) {
    CB_CHECK(d >= 0, what << ": negative dimension " << d << " in shape " << checked_size_detail::dims_text(dims));
    if (d == 0) {
      zero = true;
      continue;
    }
    CB_CHECK(mul_size(n, d),
             what << ": shape " << checked_size_detail::dims_text(dims) << " has more than 2^62 elements");
  }
  return zero ? 0 : n;
}

// The bytes of `dims` elements of `element_size` bytes each, checked as above.
inline size_t checked_nbytes(const std::vector<int64_t>& dims, size_t element_size, const std::string& what) {
  int64_t n = checked_numel(dims, what);
  int64_t bytes = n;
  CB_CHECK(mul_size(bytes, int64_t(element_size)), what << ": shape " << checked_size_detail::dims_text(dims) << " of "
                                                        << element_size << "-byte elements needs more than 2^62 bytes");
  return size_t(bytes);
}

// The machine's physical memory in bytes (0 when unknown). A single buffer
// or model larger than all of it is refused up front with a clear error,
// rather than left to overcommit and the OOM killer.
inline size_t physical_memory_bytes() {
  static const size_t bytes = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page_size > 0 ? size_t(pages) * size_t(page_size) : size_t(0);
  }();
  return bytes;
}

// Calls `allocate` (e.g. a lambda making a Tensor read from a file) and puts
// `what` (the file and tensor) in front of any cb::Error it throws, so that an
// allocation that fails ("out of memory allocating N bytes") names what it was for.
template <typename Fn>
auto allocate_for(const std::string& what, Fn&& allocate) -> decltype(allocate()) {
  try {
    return allocate();
  } catch (const Error& e) {
    CB_FAIL(what << ": " << e.what());
  }
}

}  // namespace cb
