// What the trainer reads: batches of token blocks i64 [B, T] (labels =
// input_ids; the model shifts them), produced as a pure function of the
// dataset's seed and the optimizer step. Training row r of step s is global
// sample g = s * B + r, and sample g depends on nothing but (seed, g), so a run
// resumed at step s reads exactly the batches an uninterrupted run would have
// read (resuming with a different batch size B is allowed but changes which
// samples each later step sees). Evaluation is a fixed list of blocks.
//
// Two sources (docs/original.md#training-data compares them with the original's):
//   * TokFsmDataset: TokFSM samples generated on the fly; training sample g is
//     Fsm::sample_tokens drawn from Rng::derive(seed, kTrainStream, g), eval
//     sample j from Rng::derive(eval_seed, kEvalStream, j) -- a fixed eval set,
//     unlike the original's, which was redrawn at every evaluation.
//   * PackedTextDataset: plain text and JSONL files tokenised by a callback,
//     concatenated with one EOS between documents and cut into blocks of T
//     tokens (the remainder is dropped). The first blocks are the validation
//     set, the rest are training blocks, visited in a fresh permutation per
//     epoch (Rng::derive(seed, kShuffleStream, epoch)).
// Both are safe to read from several threads at once.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ir/tensor.h"
#include "train/tokfsm.h"

namespace cb {

class TokenDataset {
 public:
  virtual ~TokenDataset() = default;
  // T: tokens per block.
  virtual int64_t block_size() const = 0;
  // Writes the T tokens of training sample `global_index` (>= 0) to `out`.
  virtual void train_sample(int64_t global_index, int64_t* out) const = 0;
  // Number of evaluation blocks, and block `index` of them.
  virtual int64_t eval_size() const = 0;
  virtual void eval_sample(int64_t index, int64_t* out) const = 0;
  // One line for logs: the source, sizes and seeds.
  virtual std::string describe() const = 0;

  // i64 [B, T]: the training batch of optimizer step `step` (samples
  // step * B ... step * B + B - 1).
  Tensor train_batch(int64_t step, int64_t batch_size) const { return train_rows(step, batch_size, 0, batch_size); }
  // i64 [row_count, T]: rows [row_begin, row_begin + row_count) of that batch
  // (one data-parallel worker's share).
  Tensor train_rows(int64_t step, int64_t batch_size, int64_t row_begin, int64_t row_count) const;
  // i64 [count, T]: evaluation blocks first ... first + count - 1.
  Tensor eval_batch(int64_t first, int64_t count) const;
};

// ---------------------------------------------------------------------------
// TokFSM

class TokFsmDataset : public TokenDataset {
 public:
  static constexpr uint64_t kTrainStream = 1, kEvalStream = 2;
  struct Config {
    int64_t seq_len = 128;   // T
    uint64_t seed = 0;       // training samples
    uint64_t eval_seed = 1;  // the fixed evaluation samples
    int64_t eval_samples = 2048;
  };
  TokFsmDataset(std::shared_ptr<const Fsm> fsm, const Config& config);

  int64_t block_size() const override { return config_.seq_len; }
  void train_sample(int64_t global_index, int64_t* out) const override;
  int64_t eval_size() const override { return config_.eval_samples; }
  void eval_sample(int64_t index, int64_t* out) const override;
  std::string describe() const override;

  const Fsm& fsm() const { return *fsm_; }

 private:
  void sample(uint64_t seed, uint64_t stream, int64_t index, int64_t* out) const;
  std::shared_ptr<const Fsm> fsm_;
  Config config_;
};

// ---------------------------------------------------------------------------
// Packed text

// Text in, token ids out (e.g. the GPT-2 BPE tokenizer); no special tokens added.
using TextTokenizer = std::function<std::vector<int64_t>(const std::string& text)>;

class PackedTextDataset : public TokenDataset {
 public:
  static constexpr uint64_t kShuffleStream = 3;
  struct Config {
    // Files ending in .jsonl or .json are JSON Lines: one JSON object per
    // non-blank line, whose `text_field` string is one document. Any other
    // file is plain text and is one document (given whole to the tokenizer;
    // split large corpora into JSONL documents).
    std::vector<std::string> files;
    std::string text_field = "text";
    int64_t block_size = 1024;  // T
    int64_t eos_id = -1;        // put between documents; required (>= 0)
    // Validation set: the first `validation_blocks` blocks when >= 0,
    // otherwise floor(blocks * validation_percent / 100).
    int64_t validation_blocks = -1;
    double validation_percent = 5.0;
    uint64_t seed = 42;  // epoch shuffles
  };
  // Reads and tokenises every file now. Kept in memory: the token stream as
  // 4-byte ids (4 bytes per token; ids must be in 0 .. 2^32-1) and, while a
  // training epoch is read, its permutation (8 bytes per training block). Input
  // files are memory-mapped and read one document at a time, so the text
  // itself is never held whole (except a plain-text file, which is one document).
  PackedTextDataset(const Config& config, const TextTokenizer& tokenizer);

  int64_t block_size() const override { return config_.block_size; }
  void train_sample(int64_t global_index, int64_t* out) const override;
  int64_t eval_size() const override { return validation_blocks_; }
  void eval_sample(int64_t index, int64_t* out) const override;
  std::string describe() const override;

  int64_t num_documents() const { return num_documents_; }
  int64_t num_tokens() const { return int64_t(tokens_.size()); }  // including the EOS separators
  int64_t num_blocks() const { return num_blocks_; }
  int64_t train_size() const { return num_blocks_ - validation_blocks_; }
  // The block (index into all blocks, validation first) that training sample
  // `global_index` reads.
  int64_t train_block(int64_t global_index) const;

 private:
  void copy_block(int64_t block, int64_t* out) const;
  Config config_;
  std::vector<uint32_t> tokens_;
  int64_t num_documents_ = 0, num_blocks_ = 0, validation_blocks_ = 0;
  // The permutation of the training blocks for one epoch, cached.
  mutable std::mutex epoch_mutex_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::shared_ptr<const std::vector<int64_t>> cached_order_;
};

}  // namespace cb
