// GPT-2 style byte-level BPE tokenizer, identical to Hugging Face `tokenizers`
// (0.23) on any valid UTF-8 text: same ids, and true byte offsets.
//
// Encoding, as HF does it:
//  1. added tokens (e.g. the special "<|endoftext|>") are cut out of the text
//     first: leftmost-longest matches, the non-normalized ones before the
//     normalized ones, `lstrip`/`rstrip` swallowing neighbouring whitespace;
//  2. every other span is split by the GPT-2 pre-tokenization regex
//       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//     over Unicode 16 classes (frontend/unicode_tables.inc), optionally after
//     prepending a space (`add_prefix_space`);
//  3. each piece's bytes are mapped to GPT-2's printable byte characters and
//     merged by BPE, lowest merge rank first (ties: leftmost), with a cache.
// Invalid UTF-8 input is rejected (HF only accepts valid strings); decoding
// joins the tokens' bytes and replaces invalid sequences by U+FFFD exactly as
// HF (Rust's from_utf8_lossy, Python's errors="replace").
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cb {

using TokenId = int64_t;

// [begin, end) byte offsets of one token in the UTF-8 input: exactly the bytes
// it encodes, even when it holds part of a multi-byte character (HF's offsets
// widen to whole characters). The spans of an encoding tile the input, except
// for bytes a vocabulary lacks (dropped, as HF does) and a prepended space
// (add_prefix_space), which spans no input byte. An added token's span
// includes the whitespace its lstrip/rstrip took.
struct ByteSpan {
  int64_t begin = 0;
  int64_t end = 0;
  bool operator==(const ByteSpan&) const = default;
};

struct Encoding {
  std::vector<TokenId> ids;
  std::vector<ByteSpan> offsets;  // one per id
};

struct AddedToken {
  std::string content;
  TokenId id = -1;
  bool special = false;     // skipped by decode(..., skip_special_tokens = true)
  bool lstrip = false;      // the match also takes the whitespace before it
  bool rstrip = false;      // ... and after it
  bool normalized = false;  // matched in the second pass (there is no normalizer)
};

class BpeTokenizer {
 public:
  // `path`: a directory holding tokenizer.json, or vocab.json + merges.txt
  // (GPT-2 format; "<|endoftext|>" in the vocabulary becomes a special token, as
  // transformers' GPT2TokenizerFast does), or a tokenizer.json file itself.
  // A missing or malformed file is a cb::Error naming the file and the problem.
  static BpeTokenizer load(const std::filesystem::path& path);
  static BpeTokenizer from_vocab_and_merges(const std::filesystem::path& vocab_json,
                                            const std::filesystem::path& merges_txt);
  // HF tokenizers format with a ByteLevel pre-tokenizer and decoder and a BPE
  // model; anything else in it (normalizers, byte fallback, unk tokens,
  // post-processors that add tokens...) is rejected with a cb::Error.
  static BpeTokenizer from_tokenizer_json(const std::filesystem::path& tokenizer_json);

  BpeTokenizer(BpeTokenizer&&) noexcept;
  BpeTokenizer& operator=(BpeTokenizer&&) noexcept;
  ~BpeTokenizer();

  // Throws cb::Error naming the byte offset when `text` is not valid UTF-8.
  // Thread-safe (the BPE cache is shared under a lock).
  std::vector<TokenId> encode(std::string_view text) const;
  Encoding encode_with_offsets(std::string_view text) const;

  // The text of `ids`; an id outside the vocabulary is a cb::Error (HF skips it).
  std::string decode(std::span<const TokenId> ids, bool skip_special_tokens = false) const;

  // One past the largest id (model vocabulary and added tokens).
  int64_t vocab_size() const;
  std::optional<TokenId> token_to_id(std::string_view token) const;
  // The token's string as stored in the vocabulary (byte-level characters).
  const std::string& id_to_token(TokenId id) const;
  const std::vector<AddedToken>& added_tokens() const;
  // Where it was loaded from, for messages.
  const std::string& source() const;

 private:
  struct Impl;
  explicit BpeTokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The pieces the GPT-2 pre-tokenization regex splits `text` (valid UTF-8) into,
// as byte spans; each piece is then merged by BPE on its own.
std::vector<ByteSpan> gpt2_pretokenize(std::string_view text);

// GPT-2's byte -> printable character map (bytes that are printable Latin-1
// map to themselves, the others to U+0100 onwards), as UTF-8.
const std::string& byte_level_char(uint8_t byte);

}  // namespace cb
