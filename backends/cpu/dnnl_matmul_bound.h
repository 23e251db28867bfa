// The box's matmul bound (issue 12): how long oneDNN's matmul primitive
// alone takes for a graph's matrix products at the shapes of one run. A
// forward pass cannot be faster than its products, so bound / forward time
// says how close the rest of the runtime comes to free.
#pragma once
#include <cstdint>
#include <vector>

#include "ir/graph.h"
#include "ir/precision.h"

namespace cb {

// One matrix product: batch x ([M, K] x [K, N]).
struct MatMulShape {
  int64_t batch = 1, m = 0, k = 0, n = 0;
  double flops() const { return 2.0 * double(batch) * double(m) * double(k) * double(n); }
  bool operator<(const MatMulShape& o) const;
};

// The products of g's MatMul, Gemm and codebook.FusedMatMul nodes; every
// value's type must be static (infer_types on a graph with concrete input
// shapes).
std::vector<MatMulShape> graph_matmul_shapes(const Graph& g);

// Milliseconds of CPU time this process has used (all threads): on a busy
// machine, a one-thread run's CPU time is its work, where wall time also
// counts the time other processes held the core.
double process_cpu_ms();

struct MatMulTiming {
  double wall_ms = 0, cpu_ms = 0;
};

// Medians over `runs` executions (after one untimed) of oneDNN's matmul for
// `s`: random operands (f32, or bf16 A and B under Precision::bf16; C is
// f32), plain A and C, B in the layout oneDNN prefers (format_tag::any) or,
// where that is plain row-major, also [N, K], the faster of the two; no
// post-ops, on the current OpenMP thread count.
MatMulTiming time_dnnl_matmul(const MatMulShape& s, int runs, Precision precision = Precision::f32);

}  // namespace cb
