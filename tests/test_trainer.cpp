// The trainer on a small TokFSM model: a trainer restored from another's
// state continues bit-identically with dead-code replacement on; two
// data-parallel ranks (threads here; processes under mpirun in
// test_cli_mpi.cpp) train as one trainer does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>

#include "backends/backend.h"
#include "support/error.h"
#include "tests/tokfsm_fixtures.h"
#include "train/trainer.h"

namespace cb {
namespace {

using test::tiny_tokfsm_model;
using test::tokfsm_setup;
using test::TokFsmSetup;

// A trainer restored from another's state continues bit-identically, with
// dead-code replacement on; evaluating in between changes nothing; replaced
// codes are counted.
TEST(Trainer, RestoredStateContinuesBitIdentically) {
  TokFsmSetup s = tokfsm_setup(32, 4);
  s.opts.replace_after_steps = 2;
  auto backend = make_backend("cpu");
  auto factory = [] { return tiny_tokfsm_model(32, 2, 20); };
  Trainer a(factory, s.data, s.opts, *backend);
  for (int i = 0; i < 3; ++i) a.train_step();
  std::map<std::string, Tensor> saved;
  for (auto& [name, t] : a.state()) saved[name] = t.clone();
  Trainer b(factory, s.data, s.opts, *backend);
  b.load_state(saved, a.step());
  a.evaluate();
  for (int i = 0; i < 3; ++i) {
    StepMetrics ma = a.train_step(), mb = b.train_step();
    EXPECT_EQ(ma.loss, mb.loss) << "step " << a.step();
  }
  ASSERT_EQ(a.state().size(), b.state().size());
  for (auto& [name, t] : a.state()) EXPECT_TRUE(t.bitwise_equal(b.state().at(name))) << name;
  int64_t replaced = 0;
  for (auto& st : a.take_codebook_stats()) replaced += st.replaced;
  EXPECT_GT(replaced, 0);
  // A state from another configuration is refused, naming the tensor.
  saved.erase(saved.begin());
  EXPECT_THROW(b.load_state(saved, 3), Error);
}

// Training on the cpu backend follows the reference backend: parameters are
// graph inputs fed anew each step (the matmul kernels must never use a stale
// packed copy of them), frozen model weights are graph constants (packed once).
TEST(Trainer, CpuStepsFollowTheReferenceBackend) {
  for (bool train_model : {true, false}) {
    SCOPED_TRACE(train_model ? "model and codebooks trained" : "codebooks trained, model frozen");
    TokFsmSetup s = tokfsm_setup(16, 2);
    s.opts.graph.train_model = train_model;
    auto factory = [] { return tiny_tokfsm_model(32, 1, 20); };
    auto cpu = make_backend("cpu"), ref = make_backend("reference");
    Trainer a(factory, s.data, s.opts, *cpu), b(factory, s.data, s.opts, *ref);
    for (int i = 0; i < 4; ++i) {
      StepMetrics ma = a.train_step(), mb = b.train_step();
      EXPECT_NEAR(ma.loss, mb.loss, 1e-4 * std::max(1.0, std::abs(double(mb.loss)))) << "step " << a.step();
    }
    for (auto& [name, t] : a.state()) {
      const Tensor& r = b.state().at(name);
      if (t.dtype() != DType::f32) continue;
      for (int64_t i = 0; i < t.numel(); ++i)
        ASSERT_NEAR(t.data<float>()[i], r.data<float>()[i], 1e-4) << name << " at " << i;
    }
  }
}

// Ranks as threads of this process, for the trainer's data-parallel logic
// without MPI (the sanitizer build has none): each collective hands every
// rank all ranks' bytes once all have given theirs.
class ThreadHub {
 public:
  explicit ThreadHub(int ranks) : slots_(size_t(ranks)) {}
  int size() const { return int(slots_.size()); }
  std::vector<std::vector<std::byte>> exchange(int rank, std::vector<std::byte> mine) {
    std::unique_lock<std::mutex> lock(mutex_);
    uint64_t generation = generation_;
    slots_[size_t(rank)] = std::move(mine);
    if (++arrived_ == size()) {
      all_ = slots_;
      arrived_ = 0;
      ++generation_;
      done_.notify_all();
    } else {
      done_.wait(lock, [&] { return generation_ != generation; });
    }
    return all_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::vector<std::vector<std::byte>> slots_, all_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

class ThreadRank : public Collective {
 public:
  ThreadRank(ThreadHub& hub, int rank) : hub_(hub), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return hub_.size(); }
  int local_size() const override { return hub_.size(); }
  void allreduce_sum(std::span<float> d, const std::string&) override { sum(d); }
  void allreduce_sum(std::span<double> d, const std::string&) override { sum(d); }
  void allreduce_sum(std::span<int64_t> d, const std::string&) override { sum(d); }
  void broadcast(std::span<std::byte> d, const std::string&) override {
    auto all = hub_.exchange(rank_, {d.begin(), d.end()});
    std::copy(all[0].begin(), all[0].end(), d.begin());
  }
  void barrier(const std::string&) override { hub_.exchange(rank_, {}); }

 private:
  template <typename T>
  static std::vector<std::byte> bytes(std::span<const T> d) {
    const std::byte* b = reinterpret_cast<const std::byte*>(d.data());
    return {b, b + d.size_bytes()};
  }
  // In rank order, as the same sum on every rank.
  template <typename T>
  void sum(std::span<T> d) {
    auto parts = hub_.exchange(rank_, bytes(std::span<const T>(d)));
    for (size_t i = 0; i < d.size(); ++i) {
      T total = 0;
      for (auto& p : parts) total += reinterpret_cast<const T*>(p.data())[i];
      d[i] = total;
    }
  }
  ThreadHub& hub_;
  int rank_;
};

// Two ranks, each with half of every batch, train as one trainer with the
// whole batch does (within float rounding; dead-code replacement on), keep
// bitwise-identical states, and evaluate (sharded) to the same metrics.
TEST(Trainer, TwoRanksTrainAsOneTrainer) {
  TokFsmSetup s = tokfsm_setup(32, 8);
  s.opts.replace_after_steps = 2;
  auto backend = make_backend("cpu");
  auto factory = [] { return tiny_tokfsm_model(32, 2, 20); };
  Trainer one(factory, s.data, s.opts, *backend);
  std::vector<StepMetrics> expected;
  for (int i = 0; i < 4; ++i) expected.push_back(one.train_step());
  EvalMetrics expected_eval = one.evaluate();

  ThreadHub hub(2);
  struct RankRun {
    std::vector<StepMetrics> steps;
    EvalMetrics eval;
    std::map<std::string, Tensor> state;
  };
  auto run_rank = [&](int r) {
    ThreadRank rank(hub, r);
    TrainerOptions o = s.opts;
    o.collective = &rank;
    Trainer t(factory, s.data, o, *backend);
    RankRun out;
    for (int i = 0; i < 4; ++i) out.steps.push_back(t.train_step());
    out.eval = t.evaluate();
    out.state = t.state();
    return out;
  };
  auto second = std::async(std::launch::async, run_rank, 1);
  RankRun r0 = run_rank(0), r1 = second.get();
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(r0.steps[i].loss, expected[i].loss, 1e-5) << "step " << i + 1;
    EXPECT_NEAR(r0.steps[i].grad_norm, expected[i].grad_norm, 1e-4 * expected[i].grad_norm) << "step " << i + 1;
    EXPECT_EQ(r0.steps[i].tokens, expected[i].tokens);
    EXPECT_EQ(r0.steps[i].loss, r1.steps[i].loss);
  }
  EXPECT_NEAR(r0.eval.loss, expected_eval.loss, 1e-5);
  EXPECT_EQ(r0.eval.tokens, expected_eval.tokens);
  EXPECT_EQ(r0.eval.loss, r1.eval.loss);
  ASSERT_EQ(r0.state.size(), one.state().size());
  for (auto& [name, t] : r0.state) {
    EXPECT_TRUE(t.bitwise_equal(r1.state.at(name))) << name;
    // The same codes fired (usage summed over the ranks) as in one trainer.
    if (name.rfind("usage.", 0) == 0) {
      EXPECT_TRUE(t.bitwise_equal(one.state().at(name))) << name;
    }
  }
  // A batch that does not split over the ranks is refused.
  ThreadHub three(3);
  ThreadRank rank(three, 0);
  TrainerOptions o = s.opts;
  o.collective = &rank;
  EXPECT_THROW(Trainer(factory, s.data, o, *backend), Error);
}

}  // namespace
}  // namespace cb
