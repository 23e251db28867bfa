#include "runtime/memory_plan.h"

#include <algorithm>
#include <numeric>

#include "support/error.h"

namespace cb {

namespace {

constexpr size_t kAlign = 64;

size_t aligned(size_t bytes) {
  CB_CHECK(bytes <= SIZE_MAX - (kAlign - 1), "memory plan: a value of " << bytes << " bytes is too large");
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

}  // namespace

MemoryPlan plan_memory(const std::vector<PlannedValue>& values) {
  MemoryPlan plan;
  plan.offsets.assign(values.size(), 0);
  std::vector<size_t> order(values.size());
  std::iota(order.begin(), order.end(), size_t(0));
  // Largest first; ties by first use, then index, so the plan is deterministic.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (values[a].bytes != values[b].bytes) return values[a].bytes > values[b].bytes;
    return values[a].first < values[b].first;
  });
  struct Placed {
    size_t offset, end;
    int64_t first, last;
  };
  std::vector<Placed> placed;  // sorted by offset
  for (size_t i : order) {
    const PlannedValue& v = values[i];
    CB_CHECK(v.first <= v.last,
             "memory plan: value " << i << " ends (step " << v.last << ") before it begins (step " << v.first << ")");
    const size_t size = aligned(v.bytes);
    // Scan the placed values that live at the same time, in offset order, for
    // the first gap that fits.
    size_t offset = 0;
    for (const Placed& p : placed) {
      if (p.last < v.first || v.last < p.first) continue;  // disjoint lifetimes share bytes
      if (p.offset >= offset + size) break;                // the gap before p fits
      offset = std::max(offset, p.end);
    }
    CB_CHECK(offset <= SIZE_MAX - size, "memory plan: the arena would exceed the address space");
    plan.offsets[i] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
    Placed np{offset, offset + size, v.first, v.last};
    placed.insert(std::upper_bound(placed.begin(), placed.end(), np,
                                   [](const Placed& a, const Placed& b) { return a.offset < b.offset; }),
                  np);
  }
  return plan;
}

}  // namespace cb
