// Text in and out of `codebook run`: which tokenizer a model uses, --prompt
// text to token ids, and token strings shown beside ids.
//
// A tokenizer is named by a spec: a folder (or tokenizer.json) the GPT-2 BPE
// tokenizer loads (frontend/bpe_tokenizer.h), or "tokfsm" / "tokfsm:BASE"
// for TokFSM models, whose vocabulary is the digits 0..BASE-1 and
// <|endoftext|> = BASE (train/tokfsm.h). Where a model's spec comes from, first
// found wins: --tokenizer; the training run's config (a run folder, a
// checkpoint, or a model.onnx inside one: dataset_args.tokenizer, or tokfsm
// with fsm_args.representation_base); the compiled model's metadata
// "codebook.tokenizer" (written by `codebook compile`); a Hugging Face
// folder's own tokenizer files.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "frontend/bpe_tokenizer.h"

namespace cb::tools {

// The metadata key of the compiled model's tokenizer spec.
inline constexpr const char* kTokenizerMetadataKey = "codebook.tokenizer";

class TokenText {
 public:
  // Loads the tokenizer of `spec`; throws cb::Error naming the spec.
  static TokenText load(const std::string& spec);

  // BPE: the text's ids, nothing added. TokFSM: <|endoftext|> (the BOS every
  // TokFSM sample starts with), then one token per digit ("4312" -> 10 4 3 1 2);
  // any other character is an error naming its position.
  std::vector<int64_t> encode(const std::string& text) const;
  // A document as the code cache stores it: the document-start token first
  // (<|endoftext|>, spanning no text; none when the vocabulary lacks it), then
  // the text's tokens, with the byte of the text where each token starts.
  // Errors name the byte offset of text that cannot be tokenised.
  struct Document {
    std::vector<int64_t> ids;
    std::vector<int64_t> starts;
  };
  Document encode_document(const std::string& text) const;
  // The id of the document-start token, or -1.
  int64_t document_start_id() const;
  bool is_tokfsm() const { return !bpe_; }
  int64_t tokfsm_base() const { return base_; }
  // The bytes the token stands for ("<|endoftext|>" for the special token).
  std::string token_bytes(int64_t id) const;
  // token_bytes in double quotes with C/JSON-style escapes, so spaces and
  // newlines are visible: " the" -> "\" the\"", "\n" -> "\"\\n\""; bytes that
  // are not valid UTF-8 as \xNN. Ids outside the vocabulary show as "?".
  std::string shown(int64_t id) const;
  // The token's text as a JSON string (invalid UTF-8 replaced by U+FFFD).
  std::string json(int64_t id) const;
  const std::string& spec() const { return spec_; }

 private:
  std::string spec_;
  std::shared_ptr<const BpeTokenizer> bpe_;  // null for TokFSM
  int64_t base_ = 10;                        // TokFSM digits
};

// The tokenizer spec recorded for the model given as `model_arg` (a path as
// the user gave it) whose metadata is `metadata_spec` (empty when none);
// nullopt when nothing records one.
std::optional<std::string> recorded_tokenizer(const std::string& model_arg, const std::string& metadata_spec);

// The tokenizer spec of a loaded model: `given` (--tokenizer) if set, else
// what recorded_tokenizer finds from the path and the graph's metadata.
std::optional<std::string> model_tokenizer(const std::optional<std::string>& given, const std::string& model_arg,
                                           const std::map<std::string, std::string>& metadata);

// A spec made independent of the working directory: folders become absolute.
std::string absolute_tokenizer_spec(const std::string& spec);

// A quoted, escaped form of arbitrary bytes (see TokenText::shown).
std::string escape_bytes(const std::string& bytes);

}  // namespace cb::tools
