// TokFSM (train/tokfsm.h): construction invariants, exact digit counts,
// numerals, sample layout, transition metrics (including the fixes of the
// original's quirks, docs/original.md#tokfsm-sampling-and-metrics:
// position-aligned reading around a mid-sequence EOS, next-state
// probabilities for any N), valid_input, and fsm.npy save/load.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "frontend/npy.h"
#include "train/tokfsm.h"

namespace cb {
namespace {

namespace fs = std::filesystem;

// A scratch directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("cb_test_tokfsm_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// The 4-cycle 0 -> 1 -> 2 -> 3 -> 0 in base 2 (2 digits per state).
Fsm cycle4() {
  std::vector<double> m(16, 0.0);
  for (int s = 0; s < 4; ++s) m[size_t(s * 4 + (s + 1) % 4)] = 1.0;
  return Fsm::from_matrix(Tensor::from_vector(m, {4, 4}), 2);
}

TEST(TokFsm, DigitsAreExactIntegerCeilLog) {
  EXPECT_EQ(fsm_digits(100, 10), 2);
  EXPECT_EQ(fsm_digits(4, 2), 2);
  EXPECT_EQ(fsm_digits(1000, 10), 3);
  EXPECT_EQ(fsm_digits(101, 10), 3);
  EXPECT_EQ(fsm_digits(99, 10), 2);
  EXPECT_EQ(fsm_digits(5, 2), 3);
  EXPECT_EQ(fsm_digits(256, 16), 2);
  EXPECT_EQ(fsm_digits(257, 16), 3);
  EXPECT_EQ(fsm_digits(1, 10), 1);
  EXPECT_EQ(fsm_digits(10, 10), 1);
  EXPECT_EQ(fsm_digits(11, 10), 2);
  EXPECT_EQ(fsm_digits(INT64_MAX, 2), 63);
  EXPECT_THROW(fsm_digits(0, 10), Error);
  EXPECT_THROW(fsm_digits(10, 1), Error);
  EXPECT_THROW(fsm_digits(10, 37), Error);
}

TEST(TokFsm, RandomConstructionInvariants) {
  Fsm f = Fsm::random({.num_states = 100, .num_edges = 10, .base = 10, .seed = 42});
  EXPECT_EQ(f.num_states(), 100);
  EXPECT_EQ(f.num_edges(), 10);
  EXPECT_EQ(f.digits(), 2);
  EXPECT_EQ(f.vocab_size(), 11);
  EXPECT_EQ(f.special_id(), 10);
  Tensor m = f.matrix();
  ASSERT_EQ(m.dtype(), DType::f64);
  ASSERT_EQ(m.dims(), (std::vector<int64_t>{100, 100}));
  int64_t in_edges = 0;
  for (int64_t s = 0; s < 100; ++s) {
    const auto& succ = f.successors(s);
    ASSERT_EQ(succ.size(), 10u) << "state " << s;
    EXPECT_EQ(std::set<int64_t>(succ.begin(), succ.end()).size(), 10u) << "successors of " << s << " not distinct";
    EXPECT_TRUE(std::is_sorted(succ.begin(), succ.end()));
    double row = 0.0;
    int nonzero = 0;
    for (int64_t t = 0; t < 100; ++t) {
      double p = m.data<double>()[s * 100 + t];
      row += p;
      nonzero += p > 0;
      EXPECT_EQ(p > 0, f.valid_transition(s, t));
      if (p > 0) {
        EXPECT_EQ(p, 0.1);
      }
    }
    EXPECT_EQ(nonzero, 10);
    EXPECT_NEAR(row, 1.0, 1e-12) << "row " << s;
    for (int64_t p : f.predecessors(s)) EXPECT_TRUE(f.valid_transition(p, s));
    in_edges += int64_t(f.predecessors(s).size());
  }
  EXPECT_EQ(in_edges, 1000);

  // The construction is a function of the seed.
  Fsm same = Fsm::random({.num_states = 100, .num_edges = 10, .base = 10, .seed = 42});
  EXPECT_TRUE(same.matrix().bitwise_equal(m));
  Fsm other = Fsm::random({.num_states = 100, .num_edges = 10, .base = 10, .seed = 43});
  EXPECT_FALSE(other.matrix().bitwise_equal(m));

  // Self-loops are allowed: with E = N every state has every successor.
  Fsm full = Fsm::random({.num_states = 5, .num_edges = 5, .base = 10, .seed = 1});
  for (int64_t s = 0; s < 5; ++s) EXPECT_TRUE(full.valid_transition(s, s));
  EXPECT_THROW(Fsm::random({.num_states = 5, .num_edges = 6, .base = 10, .seed = 1}), Error);
  EXPECT_THROW(Fsm::random({.num_states = 5, .num_edges = 0, .base = 10, .seed = 1}), Error);
}

TEST(TokFsm, NumeralsAndVocabulary) {
  Fsm hex = Fsm::random({.num_states = 300, .num_edges = 3, .base = 16, .seed = 7});
  EXPECT_EQ(hex.digits(), 3);
  EXPECT_EQ(hex.state_string(0), "000");
  EXPECT_EQ(hex.state_string(10), "00A");
  EXPECT_EQ(hex.state_string(255), "0FF");
  EXPECT_EQ(hex.state_string(299), "12B");
  EXPECT_EQ(hex.parse_state("0FF"), 255);
  EXPECT_EQ(hex.parse_state("0ff"), 255);
  EXPECT_EQ(hex.parse_state("12C"), -1);  // 300: not a state
  EXPECT_EQ(hex.parse_state("0G0"), -1);  // not a base-16 digit
  EXPECT_EQ(hex.parse_state("FF"), -1);   // wrong width
  EXPECT_THROW(hex.state_string(300), Error);
  EXPECT_EQ(hex.trajectory_tokens(std::vector<int64_t>{299, 10}), (std::vector<int64_t>{1, 2, 11, 0, 0, 10}));
  EXPECT_EQ(hex.trajectory_string(std::vector<int64_t>{299, 10}), "12B00A");
  std::vector<std::string> vocab = hex.vocabulary();
  ASSERT_EQ(vocab.size(), 17u);
  EXPECT_EQ(vocab[9], "9");
  EXPECT_EQ(vocab[10], "A");
  EXPECT_EQ(vocab[15], "F");
  EXPECT_EQ(vocab[16], "<|endoftext|>");

  Fsm bin = cycle4();
  EXPECT_EQ(bin.digits(), 2);
  EXPECT_EQ(bin.state_string(2), "10");
  EXPECT_EQ(bin.trajectory_string(std::vector<int64_t>{0, 1, 2, 3}), "00011011");
  EXPECT_EQ(bin.parse_state("12"), -1);
}

TEST(TokFsm, SampleLayoutIsBosThenDigitsTruncated) {
  Fsm f = Fsm::random({.num_states = 100, .num_edges = 10, .base = 10, .seed = 42});
  EXPECT_EQ(f.sample_states(128), 64);  // the original's seq_len / digits
  Rng rng(9), replay(9);
  std::vector<int64_t> sample = f.sample_tokens(16, rng);
  ASSERT_EQ(sample.size(), 16u);
  EXPECT_EQ(sample[0], f.special_id());
  std::vector<int64_t> trajectory = f.trajectory(8, replay);  // 16 / 2 states
  std::vector<int64_t> digits = f.trajectory_tokens(trajectory);
  ASSERT_EQ(digits.size(), 16u);
  // [BOS, d1 ... d15]: the last digit of the 8th state is dropped.
  EXPECT_EQ(std::vector<int64_t>(sample.begin() + 1, sample.end()),
            std::vector<int64_t>(digits.begin(), digits.end() - 1));
  EXPECT_EQ(rng.state(), replay.state());

  // digits = 3 does not divide T - 1 = 16: ceil(16 / 3) = 6 states, 18 digits, 16 kept.
  Fsm f3 = Fsm::random({.num_states = 1000, .num_edges = 4, .base = 10, .seed = 3});
  EXPECT_EQ(f3.sample_states(17), 6);
  Rng r3(5), replay3(5);
  std::vector<int64_t> s3 = f3.sample_tokens(17, r3);
  std::vector<int64_t> d3 = f3.trajectory_tokens(f3.trajectory(6, replay3));
  ASSERT_EQ(s3.size(), 17u);
  EXPECT_EQ(std::vector<int64_t>(s3.begin() + 1, s3.end()), std::vector<int64_t>(d3.begin(), d3.begin() + 16));
  EXPECT_THROW(f.sample_tokens(1, rng), Error);
}

TEST(TokFsm, GeneratedSamplesAreAllValidTransitions) {
  for (int64_t base : {10, 2, 16}) {
    Fsm f = Fsm::random({.num_states = base == 2 ? 8 : 100, .num_edges = 3, .base = base, .seed = uint64_t(base)});
    Rng rng(11);
    std::vector<std::vector<int64_t>> samples;
    for (int i = 0; i < 200; ++i) samples.push_back(f.sample_tokens(64, rng));
    TransitionAccuracy a = token_transition_accuracy(f, samples);
    EXPECT_EQ(a.sequences, 200);
    // 63 digits: floor(63 / digits) complete states.
    EXPECT_EQ(a.pairs, 200 * (63 / f.digits() - 1)) << "base " << base;
    EXPECT_EQ(a.overall, 1.0) << "base " << base;
    EXPECT_EQ(a.first, 1.0) << "base " << base;
  }
}

TEST(TokFsm, CorruptedSequencesGiveTheRightFraction) {
  Fsm f = cycle4();
  //   0->1 ok, 1->3 bad, 3->3 bad, 3->0 ok; first pair ok
  //   0->2 bad, 2->3 ok; first pair bad
  //   a single state: no pairs, not first-valid
  TransitionAccuracy a = transition_accuracy(f, {{0, 1, 3, 3, 0}, {0, 2, 3}, {1}});
  EXPECT_EQ(a.pairs, 6);
  EXPECT_EQ(a.valid_pairs, 3);
  EXPECT_DOUBLE_EQ(a.overall, 0.5);
  EXPECT_EQ(a.sequences, 3);
  EXPECT_EQ(a.first_valid, 1);
  EXPECT_DOUBLE_EQ(a.first, 1.0 / 3.0);
  // Unreadable states (-1) invalidate their pairs.
  TransitionAccuracy b = transition_accuracy(f, {{0, 1, -1, 3, 0}});
  EXPECT_EQ(b.pairs, 4);
  EXPECT_EQ(b.valid_pairs, 2);
  EXPECT_EQ(transition_accuracy(f, {}).overall, 0.0);

  // Through tokens and the [B, T] tensor overload: the second row has its
  // third state changed from 10 (2) to 00 (0).
  const int64_t E = f.special_id();
  Tensor t = Tensor::from_vector<int64_t>({E, 0, 0, 0, 1, 1, 0, 1, 1, 0,  //
                                           E, 0, 0, 0, 1, 0, 0, 1, 1, 0},
                                          {2, 10});
  TransitionAccuracy c = token_transition_accuracy(f, t);
  EXPECT_EQ(c.pairs, 6);        // 4 states per row (the trailing "0" is a partial chunk)
  EXPECT_EQ(c.valid_pairs, 4);  // row 2: 0->1 ok, 1->0 bad, 0->3 bad
  EXPECT_DOUBLE_EQ(c.first, 1.0);
  EXPECT_THROW(token_transition_accuracy(f, Tensor::from_vector<float>({1, 2}, {1, 2})), Error);
}

TEST(TokFsm, MidSequenceEosKeepsLaterStatesAligned) {
  Fsm f = cycle4();
  const int64_t E = f.special_id();
  // [BOS] 00 01 10 11 00: states 0 1 2 3 0.
  std::vector<int64_t> clean{E, 0, 0, 0, 1, 1, 0, 1, 1, 0, 0};
  EXPECT_EQ(f.tokens_to_states(clean), (std::vector<int64_t>{0, 1, 2, 3, 0}));
  // An EOS in place of the first digit of state 2: only that state is lost.
  // (The original deleted the EOS and read 00 01 01 10 -> 0 1 1 2.)
  std::vector<int64_t> eos_inside = clean;
  eos_inside[5] = E;
  EXPECT_EQ(f.tokens_to_states(eos_inside), (std::vector<int64_t>{0, 1, -1, 3, 0}));
  TransitionAccuracy a = token_transition_accuracy(f, {eos_inside});
  EXPECT_EQ(a.pairs, 4);
  EXPECT_EQ(a.valid_pairs, 2);
  // Trailing EOS/PAD are the end of the sequence.
  std::vector<int64_t> padded = clean;
  padded.insert(padded.end(), {E, E, E});
  EXPECT_EQ(f.tokens_to_states(padded), f.tokens_to_states(clean));
  // Only one leading BOS is the prompt: a second one occupies a digit slot
  // ([BOS] E0 01 10).
  std::vector<int64_t> two_bos{E, E, 0, 0, 1, 1, 0};
  EXPECT_EQ(f.tokens_to_states(two_bos), (std::vector<int64_t>{-1, 1, 2}));
  // Without a BOS the first token is a digit; an out-of-range id is unreadable.
  EXPECT_EQ(f.tokens_to_states(std::vector<int64_t>{0, 1, 1, 7}), (std::vector<int64_t>{1, -1}));
  // A trailing partial chunk is dropped.
  EXPECT_EQ(f.tokens_to_states(std::vector<int64_t>{E, 1, 1, 0}), (std::vector<int64_t>{3}));
  EXPECT_TRUE(f.tokens_to_states(std::vector<int64_t>{E}).empty());
}

TEST(TokFsm, ValidInputMatchesTheSpecAndGeneralises) {
  Fsm f = Fsm::random({.num_states = 100, .num_edges = 10, .base = 10, .seed = 42});
  // Up to digits + 1 = 3 characters: the original's rule, checked exhaustively.
  for (int v = 0; v < 1000; ++v) {
    std::string s = std::to_string(1000 + v).substr(1);  // "000" ... "999"
    bool expected = false;
    for (int64_t t : f.successors(f.parse_state(s.substr(0, 2)))) expected |= f.state_string(t)[0] == s[2];
    EXPECT_EQ(f.valid_input(s), expected) << s;
    EXPECT_TRUE(f.valid_input(s.substr(0, 2)));
    EXPECT_TRUE(f.valid_input(s.substr(0, 1)));
  }
  EXPECT_TRUE(f.valid_input(""));
  EXPECT_FALSE(f.valid_input("1x"));
  // Longer inputs: prefixes of trajectory strings are valid, a bad pair is not.
  Rng rng(4);
  std::vector<int64_t> traj = f.trajectory(6, rng);
  std::string good = f.trajectory_string(traj);
  for (size_t n = 0; n <= good.size(); ++n) EXPECT_TRUE(f.valid_input(good.substr(0, n))) << good.substr(0, n);
  int64_t bad_next = 0;
  while (f.valid_transition(traj[2], bad_next)) ++bad_next;
  std::vector<int64_t> broken(traj.begin(), traj.begin() + 3);
  broken.push_back(bad_next);
  EXPECT_FALSE(f.valid_input(f.trajectory_string(broken)));

  // N = 101 (digits 3): prefixes that name no state are not valid inputs.
  Fsm g = Fsm::random({.num_states = 101, .num_edges = 5, .base = 10, .seed = 1});
  EXPECT_TRUE(g.valid_input("1"));
  EXPECT_TRUE(g.valid_input("10"));
  EXPECT_TRUE(g.valid_input("100"));
  EXPECT_FALSE(g.valid_input("11"));  // 110.. > 100
  EXPECT_FALSE(g.valid_input("2"));
  EXPECT_FALSE(g.valid_input("101"));  // 101 is not a state
}

TEST(TokFsm, StepFollowsTheRowDistribution) {
  // 0 -> {0: 0.25, 1: 0.75}; 1 -> {0: 1}.
  Fsm f = Fsm::from_matrix(Tensor::from_vector<double>({0.25, 0.75, 1.0, 0.0}, {2, 2}), 10);
  Rng rng(2024);
  int ones = 0;
  const int n = 40000;
  for (int i = 0; i < n; ++i) ones += f.step(0, rng) == 1;
  EXPECT_NEAR(double(ones) / n, 0.75, 0.01);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(f.step(1, rng), 0);
  EXPECT_THROW(f.step(2, rng), Error);
}

TEST(TokFsm, TrajectoriesFromGivenStarts) {
  Fsm f = Fsm::random({.num_states = 50, .num_edges = 4, .base = 10, .seed = 8});
  std::vector<int64_t> starts{3, 3, 49, 0};
  Rng a(1), b(1);
  auto trajs = f.trajectories_from(starts, 7, a);
  ASSERT_EQ(trajs.size(), 4u);
  for (size_t i = 0; i < trajs.size(); ++i) {
    ASSERT_EQ(trajs[i].size(), 7u);
    EXPECT_EQ(trajs[i][0], starts[i]);
  }
  EXPECT_EQ(transition_accuracy(f, trajs).overall, 1.0);
  EXPECT_EQ(f.trajectories_from(starts, 7, b), trajs);
  EXPECT_THROW(f.trajectories_from(std::vector<int64_t>{50}, 3, a), Error);
}

TEST(TokFsm, ReversedMachine) {
  Fsm f = Fsm::random({.num_states = 30, .num_edges = 3, .base = 10, .seed = 5});
  Fsm r = f.reversed();
  for (int64_t t = 0; t < 30; ++t) {
    EXPECT_EQ(r.successors(t), f.predecessors(t));
    for (double p : r.successor_probs(t)) EXPECT_DOUBLE_EQ(p, 1.0 / double(f.predecessors(t).size()));
  }
  // Rows of a uniform machine come back exactly.
  EXPECT_TRUE(r.reversed().matrix().bitwise_equal(f.matrix()));
  // A state nobody reaches is a dead end of the reversed machine.
  Fsm star = Fsm::from_matrix(Tensor::from_vector<double>({0, 1, 0, 1}, {2, 2}), 10);  // 0->1, 1->1
  Fsm back = star.reversed();
  EXPECT_TRUE(back.successors(0).empty());
  Rng rng(0);
  EXPECT_THROW(back.step(0, rng), Error);
}

TEST(TokFsm, SaveLoadRoundTripAndNumpyFile) {
  TempDir dir;
  Fsm f = Fsm::random({.num_states = 20, .num_edges = 4, .base = 10, .seed = 12});
  f.save(dir.path.string());  // a directory: writes fsm.npy in it
  ASSERT_TRUE(fs::exists(dir.path / "fsm.npy"));
  Tensor on_disk = npy_read((dir.path / "fsm.npy").string());
  EXPECT_EQ(on_disk.dtype(), DType::f64);
  EXPECT_EQ(on_disk.dims(), (std::vector<int64_t>{20, 20}));
  Fsm loaded = Fsm::load(dir.path.string(), 10);
  EXPECT_TRUE(loaded.matrix().bitwise_equal(f.matrix()));
  EXPECT_EQ(loaded.num_edges(), 4);
  for (int64_t s = 0; s < 20; ++s) EXPECT_EQ(loaded.successors(s), f.successors(s));
  f.save((dir.path / "other.npy").string());
  EXPECT_TRUE(Fsm::load((dir.path / "other.npy").string(), 10).matrix().bitwise_equal(f.matrix()));

  // The bytes numpy.save writes for a float64 (3, 3) matrix (format 1.0).
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 3), }";
  header.resize(128 - 10 - 1, ' ');
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += char(header.size() & 0xff);
  bytes += char(header.size() >> 8);
  bytes += header;
  const double rows[9] = {0, 0.5, 0.5, 1, 0, 0, 0, 0, 1};
  bytes.append(reinterpret_cast<const char*>(rows), sizeof(rows));
  {
    std::ofstream out(dir.path / "numpy_fsm.npy", std::ios::binary);
    out << bytes;
  }
  Fsm np = Fsm::load((dir.path / "numpy_fsm.npy").string(), 10);
  EXPECT_EQ(np.successors(0), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(np.num_edges(), 2);
  EXPECT_EQ(np.transition_prob(0, 2), 0.5);
  EXPECT_TRUE(np.valid_transition(2, 2));
  EXPECT_FALSE(np.valid_transition(1, 2));

  // Malformed matrices are rejected with the row or shape named.
  try {
    Fsm::from_matrix(Tensor::from_vector<double>({0.5, 0.4, 0, 1}, {2, 2}), 10);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 0"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Fsm::from_matrix(Tensor::from_vector<double>({-0.5, 1.5, 0, 1}, {2, 2}), 10), Error);
  EXPECT_THROW(Fsm::from_matrix(Tensor::from_vector<double>({1, 0, 0}, {1, 3}), 10), Error);
  EXPECT_THROW(Fsm::from_matrix(Tensor::from_vector<int64_t>({1}, {1, 1}), 10), Error);
  EXPECT_THROW(Fsm::load((dir.path / "missing.npy").string(), 10), Error);
}

// The exact next-token distribution of the machine: after [BOS] + numeral(s)
// + a partial numeral, the probability of each next digit among the
// successors of s that continue the partial numeral.
std::vector<double> oracle_next_token(const Fsm& f, const std::vector<int64_t>& prefix) {
  EXPECT_EQ(prefix[0], f.special_id());
  int64_t s = 0;
  for (int64_t i = 1; i <= f.digits(); ++i) s = s * f.base() + prefix[size_t(i)];
  std::vector<int64_t> partial(prefix.begin() + 1 + f.digits(), prefix.end());
  std::vector<double> dist(size_t(f.vocab_size()), 0.0);
  double total = 0.0;
  for (size_t i = 0; i < f.successors(s).size(); ++i) {
    int64_t t = f.successors(s)[i];
    std::vector<int64_t> digits = f.trajectory_tokens(std::vector<int64_t>{t});
    if (!std::equal(partial.begin(), partial.end(), digits.begin())) continue;
    dist[size_t(digits[partial.size()])] += f.successor_probs(s)[i];
    total += f.successor_probs(s)[i];
  }
  // A prefix no successor continues: any distribution (its states already have
  // probability 0); uniform here.
  for (double& p : dist) p = total > 0 ? p / total : 1.0 / double(f.vocab_size());
  return dist;
}

TEST(TokFsm, NextStateProbsForAnyNumberOfStates) {
  for (auto [n, base] : std::vector<std::pair<int64_t, int64_t>>{{100, 10}, {101, 10}, {4, 2}, {37, 3}}) {
    Fsm f = Fsm::random({.num_states = n, .num_edges = std::min<int64_t>(n, 3), .base = base, .seed = 77});
    std::vector<size_t> batch_sizes;
    NextTokenProbs oracle = [&](const std::vector<std::vector<int64_t>>& prefixes) {
      batch_sizes.push_back(prefixes.size());
      std::vector<std::vector<double>> out;
      for (const auto& p : prefixes) {
        EXPECT_EQ(p.size(), prefixes[0].size());
        out.push_back(oracle_next_token(f, p));
      }
      return out;
    };
    std::vector<int64_t> states{0, n - 1, n / 2};
    auto probs = next_state_probs(f, states, oracle);
    // One call per digit; prefixes of j digits over the numerals of 0..N-1 only.
    ASSERT_EQ(int64_t(batch_sizes.size()), f.digits());
    int64_t span = 1;
    for (int64_t j = 0; j < f.digits(); ++j) span *= base;
    for (int64_t j = 0; j < f.digits(); ++j) {
      EXPECT_EQ(batch_sizes[size_t(j)], states.size() * size_t((n + span - 1) / span)) << "digit " << j;
      span /= base;
    }
    for (size_t i = 0; i < states.size(); ++i)
      for (int64_t t = 0; t < n; ++t)
        EXPECT_NEAR(probs[i][size_t(t)], f.transition_prob(states[i], t), 1e-12)
            << "N " << n << " " << states[i] << "->" << t;
    batch_sizes.clear();
    EXPECT_DOUBLE_EQ(first_transition_accuracy(f, oracle), 1.0) << "N " << n;
  }
}

TEST(TokFsm, FirstTransitionAccuracyOfAnUninformedModel) {
  Fsm f = Fsm::random({.num_states = 20, .num_edges = 4, .base = 10, .seed = 3});
  // Uniform over digits: all next states tie, so the top 4 are states 0..3.
  NextTokenProbs uniform = [&](const std::vector<std::vector<int64_t>>& prefixes) {
    std::vector<double> d(11, 1.0 / 11.0);
    return std::vector<std::vector<double>>(prefixes.size(), d);
  };
  double expected = 0.0;
  for (int64_t s = 0; s < 20; ++s) {
    int hits = 0;
    for (int64_t t = 0; t < 4; ++t) hits += f.valid_transition(s, t);
    expected += hits / 4.0;
  }
  EXPECT_DOUBLE_EQ(first_transition_accuracy(f, uniform), expected / 20.0);
  std::vector<double> probs(20, 0.0);
  probs[size_t(f.successors(5)[0])] = 0.9;
  probs[size_t(f.successors(5)[1])] = 0.8;
  // The top 4: those two successors, then the two lowest other states (ties).
  int hits = 2;
  for (int64_t t = 0, taken = 0; taken < 2; ++t) {
    if (t == f.successors(5)[0] || t == f.successors(5)[1]) continue;
    hits += f.valid_transition(5, t);
    ++taken;
  }
  EXPECT_DOUBLE_EQ(correct_next_state_fraction(f, 5, probs), hits / 4.0);
  EXPECT_THROW(correct_next_state_fraction(f, 5, std::vector<double>(19, 0.0)), Error);
  NextTokenProbs wrong_size = [](const std::vector<std::vector<int64_t>>& prefixes) {
    return std::vector<std::vector<double>>(prefixes.size(), std::vector<double>(3, 0.1));
  };
  EXPECT_THROW(first_transition_accuracy(f, wrong_size), Error);
}

}  // namespace
}  // namespace cb
