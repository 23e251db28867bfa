// Training data sources: TokFSM samples and packed tokenised text; see dataset.h.
#include "train/dataset.h"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "support/json.h"

namespace cb {

// ---------------------------------------------------------------------------
// TokenDataset

Tensor TokenDataset::train_rows(int64_t step, int64_t batch_size, int64_t row_begin, int64_t row_count) const {
  CB_CHECK(step >= 0, "dataset: training step must be >= 0, got " << step);
  CB_CHECK(batch_size >= 1, "dataset: batch size must be >= 1, got " << batch_size);
  CB_CHECK(
      row_begin >= 0 && row_count >= 0 && row_begin + row_count <= batch_size,
      "dataset: rows [" << row_begin << ", " << row_begin + row_count << ") are not within a batch of " << batch_size);
  const int64_t t = block_size();
  Tensor out = Tensor::empty(DType::i64, {row_count, t});
  int64_t* d = out.data<int64_t>();
  for (int64_t r = 0; r < row_count; ++r) train_sample(step * batch_size + row_begin + r, d + r * t);
  return out;
}

Tensor TokenDataset::eval_batch(int64_t first, int64_t count) const {
  CB_CHECK(first >= 0 && count >= 0 && first + count <= eval_size(),
           "dataset: evaluation blocks [" << first << ", " << first + count << ") are not within the " << eval_size()
                                          << " evaluation blocks");
  const int64_t t = block_size();
  Tensor out = Tensor::empty(DType::i64, {count, t});
  int64_t* d = out.data<int64_t>();
  for (int64_t i = 0; i < count; ++i) eval_sample(first + i, d + i * t);
  return out;
}

// ---------------------------------------------------------------------------
// TokFSM

TokFsmDataset::TokFsmDataset(std::shared_ptr<const Fsm> fsm, const Config& config)
    : fsm_(std::move(fsm)), config_(config) {
  CB_CHECK(fsm_, "TokFSM dataset: no FSM given");
  fsm_->sample_states(config_.seq_len);  // checks seq_len >= 2
  CB_CHECK(config_.eval_samples >= 0, "TokFSM dataset: eval_samples must be >= 0, got " << config_.eval_samples);
}

void TokFsmDataset::sample(uint64_t seed, uint64_t stream, int64_t index, int64_t* out) const {
  CB_CHECK(index >= 0, "TokFSM dataset: sample index must be >= 0, got " << index);
  Rng rng = Rng::derive(seed, stream, uint64_t(index));
  std::vector<int64_t> tokens = fsm_->sample_tokens(config_.seq_len, rng);
  std::copy(tokens.begin(), tokens.end(), out);
}

void TokFsmDataset::train_sample(int64_t global_index, int64_t* out) const {
  sample(config_.seed, kTrainStream, global_index, out);
}

void TokFsmDataset::eval_sample(int64_t index, int64_t* out) const {
  CB_CHECK(index < config_.eval_samples,
           "TokFSM dataset: evaluation sample " << index << " of " << config_.eval_samples);
  sample(config_.eval_seed, kEvalStream, index, out);
}

std::string TokFsmDataset::describe() const {
  std::ostringstream os;
  os << "TokFSM: " << fsm_->num_states() << " states, " << fsm_->num_edges() << " edges, base " << fsm_->base() << " ("
     << fsm_->digits() << " digits), " << config_.seq_len << " tokens per sample, seed " << config_.seed
     << "; eval: " << config_.eval_samples << " samples, seed " << config_.eval_seed;
  return os.str();
}

// ---------------------------------------------------------------------------
// Packed text

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

// The `field` string of one JSON Lines record; `where` is "file:line".
std::string record_text(std::string_view record, const std::string& field, const std::string& where) {
  Json value = json_parse(record, where);
  const Json* text = value.find(field);
  CB_CHECK(value.is_object() && text && text->is_string(),
           where << ": the record is not a JSON object with a string field \"" << field << "\"");
  return text->as_string();
}

}  // namespace

