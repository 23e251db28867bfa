// Thread-count and parallel-loop helpers shared by the CPU kernels, k-means
// and the tools, all on the one pool (support/thread_pool.h). Each loop hands
// out contiguous ranges of [0, n); callers make every unit's result
// independent of how [0, n) is cut and of which thread runs it.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "support/thread_pool.h"

namespace cb {

// The threads "all cores" means: the cores this process may run on.
int available_cores();

// A thread count as the user gave it (--threads, where 0 means all cores)
// made concrete: n itself when n >= 1, else available_cores().
int resolve_thread_count(int n);

// Makes `n` (0: all cores, resolved as above) the thread count of oneDNN's
// OpenMP threads on the calling thread, and returns it: the count to give
// our kernels (CompileOptions::num_threads), so both use the same number.
// Over max_threads() throws.
int set_num_threads(int n);

// Runs body(begin, end) over [0, n) split into contiguous pieces, on up to
// `threads` threads of the pool when `bytes` (the work's size) reaches
// `min_parallel_bytes`, else inline in one call. There are up to
// `pieces_per_thread` pieces per thread, handed out as threads come free,
// so that a thread the OS runs late holds back one piece, not its share.
template <typename Body>
void parallel_chunks(int64_t n, size_t bytes, size_t min_parallel_bytes, int threads, Body&& body,
                     int64_t pieces_per_thread = 8) {
  if (n <= 0) return;
  const int64_t t = std::min<int64_t>(threads, n);
  if (t <= 1 || bytes < min_parallel_bytes) {
    body(int64_t(0), n);
    return;
  }
  const int64_t pieces = std::min<int64_t>(n, t * std::max<int64_t>(1, pieces_per_thread));
  ThreadPool::instance().run(pieces, int(t), [&body, n, pieces](int64_t p) {
    const int64_t begin = n * p / pieces, end = n * (p + 1) / pieces;
    if (begin < end) body(begin, end);
  });
}

// Runs fn(begin, end) over [0, n) cut into `threads` contiguous ranges (one
// piece each) on the pool; the calling thread takes pieces too.
template <typename Fn>
void parallel_ranges(int64_t n, int threads, Fn&& fn) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, n));
  if (parts == 1) {
    fn(int64_t(0), n);
    return;
  }
  ThreadPool::instance().run(parts, int(parts), [&fn, n, parts](int64_t p) { fn(n * p / parts, n * (p + 1) / parts); });
}

}  // namespace cb
