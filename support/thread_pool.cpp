#include "support/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace cb {

namespace {

thread_local int tls_worker = 0;
thread_local bool tls_in_piece = false;

// Marks the calling thread as worker `worker` of a job for its lifetime,
// restoring the outer job's index after a nested (inline) job.
class WorkerScope {
 public:
  explicit WorkerScope(int worker) : saved_worker_(tls_worker), saved_in_piece_(tls_in_piece) {
    tls_worker = worker;
    tls_in_piece = true;
  }
  ~WorkerScope() {
    tls_worker = saved_worker_;
    tls_in_piece = saved_in_piece_;
  }
  WorkerScope(const WorkerScope&) = delete;
  WorkerScope& operator=(const WorkerScope&) = delete;

 private:
  int saved_worker_;
  bool saved_in_piece_;
};

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// How long a helper that finished a job keeps checking for the next one
// before it sleeps, and how long the caller, done with its own pieces, keeps
// checking whether the helpers are done before it sleeps until they are.
// Waking a sleeper costs tens of microseconds here; a decode step of
// generation runs ~50 GEMVs of 0.1-0.4 ms with ~40 us of other kernels
// between them, so a helper that slept between them joined each product late
// and a 2-thread step read its weights at ~23 GB/s instead of ~30. Counted in
// time, not in pauses: a pause is ~25 ns on Zen 4 and ~80 ns on Zen 2.
// Short enough that an idle pool soon gives the cores back, and a helper
// stops spinning at once when a kernel hands the cores to oneDNN's OpenMP
// threads (ThreadPool::park).
constexpr auto kHelperSpin = std::chrono::microseconds(200);
constexpr auto kCallerSpin = std::chrono::microseconds(100);

// How often a caller tries the pool's lock before it runs its job alone.
constexpr int kLockTries = 100;

// Calls cpu_relax() until done() or `limit` has passed (or `stop()`); returns
// done(). Past the first kPureSpin it also yields the core between checks:
// free when nothing else wants the core, and on a busy machine (ctest -j,
// other processes) the other runnable threads get it instead of the spin.
constexpr auto kPureSpin = std::chrono::microseconds(20);
template <typename Done, typename Stop>
bool spin_until(Done done, Stop stop, std::chrono::microseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + limit, yield_from = start + kPureSpin;
  for (;;) {
    for (int i = 0; i < 32; ++i) {
      if (done()) return true;
      if (stop()) return false;
      cpu_relax();
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return done();
    if (now >= yield_from) std::this_thread::yield();
  }
}

}  // namespace

struct ThreadPool::Job {
  Job(const PieceFn& f, int64_t n, int h) : fn(&f), pieces(n), helpers(h), helper_slots(h) {}

  const PieceFn* fn;  // called only for a claimed piece, while the caller waits (dangles after)
  const int64_t pieces;
  const int helpers;
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<int> helper_slots;  // helpers that may still join
  std::atomic<bool> failed{false};
  std::mutex mutex;  // guards error; with `finished`, wakes a caller sleeping in wait()
  std::condition_variable finished;
  std::exception_ptr error;

  // Claims and runs pieces until none is left; after a failure the rest
  // are claimed but skipped.
  void work(int worker) {
    WorkerScope scope(worker);
    for (int64_t p; (p = next.fetch_add(1, std::memory_order_relaxed)) < pieces;) {
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          (*fn)(p);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
      if (done.fetch_add(1, std::memory_order_acq_rel) + 1 == pieces) {
        std::lock_guard<std::mutex> lock(mutex);
        finished.notify_all();
      }
    }
  }

  bool complete() const { return done.load(std::memory_order_acquire) == pieces; }

  void wait() {
    if (spin_until([&] { return complete(); }, [] { return false; }, kCallerSpin)) return;
    std::unique_lock<std::mutex> lock(mutex);
    finished.wait(lock, [&] { return complete(); });
  }
};

struct ThreadPool::State {
  std::mutex mutex;
  std::condition_variable wake;
  std::vector<std::thread> threads;
  std::shared_ptr<Job> job;  // the latest; stays published after its run (a late helper finds no piece)
  std::atomic<uint64_t> generation{0};
  std::atomic<uint64_t> parks{0};  // ThreadPool::park() calls: a spinning helper sleeps at once
  int sleepers = 0;                // helpers waiting on `wake` (under mutex)

  void helper_loop(uint64_t seen) {
    for (;;) {
      const uint64_t parked = parks.load(std::memory_order_relaxed);
      spin_until([&] { return generation.load(std::memory_order_acquire) != seen; },
                 [&] { return parks.load(std::memory_order_relaxed) != parked; }, kHelperSpin);
      std::shared_ptr<Job> next;
      {
        std::unique_lock<std::mutex> lock(mutex);
        if (generation.load(std::memory_order_relaxed) == seen) {
          ++sleepers;
          wake.wait(lock, [&] { return generation.load(std::memory_order_relaxed) != seen; });
          --sleepers;
        }
        seen = generation.load(std::memory_order_relaxed);
        next = job;
      }
      const int slot = next->helper_slots.fetch_sub(1, std::memory_order_relaxed);
      if (slot > 0) next->work(next->helpers - slot + 1);
    }
  }
};

ThreadPool& ThreadPool::instance() {
  // Never destroyed: helpers sleep through exit, and kernels held by other
  // statics may still run a loop during static destruction.
  static ThreadPool* pool = new ThreadPool;
  return *pool;
}

ThreadPool::ThreadPool() : state_(*new State) {}

void ThreadPool::run(int64_t pieces, int threads, const PieceFn& fn) {
  if (pieces <= 0) return;
  if (threads <= 1 || pieces == 1 || tls_in_piece) {
    WorkerScope scope(0);
    for (int64_t p = 0; p < pieces; ++p) fn(p);
    return;
  }
  const int helpers = int(std::min<int64_t>(threads - 1, pieces - 1));
  auto job = std::make_shared<Job>(fn, pieces, helpers);
  State& s = state_;
  bool wake = false;
  {
    // A helper holds the lock only for a moment (as it goes to sleep or
    // wakes), so try for a few microseconds; but if it is preempted there,
    // waiting would cost a time slice: go on alone instead.
    std::unique_lock<std::mutex> lock(s.mutex, std::try_to_lock);
    for (int i = 0; i < kLockTries && !lock.owns_lock(); ++i) {
      cpu_relax();
      lock.try_lock();
    }
    if (lock.owns_lock()) {
      try {
        while (int(s.threads.size()) < helpers) {
          const uint64_t seen = s.generation.load(std::memory_order_relaxed);
          s.threads.emplace_back([&s, seen] { s.helper_loop(seen); });
        }
      } catch (const std::system_error&) {  // no more threads: the job runs on those there are
      }
      s.job = job;
      s.generation.fetch_add(1, std::memory_order_release);
      wake = s.sleepers > 0;
    }
  }
  if (wake) s.wake.notify_all();
  job->work(0);
  job->wait();
  if (job->error) std::rethrow_exception(job->error);
}

void ThreadPool::park() { state_.parks.fetch_add(1, std::memory_order_relaxed); }

int parallel_worker_index() { return tls_worker; }

}  // namespace cb
