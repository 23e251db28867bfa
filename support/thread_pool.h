// The one thread pool of the process: every parallel loop of our kernels,
// k-means and the tools runs on it (support/threads.h wraps it in range
// loops). oneDNN keeps its own OpenMP threads (docs/performance.md#threads).
//
// A job is a count of pieces and a function of the piece index. The calling
// thread works on the job too, claiming pieces one at a time; helper threads
// join only if they wake while pieces are left. The caller therefore never
// waits for a helper to wake up (on a busy machine that wait is a scheduler
// time slice, milliseconds), only for pieces a helper has claimed and is
// computing. Which thread runs a piece never changes its result: callers make
// each piece's arithmetic independent of the split (DESIGN.md principle 7).
#pragma once
#include <cstdint>
#include <functional>

namespace cb {

class ThreadPool {
 public:
  using PieceFn = std::function<void(int64_t piece)>;

  static ThreadPool& instance();

  // Calls fn(p) once for every p in [0, pieces), on the calling thread and
  // up to `threads` - 1 helpers; returns when every call has returned. The
  // first exception a call throws is rethrown here once the claimed pieces
  // are done (the pieces not yet started are skipped). Runs inline, in order,
  // when threads <= 1, pieces <= 1, or when called from inside a piece
  // (nested loops never wait on the pool they run on).
  void run(int64_t pieces, int threads, const PieceFn& fn);

  // Tells helpers spinning for the next job to sleep now: called before
  // work on other threads (oneDNN's OpenMP team) that needs the cores.
  void park();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

 private:
  struct Job;
  struct State;
  ThreadPool();
  ~ThreadPool() = default;  // never destroyed (instance())
  State& state_;
};

// Which worker of the current job the calling thread is: 0 on the thread
// that called ThreadPool::run (and outside any job), 1 .. threads - 1 on the
// helpers that joined it. Indexes per-thread scratch of one job.
int parallel_worker_index();

}  // namespace cb
