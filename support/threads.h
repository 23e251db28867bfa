// Thread-count and parallel-loop helpers shared by the CPU kernels, k-means
// and the tools. Each loop hands out contiguous ranges of [0, n); callers make
// every unit's result independent of how [0, n) is cut.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace cb {

// Sets the thread count of every threaded library we use (OpenMP, and oneDNN
// through it); n <= 0 keeps the default; over max_threads() throws.
void set_num_threads(int n);

// Runs body(begin, end) over [0, n) split into contiguous pieces, on up to
// `threads` OpenMP threads when `bytes` (the work's size) reaches
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
#pragma omp parallel for num_threads(int(t)) schedule(dynamic, 1)
  for (int64_t p = 0; p < pieces; ++p) {
    const int64_t begin = n * p / pieces, end = n * (p + 1) / pieces;
    if (begin < end) body(begin, end);
  }
}

// Runs fn(begin, end) over [0, n) cut into `threads` contiguous ranges, one
// per std::thread started for the call; the calling thread takes the first.
template <typename Fn>
void parallel_ranges(int64_t n, int threads, Fn&& fn) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, n));
  if (parts == 1) {
    fn(int64_t(0), n);
    return;
  }
  std::vector<std::thread> workers;
  workers.reserve(size_t(parts - 1));
  for (int64_t p = 1; p < parts; ++p)
    workers.emplace_back([&fn, n, parts, p] { fn(n * p / parts, n * (p + 1) / parts); });
  fn(int64_t(0), n / parts);
  for (auto& w : workers) w.join();
}

}  // namespace cb
