// Fast CPU kernels of the data-movement ops Transpose, Slice, Split and
// Concat (any element of 1, 2, 4 or 8 bytes; others use the reference
// kernels), and the copy engine they share with codebook.grad.SliceGrad
// (backends/cpu/grad_kernels.cpp). The reference kernels in
// backends/reference/tensor.cpp are their oracle.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/backend.h"
#include "support/threads.h"  // parallel_chunks, with the thresholds below

namespace cb {

// A planned strided copy: for every index (i_0, ..., i_n) of `dims`,
//   dst[sum i_k * dst_strides[k]] = src[sum i_k * src_strides[k]]
// (strides in elements, negative and 0 allowed). Planning drops dims of 1
// and merges dims that are contiguous in both operands, then picks the
// innermost loop: contiguous runs (memcpy; long runs are cut into pieces),
// a 2-D transpose copied in tiles (8x8 AVX2 register transposes for 4-byte
// elements) when the destination is contiguous along one dim and the
// source along another, or plain element loops. The work is a list of
// independent units (one run piece, one block of tile rows, or one element
// row, per outer index), so it can be shared among threads in any way.
class StridedCopy {
 public:
  StridedCopy(const std::vector<int64_t>& dims, const std::vector<int64_t>& src_strides,
              const std::vector<int64_t>& dst_strides, size_t esize);

  int64_t units() const { return outer_ * units_per_outer_; }
  size_t bytes() const { return bytes_; }  // bytes copied in all
  // Copies units [begin, end) (single-threaded, no allocation).
  void run_units(const uint8_t* src, uint8_t* dst, int64_t begin, int64_t end) const;
  // Copies everything, over up to `threads` threads of the pool when it is large.
  void run(const uint8_t* src, uint8_t* dst, int threads) const;

  static constexpr size_t kMaxRank = 32;  // deeper copies: callers fall back

 private:
  enum class Kind { empty, runs, tiles, elements };
  Kind kind_ = Kind::empty;
  size_t esize_ = 0, bytes_ = 0;
  // Outer dims (outermost first) with their byte strides.
  std::vector<int64_t> dims_, src_step_, dst_step_;
  int64_t outer_ = 0, units_per_outer_ = 1;
  // runs: pieces of piece_bytes_ of a run of run_bytes_.
  int64_t run_bytes_ = 0, piece_bytes_ = 0;
  // tiles: dst[r * dst_row + c] = src[r + c * src_col] (elements), rows cut
  // into blocks of kTileBlockRows per unit.
  int64_t rows_ = 0, cols_ = 0, src_col_ = 0, dst_row_ = 0;
  // elements: count_ elements with byte strides src_inner_, dst_inner_.
  int64_t count_ = 0, src_inner_ = 0, dst_inner_ = 0;

  void run_outer(const uint8_t* src, uint8_t* dst, int64_t part) const;
};

// Work smaller than these (in bytes of data) runs on one thread. A parallel
// region costs microseconds on an idle machine but can cost milliseconds on
// a busy one (a woken helper thread waits for a core), and a second thread speeds
// memory-bound copies up little on a few cores: copies are threaded only
// when large, arithmetic kernels from a few hundred KiB.
inline constexpr size_t kParallelCopyBytes = size_t(16) << 20;
inline constexpr size_t kParallelComputeBytes = size_t(256) << 10;

// Registers Transpose, Slice, Split and Concat in the CPU backend's table.
void register_cpu_layout_kernels(KernelFactoryTable& t);

}  // namespace cb
