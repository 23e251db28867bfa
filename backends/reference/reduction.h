// How the reference Reduce* kernels (backends/reference/reduction.cpp) read
// a reduction, shared with the CPU backend's (backends/cpu/reduce_kernels.cpp)
// so both reduce the same axes in the same order.
#pragma once
#include <cstdint>
#include <vector>

#include "backends/backend.h"

namespace cb {

// Which axes of input 0 a Reduce* node reduces: the axes input, else every
// axis unless noop_with_empty_axes.
std::vector<bool> reduced_axes(const KernelContext& ctx);

// The [outer, reduced, inner] view of a reduction.
struct ReduceBlock {
  int64_t outer = 1, reduced = 1, inner = 1;
};

// The view when the reduced axes of size > 1 are adjacent in the layout
// (size-1 dims count as either); false otherwise.
bool reduction_block(const std::vector<int64_t>& dims, const std::vector<bool>& is_reduced, ReduceBlock& block);

}  // namespace cb