PackedTextDataset::PackedTextDataset(const Config& config, const TextTokenizer& tokenizer) : config_(config) {
  CB_CHECK(!config_.files.empty(), "text dataset: no files given");
  CB_CHECK(config_.block_size >= 2, "text dataset: block size must be >= 2, got " << config_.block_size);
  CB_CHECK(config_.eos_id >= 0 && config_.eos_id <= int64_t(UINT32_MAX),
           "text dataset: eos_id must be a token id >= 0, got " << config_.eos_id);
  CB_CHECK(config_.validation_percent >= 0.0 && config_.validation_percent < 100.0,
           "text dataset: validation_percent must be in [0, 100), got " << config_.validation_percent);
  CB_CHECK(tokenizer, "text dataset: no tokenizer given");

  auto add_document = [&](const std::string& text, const std::string& where) {
    std::vector<int64_t> ids = tokenizer(text);
    if (ids.empty()) return;  // nothing to separate
    if (num_documents_ > 0) tokens_.push_back(uint32_t(config_.eos_id));
    for (int64_t id : ids) {
      CB_CHECK(id >= 0 && id <= int64_t(UINT32_MAX), where << ": the tokenizer returned token id " << id);
      tokens_.push_back(uint32_t(id));
    }
    ++num_documents_;
  };

  for (const std::string& path : config_.files) {
    std::shared_ptr<MappedFile> file = MappedFile::open(path);
    std::string_view all(reinterpret_cast<const char*>(file->data()), file->size());
    if (ends_with(path, ".jsonl") || ends_with(path, ".json")) {
      int64_t line_number = 0;
      for (size_t start = 0; start < all.size();) {
        size_t end = all.find('\n', start);
        if (end == std::string_view::npos) end = all.size();
        std::string_view line = all.substr(start, end - start);
        ++line_number;
        start = end + 1;
        if (is_blank(line)) continue;
        const std::string where = path + ":" + std::to_string(line_number);
        add_document(record_text(line, config_.text_field, where), where);
      }
    } else {
      add_document(std::string(all), path);
    }
  }
  tokens_.shrink_to_fit();

  num_blocks_ = int64_t(tokens_.size()) / config_.block_size;
  CB_CHECK(num_blocks_ >= 1, "text dataset: the files give " << tokens_.size() << " tokens, fewer than one block of "
                                                             << config_.block_size);
  validation_blocks_ = config_.validation_blocks >= 0
                           ? config_.validation_blocks
                           : int64_t(double(num_blocks_) * config_.validation_percent / 100.0);
  CB_CHECK(validation_blocks_ < num_blocks_,
           "text dataset: " << validation_blocks_ << " validation blocks leave no training block (the files give "
                            << num_blocks_ << " blocks of " << config_.block_size << " tokens)");
}

void PackedTextDataset::copy_block(int64_t block, int64_t* out) const {
  const uint32_t* src = tokens_.data() + block * config_.block_size;
  for (int64_t i = 0; i < config_.block_size; ++i) out[i] = int64_t(src[i]);
}

int64_t PackedTextDataset::train_block(int64_t global_index) const {
  CB_CHECK(global_index >= 0, "text dataset: sample index must be >= 0, got " << global_index);
  const int64_t n = train_size();
  const int64_t epoch = global_index / n;
  std::shared_ptr<const std::vector<int64_t>> order;
  {
    std::lock_guard<std::mutex> lock(epoch_mutex_);
    if (cached_epoch_ != epoch) {
      auto fresh = std::make_shared<std::vector<int64_t>>(size_t(n));
      for (int64_t i = 0; i < n; ++i) (*fresh)[size_t(i)] = i;
      Rng rng = Rng::derive(config_.seed, kShuffleStream, uint64_t(epoch));
      rng.shuffle(*fresh);
      cached_order_ = std::move(fresh);
      cached_epoch_ = epoch;
    }
    order = cached_order_;
  }
  return validation_blocks_ + (*order)[size_t(global_index % n)];
}

void PackedTextDataset::train_sample(int64_t global_index, int64_t* out) const {
  copy_block(train_block(global_index), out);
}

void PackedTextDataset::eval_sample(int64_t index, int64_t* out) const {
  CB_CHECK(index >= 0 && index < validation_blocks_,
           "text dataset: validation block " << index << " of " << validation_blocks_);
  copy_block(index, out);
}

std::string PackedTextDataset::describe() const {
  std::ostringstream os;
  os << "text: " << config_.files.size() << " file(s), " << num_documents_ << " documents, " << tokens_.size()
     << " tokens, " << num_blocks_ << " blocks of " << config_.block_size << " (" << validation_blocks_
     << " validation, " << train_size() << " training), shuffle seed " << config_.seed;
  return os.str();
}

}  // namespace cb
