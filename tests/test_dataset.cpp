// The training data path: the portable generator (support/rng.h, pinned
// outputs), and the datasets (train/dataset.h): TokFSM batches and packed
// text, their determinism in (seed, step), the resume property, the fixed
// eval set, and text packing/splitting on the committed fixture
// tests/data/dataset/ with a byte tokenizer.
//
// The pinned generator values: xoshiro256** from state {1, 2, 3, 4} and
// splitmix64 from 1234567 are the published reference vectors of the two
// algorithms; the others come from the independent Python model of rng.h in
// scripts/train_rng_reference.py.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "support/rng.h"
#include "train/dataset.h"

namespace cb {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// Rng

TEST(Rng, ReferenceVectors) {
  Rng x = Rng::from_state({1, 2, 3, 4});
  const uint64_t xoshiro[] = {
      11520ULL, 0ULL, 1509978240ULL, 1215971899390074240ULL, 1216172134540287360ULL, 607988272756665600ULL};
  for (uint64_t v : xoshiro) EXPECT_EQ(x.next_u64(), v);
  SplitMix64 sm(1234567);
  EXPECT_EQ(sm.next(), 6457827717110365317ULL);
  EXPECT_EQ(sm.next(), 3203168211198807973ULL);
  EXPECT_EQ(sm.next(), 9817491932198370423ULL);
  EXPECT_THROW(Rng::from_state({0, 0, 0, 0}), Error);
}

TEST(Rng, PinnedDraws) {
  Rng r(42);
  EXPECT_EQ(r.next_u64(), 1546998764402558742ULL);
  EXPECT_EQ(r.next_u64(), 6990951692964543102ULL);
  EXPECT_EQ(r.next_u64(), 12544586762248559009ULL);

  Rng b(42);
  std::vector<uint64_t> below10;
  for (int i = 0; i < 10; ++i) below10.push_back(b.below(10));
  EXPECT_EQ(below10, (std::vector<uint64_t>{2, 2, 9, 3, 6, 4, 4, 7, 8, 5}));
  // n = 3 * 2^62: draws below 2^64 mod n = 2^62 are rejected, so the first
  // raw value (1546998764402558742 < 2^62) is skipped.
  Rng big(42);
  EXPECT_EQ(big.below(3ULL << 62), 6990951692964543102ULL);
  EXPECT_EQ(big.below(3ULL << 62), 12544586762248559009ULL);

  Rng u(7);
  EXPECT_EQ(u.uniform_double(), 0.7005764821796896);
  EXPECT_EQ(u.uniform_double(), 0.2787512294737843);
  EXPECT_EQ(u.uniform_double(), 0.8396274618764198);
  EXPECT_EQ(u.uniform_float(), 0.9810976982116699f);
  EXPECT_EQ(u.uniform_float(), 0.9908602237701416f);

  // Box-Muller goes through the C library's log/cos/sin (see rng.h).
  Rng n(7);
  auto [z0, z1] = n.normal_pair();
  EXPECT_NEAR(z0, -0.2790239910251981, 1e-14);
  EXPECT_NEAR(z1, 1.5277231859624536, 1e-14);
  EXPECT_NEAR(n.normal(), 1.8997685786889567, 1e-14);

  Rng s(5);
  std::vector<int> v{0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  s.shuffle(v);
  EXPECT_EQ(v, (std::vector<int>{4, 2, 9, 3, 7, 1, 8, 6, 0, 5}));
  Rng c(5);
  EXPECT_EQ(c.choice_without_replacement(100, 10), (std::vector<int64_t>{85, 28, 1, 65, 77, 55, 93, 98, 45, 4}));

  Rng d0 = Rng::derive(42, 1, 0), d1 = Rng::derive(42, 1, 1);
  EXPECT_EQ(d0.next_u64(), 9265527234211573160ULL);
  EXPECT_EQ(d1.next_u64(), 3155233556729922339ULL);
}

TEST(Rng, RangesAndDistributions) {
  Rng r(1);
  std::vector<int> counts(6, 0);
  for (int i = 0; i < 60000; ++i) {
    int64_t v = r.uniform_int(-2, 4);
    ASSERT_GE(v, -2);
    ASSERT_LT(v, 4);
    ++counts[size_t(v + 2)];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < 100000; ++i) {
    float f = r.uniform_float();
    ASSERT_GE(f, 0.0f);
    ASSERT_LT(f, 1.0f);
    double z = r.normal(1.0, 2.0);
    sum += z;
    sum_sq += (z - 1.0) * (z - 1.0);
  }
  EXPECT_NEAR(sum / 100000, 1.0, 0.03);
  EXPECT_NEAR(sum_sq / 100000, 4.0, 0.08);
  std::vector<int64_t> pick = r.choice_without_replacement(7, 7);
  EXPECT_EQ(std::set<int64_t>(pick.begin(), pick.end()).size(), 7u);
  EXPECT_TRUE(r.choice_without_replacement(7, 0).empty());
  EXPECT_THROW(r.choice_without_replacement(3, 4), Error);
  EXPECT_THROW(r.below(0), Error);
  EXPECT_THROW(r.uniform_int(3, 3), Error);
  // A copy continues the same stream.
  Rng copy = r;
  EXPECT_EQ(copy.next_u64(), r.next_u64());
  Rng restored = Rng::from_state(r.state());
  EXPECT_EQ(restored.next_u64(), r.next_u64());
}

// ---------------------------------------------------------------------------
// TokFSM dataset

std::shared_ptr<const Fsm> test_fsm() {
  return std::make_shared<const Fsm>(Fsm::random({.num_states = 100, .num_edges = 10, .base = 10, .seed = 42}));
}

std::vector<int64_t> row(const Tensor& t, int64_t r) {
  const int64_t* d = t.data<int64_t>() + r * t.dim(1);
  return std::vector<int64_t>(d, d + t.dim(1));
}

TEST(TokFsmDataset, BatchLayoutAndValidity) {
  auto fsm = test_fsm();
  TokFsmDataset ds(fsm, {.seq_len = 32, .seed = 3, .eval_seed = 4, .eval_samples = 10});
  EXPECT_EQ(ds.block_size(), 32);
  Tensor batch = ds.train_batch(0, 8);
  ASSERT_EQ(batch.dtype(), DType::i64);
  ASSERT_EQ(batch.dims(), (std::vector<int64_t>{8, 32}));
  for (int64_t r = 0; r < 8; ++r) {
    std::vector<int64_t> tokens = row(batch, r);
    EXPECT_EQ(tokens[0], fsm->special_id());
    for (size_t i = 1; i < tokens.size(); ++i) {
      EXPECT_GE(tokens[i], 0);
      EXPECT_LT(tokens[i], 10);
    }
    // Row r of step 0 is sample r: Fsm::sample_tokens on its own stream.
    Rng rng = Rng::derive(3, TokFsmDataset::kTrainStream, uint64_t(r));
    EXPECT_EQ(tokens, fsm->sample_tokens(32, rng));
  }
  TransitionAccuracy a = token_transition_accuracy(*fsm, batch);
  EXPECT_EQ(a.overall, 1.0);
  EXPECT_EQ(a.pairs, 8 * 14);  // 31 digits: 15 complete states per row
  EXPECT_EQ(token_transition_accuracy(*fsm, ds.eval_batch(0, 10)).overall, 1.0);
  EXPECT_NE(ds.describe().find("100 states"), std::string::npos) << ds.describe();
  EXPECT_THROW(ds.eval_batch(5, 6), Error);
  EXPECT_THROW(ds.train_batch(-1, 8), Error);
  EXPECT_THROW(ds.train_rows(0, 8, 6, 3), Error);
  EXPECT_THROW(TokFsmDataset(fsm, {.seq_len = 1}), Error);
}

TEST(TokFsmDataset, DeterministicInSeedAndStep) {
  auto fsm = test_fsm();
  TokFsmDataset a(fsm, {.seq_len = 16, .seed = 7}), b(fsm, {.seq_len = 16, .seed = 7});
  TokFsmDataset other(fsm, {.seq_len = 16, .seed = 8});
  for (int64_t step : {0, 1, 17, 100000}) {
    EXPECT_TRUE(a.train_batch(step, 4).bitwise_equal(b.train_batch(step, 4))) << "step " << step;
    EXPECT_FALSE(a.train_batch(step, 4).bitwise_equal(other.train_batch(step, 4))) << "step " << step;
  }
  EXPECT_FALSE(a.train_batch(0, 4).bitwise_equal(a.train_batch(1, 4)));
  // Step s, batch B holds samples s*B ... s*B + B - 1.
  Tensor six = a.train_batch(1, 6);  // samples 6..11
  Tensor two = a.train_batch(3, 2);  // samples 6..7
  EXPECT_EQ(row(two, 0), row(six, 0));
  EXPECT_EQ(row(two, 1), row(six, 1));
  // Data-parallel shards put together are the whole batch.
  Tensor full = a.train_batch(5, 6);
  for (int64_t r = 0; r < 6; ++r) EXPECT_EQ(row(a.train_rows(5, 6, r, 1), 0), row(full, r));
}

TEST(TokFsmDataset, ResumeGivesTheSameBatches) {
  auto fsm = test_fsm();
  const TokFsmDataset::Config cfg{.seq_len = 24, .seed = 99, .eval_seed = 5, .eval_samples = 16};
  std::vector<Tensor> uninterrupted;
  {
    TokFsmDataset ds(fsm, cfg);
    for (int64_t step = 0; step < 10; ++step) uninterrupted.push_back(ds.train_batch(step, 3));
  }
  std::vector<Tensor> resumed;
  {
    TokFsmDataset ds(fsm, cfg);
    for (int64_t step = 0; step < 5; ++step) resumed.push_back(ds.train_batch(step, 3));
  }
  {
    // A fresh process: a new machine from the same seed, a new dataset at step 5.
    auto fsm_again = test_fsm();
    TokFsmDataset ds(fsm_again, cfg);
    for (int64_t step = 5; step < 10; ++step) resumed.push_back(ds.train_batch(step, 3));
  }
  for (int64_t step = 0; step < 10; ++step)
    EXPECT_TRUE(uninterrupted[size_t(step)].bitwise_equal(resumed[size_t(step)])) << "step " << step;
}

TEST(TokFsmDataset, EvalSetIsFixedAndSeparate) {
  auto fsm = test_fsm();
  TokFsmDataset a(fsm, {.seq_len = 16, .seed = 1, .eval_seed = 2, .eval_samples = 8});
  TokFsmDataset b(fsm, {.seq_len = 16, .seed = 50, .eval_seed = 2, .eval_samples = 8});
  // Training seed does not change the eval set; evaluating twice gives the same blocks.
  EXPECT_TRUE(a.eval_batch(0, 8).bitwise_equal(b.eval_batch(0, 8)));
  EXPECT_TRUE(a.eval_batch(0, 8).bitwise_equal(a.eval_batch(0, 8)));
  EXPECT_EQ(row(a.eval_batch(3, 2), 0), row(a.eval_batch(0, 8), 3));
  // Equal train and eval seeds still give different samples (separate streams).
  TokFsmDataset same(fsm, {.seq_len = 16, .seed = 2, .eval_seed = 2, .eval_samples = 8});
  EXPECT_FALSE(same.train_batch(0, 8).bitwise_equal(same.eval_batch(0, 8)));
  TokFsmDataset c(fsm, {.seq_len = 16, .seed = 1, .eval_seed = 3, .eval_samples = 8});
  EXPECT_FALSE(a.eval_batch(0, 8).bitwise_equal(c.eval_batch(0, 8)));
}

// ---------------------------------------------------------------------------
// Packed text

const std::string kFixtures = std::string(CB_SOURCE_DIR) + "/tests/data/dataset/";
constexpr int64_t kEos = 256;

std::vector<int64_t> byte_tokens(const std::string& text) {
  std::vector<int64_t> ids;
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The token stream the fixture must give: the JSONL documents (the empty one
// skipped), then the text file, one EOS between documents.
std::vector<int64_t> expected_stream() {
  std::vector<int64_t> s;
  for (const std::string& doc : {std::string("abc"),
                                 std::string("d\xC3\xA9"
                                             "f\n\xF0\x9F\x98\x80"),
                                 std::string("ghij\"k"), read_file(kFixtures + "corpus.txt")}) {
    if (!s.empty()) s.push_back(kEos);
    for (int64_t id : byte_tokens(doc)) s.push_back(id);
  }
  return s;
}

PackedTextDataset::Config fixture_config() {
  PackedTextDataset::Config c;
  c.files = {kFixtures + "corpus.jsonl", kFixtures + "corpus.txt"};
  c.block_size = 4;
  c.eos_id = kEos;
  c.validation_blocks = 2;
  c.seed = 11;
  return c;
}

TEST(PackedTextDataset, PacksDocumentsWithEosAndDropsTheRemainder) {
  PackedTextDataset ds(fixture_config(), byte_tokens);
  std::vector<int64_t> stream = expected_stream();
  ASSERT_EQ(stream.size(), 66u);  // 3 + 1 + 9 + 1 + 6 + 1 + 45
  EXPECT_EQ(ds.num_documents(), 4);
  EXPECT_EQ(ds.num_tokens(), 66);
  EXPECT_EQ(ds.num_blocks(), 16);  // the last 2 tokens are dropped
  EXPECT_EQ(ds.eval_size(), 2);
  EXPECT_EQ(ds.train_size(), 14);
  // Validation: the first blocks, in order.
  Tensor eval = ds.eval_batch(0, 2);
  ASSERT_EQ(eval.dims(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(row(eval, 0), std::vector<int64_t>(stream.begin(), stream.begin() + 4));
  EXPECT_EQ(row(eval, 1), std::vector<int64_t>(stream.begin() + 4, stream.begin() + 8));
  EXPECT_EQ(row(eval, 0), (std::vector<int64_t>{'a', 'b', 'c', kEos}));
  // Training: each epoch visits every training block once.
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<int64_t> seen;
    Tensor batch = ds.train_batch(epoch, 14);
    for (int64_t r = 0; r < 14; ++r) {
      int64_t block = ds.train_block(epoch * 14 + r);
      EXPECT_GE(block, 2);
      EXPECT_LT(block, 16);
      seen.insert(block);
      EXPECT_EQ(row(batch, r), std::vector<int64_t>(stream.begin() + block * 4, stream.begin() + block * 4 + 4));
    }
    EXPECT_EQ(seen.size(), 14u) << "epoch " << epoch;
  }
  EXPECT_NE(ds.describe().find("16 blocks"), std::string::npos) << ds.describe();
}

TEST(PackedTextDataset, ShuffleIsDeterministicPerEpochAndSeed) {
  PackedTextDataset a(fixture_config(), byte_tokens), b(fixture_config(), byte_tokens);
  auto other_cfg = fixture_config();
  other_cfg.seed = 12;
  PackedTextDataset other(other_cfg, byte_tokens);
  auto order = [](const PackedTextDataset& ds, int64_t epoch) {
    std::vector<int64_t> o;
    for (int64_t i = 0; i < ds.train_size(); ++i) o.push_back(ds.train_block(epoch * ds.train_size() + i));
    return o;
  };
  EXPECT_EQ(order(a, 0), order(b, 0));
  EXPECT_EQ(order(a, 1), order(b, 1));
  EXPECT_NE(order(a, 0), order(a, 1));
  EXPECT_NE(order(a, 0), order(other, 0));
  // Reading epochs out of order gives the same blocks (the permutation cache).
  std::vector<int64_t> e1 = order(a, 1), e0 = order(a, 0);
  EXPECT_EQ(order(b, 0), e0);
  EXPECT_EQ(order(b, 1), e1);
}

TEST(PackedTextDataset, ResumeGivesTheSameBatches) {
  // Batches of 3 over 14 training blocks cross epoch boundaries.
  std::vector<Tensor> uninterrupted, resumed;
  {
    PackedTextDataset ds(fixture_config(), byte_tokens);
    for (int64_t step = 0; step < 10; ++step) uninterrupted.push_back(ds.train_batch(step, 3));
  }
  {
    PackedTextDataset ds(fixture_config(), byte_tokens);
    for (int64_t step = 0; step < 5; ++step) resumed.push_back(ds.train_batch(step, 3));
  }
  {
    PackedTextDataset ds(fixture_config(), byte_tokens);
    for (int64_t step = 5; step < 10; ++step) resumed.push_back(ds.train_batch(step, 3));
  }
  for (int64_t step = 0; step < 10; ++step)
    EXPECT_TRUE(uninterrupted[size_t(step)].bitwise_equal(resumed[size_t(step)])) << "step " << step;
}

TEST(PackedTextDataset, ValidationPercentage) {
  auto cfg = fixture_config();
  cfg.validation_blocks = -1;
  cfg.validation_percent = 25.0;
  EXPECT_EQ(PackedTextDataset(cfg, byte_tokens).eval_size(), 4);  // floor(16 * 0.25)
  cfg.validation_percent = 10.0;
  EXPECT_EQ(PackedTextDataset(cfg, byte_tokens).eval_size(), 1);  // floor(1.6)
  cfg.validation_percent = 0.0;
  PackedTextDataset none(cfg, byte_tokens);
  EXPECT_EQ(none.eval_size(), 0);
  EXPECT_EQ(none.train_size(), 16);
  cfg.validation_percent = 100.0;
  EXPECT_THROW(PackedTextDataset(cfg, byte_tokens), Error);
  cfg = fixture_config();
  cfg.validation_blocks = 16;  // leaves nothing to train on
  EXPECT_THROW(PackedTextDataset(cfg, byte_tokens), Error);
}

TEST(PackedTextDataset, PlainTextFileAlone) {
  auto cfg = fixture_config();
  cfg.files = {kFixtures + "corpus.txt"};
  cfg.validation_blocks = 0;
  cfg.block_size = 8;
  PackedTextDataset ds(cfg, byte_tokens);
  EXPECT_EQ(ds.num_documents(), 1);
  EXPECT_EQ(ds.num_tokens(), 45);
  EXPECT_EQ(ds.num_blocks(), 5);
  std::string text = read_file(kFixtures + "corpus.txt");
  std::set<std::string> blocks;
  for (int64_t r = 0; r < 5; ++r) {
    std::string s;
    for (int64_t id : row(ds.train_batch(0, 5), r)) s += char(id);
    blocks.insert(s);
  }
  std::set<std::string> expected;
  for (int64_t b = 0; b < 5; ++b) expected.insert(text.substr(size_t(b * 8), 8));
  EXPECT_EQ(blocks, expected);
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("cb_test_dataset_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream((path / name).string(), std::ios::binary) << text;
    return (path / name).string();
  }
};

void expect_error_mentions(const PackedTextDataset::Config& cfg, const std::string& needle) {
  try {
    PackedTextDataset ds(cfg, byte_tokens);
    ADD_FAILURE() << "expected an error mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(PackedTextDataset, ErrorsNameTheFileAndLine) {
  TempDir dir;
  auto cfg = fixture_config();
  cfg.validation_blocks = 0;
  cfg.files = {dir.write("no_text.jsonl", "{\"text\": \"hello world\"}\n{\"body\": \"x\"}\n")};
  expect_error_mentions(cfg, "no_text.jsonl:2");
  cfg.files = {dir.write("not_string.jsonl", "{\"text\": 5}\n")};
  expect_error_mentions(cfg, "not_string.jsonl:1");
  cfg.files = {dir.write("broken.jsonl", "{\"text\": \"abcdefgh\"}\n{\"text\": \"ab\n")};
  expect_error_mentions(cfg, "broken.jsonl:2");
  cfg.files = {dir.write("short.txt", "abc")};
  expect_error_mentions(cfg, "fewer than one block");
  cfg.files = {(dir.path / "missing.txt").string()};
  expect_error_mentions(cfg, "missing.txt");
  // The text field is configurable; CRLF line ends are accepted.
  cfg.files = {dir.write("body.jsonl", "{\"body\": \"abcd\"}\r\n{\"body\": \"efg\"}\r\n")};
  cfg.text_field = "body";
  PackedTextDataset body(cfg, byte_tokens);
  EXPECT_EQ(body.num_tokens(), 8);
  EXPECT_EQ(row(body.train_batch(0, 1), 0).size(), 4u);
  // Token ids the tokenizer returns must fit the 4-byte store.
  cfg.files = {kFixtures + "corpus.txt"};
  cfg.text_field = "text";
  EXPECT_THROW(PackedTextDataset(cfg, [](const std::string&) { return std::vector<int64_t>{1, -1, 2, 3}; }), Error);
  cfg.eos_id = -1;
  EXPECT_THROW(PackedTextDataset(cfg, byte_tokens), Error);
}

}  // namespace
}  // namespace cb
