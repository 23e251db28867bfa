// The memory planner: places values with known sizes and lifetimes at offsets
// of one arena so that two values share bytes only when their lifetimes are
// disjoint. The executor (runtime/executable.cpp) plans a graph's
// intermediates once their sizes have repeated across two runs, then reuses
// one arena for every later run of the same sizes: steady-state runs allocate
// nothing and touch no fresh pages (first touch costs ~3 ms/MiB here), and
// the arena is far smaller than one buffer per value (better cache reuse).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace cb {

// A value to place: `bytes` live from step `first` to step `last` (inclusive:
// a value read by step i and a value written by step i overlap).
struct PlannedValue {
  size_t bytes = 0;
  int64_t first = 0, last = 0;
};

struct MemoryPlan {
  std::vector<size_t> offsets;  // per value, 64-byte aligned
  size_t arena_bytes = 0;       // the arena's size: the highest end of any placement
};

// Greedy by size (TensorFlow Lite's arena planner): the largest value first,
// each at the lowest 64-byte-aligned offset that does not overlap any placed
// value whose lifetime intersects its own. O(n^2) in the number of values.
MemoryPlan plan_memory(const std::vector<PlannedValue>& values);

}  // namespace cb
