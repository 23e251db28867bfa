// The thread pool (support/thread_pool.h) and the loops on it
// (support/threads.h): every index once, whatever the thread count; fewer
// pieces than threads; nested loops run inline; an exception thrown in a
// piece reaches the caller and leaves the pool usable; several callers at
// once; helpers join jobs after park() and after sleeping.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/threads.h"

namespace cb {
namespace {

// How often each index of [0, n) was visited by a parallel_chunks loop over
// `threads` threads.
std::vector<int> visits_of_chunks(int64_t n, int threads, int64_t pieces_per_thread) {
  std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
  parallel_chunks(
      n, size_t(1) << 30, 0, threads,
      [&](int64_t begin, int64_t end) {
        EXPECT_LT(begin, end);
        for (int64_t i = begin; i < end; ++i) seen[size_t(i)].fetch_add(1);
      },
      pieces_per_thread);
  std::vector<int> out;
  for (auto& s : seen) out.push_back(s.load());
  return out;
}

TEST(ThreadPool, EveryIndexRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 8})
    for (int64_t n : {1, 2, 5, 7, 64, 1000, 100003})
      for (int64_t per_thread : {1, 8}) {
        std::vector<int> v = visits_of_chunks(n, threads, per_thread);
        EXPECT_EQ(v, std::vector<int>(size_t(n), 1)) << "n " << n << ", threads " << threads;
      }
  for (int threads : {1, 2, 5}) {
    std::vector<std::atomic<int>> seen(777);
    ThreadPool::instance().run(777, threads, [&](int64_t p) { seen[size_t(p)].fetch_add(1); });
    for (auto& s : seen) EXPECT_EQ(s.load(), 1);
    std::vector<std::atomic<int>> ranges(1001);
    parallel_ranges(1001, threads, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ranges[size_t(i)].fetch_add(1);
    });
    for (auto& s : ranges) EXPECT_EQ(s.load(), 1);
  }
  parallel_chunks(0, 0, 0, 4, [](int64_t, int64_t) { FAIL() << "an empty loop ran its body"; });
}

TEST(ThreadPool, FewerPiecesThanThreads) {
  for (int64_t n : {1, 2, 3}) {
    std::vector<int> v = visits_of_chunks(n, 16, 8);
    EXPECT_EQ(v, std::vector<int>(size_t(n), 1));
    std::atomic<int> calls{0};
    ThreadPool::instance().run(n, 16, [&](int64_t p) {
      EXPECT_LT(parallel_worker_index(), n) << "more workers than pieces";
      calls.fetch_add(1);
      EXPECT_LT(p, n);
    });
    EXPECT_EQ(calls.load(), n);
  }
}

TEST(ThreadPool, WorkerIndicesIndexPerThreadScratch) {
  EXPECT_EQ(parallel_worker_index(), 0);
  const int threads = 4;
  std::vector<std::atomic<int>> busy(threads);
  std::atomic<bool> overlap{false};
  ThreadPool::instance().run(400, threads, [&](int64_t) {
    const int w = parallel_worker_index();
    ASSERT_GE(w, 0);
    ASSERT_LT(w, threads);
    // A worker index belongs to one thread at a time.
    if (busy[size_t(w)].fetch_add(1) != 0) overlap = true;
    volatile double x = 0;
    for (int i = 0; i < 2000; ++i) x = x + i;
    busy[size_t(w)].fetch_sub(1);
  });
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(parallel_worker_index(), 0);
}

TEST(ThreadPool, NestedLoopsRunInlineOnTheirThread) {
  std::vector<std::atomic<int>> seen(64 * 50);
  std::atomic<bool> moved{false};
  ThreadPool::instance().run(64, 4, [&](int64_t outer) {
    const std::thread::id mine = std::this_thread::get_id();
    const int worker = parallel_worker_index();
    parallel_chunks(50, size_t(1) << 30, 0, 4, [&](int64_t b, int64_t e) {
      if (std::this_thread::get_id() != mine || parallel_worker_index() != 0) moved = true;
      for (int64_t i = b; i < e; ++i) seen[size_t(outer * 50 + i)].fetch_add(1);
    });
    EXPECT_EQ(parallel_worker_index(), worker) << "the outer job's worker index is restored";
  });
  EXPECT_FALSE(moved.load()) << "an inner loop left its thread";
  for (auto& s : seen) EXPECT_EQ(s.load(), 1);
}

TEST(ThreadPool, ExceptionInAPieceReachesTheCaller) {
  for (int threads : {1, 2, 4})
    for (int64_t bad : {int64_t(0), int64_t(37), int64_t(99)}) {
      std::atomic<int> ran{0};
      try {
        ThreadPool::instance().run(100, threads, [&](int64_t p) {
          ran.fetch_add(1);
          if (p == bad) throw std::runtime_error("piece " + std::to_string(p) + " failed");
        });
        ADD_FAILURE() << "no exception, threads " << threads;
      } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()), "piece " + std::to_string(bad) + " failed");
      }
      EXPECT_LE(ran.load(), 100);
      // Still usable, and a nested failure propagates through both levels.
      std::vector<int> v = visits_of_chunks(5000, threads, 8);
      EXPECT_EQ(v, std::vector<int>(5000, 1));
      EXPECT_THROW(ThreadPool::instance().run(8, threads,
                                              [&](int64_t p) {
                                                ThreadPool::instance().run(8, threads, [&](int64_t q) {
                                                  if (p == 3 && q == 5) throw std::logic_error("inner");
                                                });
                                              }),
                   std::logic_error);
    }
}

TEST(ThreadPool, SeveralCallersAtOnce) {
  constexpr int kCallers = 3;
  std::vector<std::vector<int>> results(kCallers);
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&results, c] {
      for (int rep = 0; rep < 20; ++rep) {
        std::vector<int> v = visits_of_chunks(4096, 2 + c, 4);
        if (v != std::vector<int>(4096, 1)) results[size_t(c)] = v;
      }
    });
  for (auto& t : callers) t.join();
  for (auto& r : results) EXPECT_TRUE(r.empty());
}

// After park() (a helper spinning for the next job goes to sleep at once)
// and after the helpers slept on their own, the next job still wakes one:
// each job's two pieces wait for each other, which they meet only on two
// threads. (The caller goes on alone, by design, in the rare case a helper
// holds the pool's lock as the job is published; hence "nearly every".)
TEST(ThreadPool, HelpersJoinAfterParkAndAfterSleeping) {
  constexpr int kReps = 40;
  int joined = 0;
  for (int rep = 0; rep < kReps; ++rep) {
    if (rep % 2 == 0) ThreadPool::instance().park();
    if (rep % 10 == 9) std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past any spin
    std::atomic<int> arrived{0}, met{0};
    ThreadPool::instance().run(2, 2, [&](int64_t) {
      arrived.fetch_add(1);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (arrived.load() < 2)
        if (std::chrono::steady_clock::now() > deadline) return;
      met.fetch_add(1);
    });
    joined += met.load() == 2;
  }
  EXPECT_GE(joined, kReps - 4);
  std::printf("%d of %d jobs ran on two threads\n", joined, kReps);
}

TEST(ThreadPool, ThreadCountPolicy) {
  EXPECT_GE(available_cores(), 1);
  EXPECT_EQ(resolve_thread_count(0), available_cores());
  EXPECT_EQ(resolve_thread_count(3), 3);
  EXPECT_EQ(set_num_threads(0), available_cores());
  EXPECT_EQ(set_num_threads(1), 1);
}

}  // namespace
}  // namespace cb
