// Where `codebook cache build` reads its documents from, one at a time
// (memory does not grow with the dataset):
//   * a text file: one document per line (`line`), or per paragraph
//     (`blank-line`: documents separated by blank lines), or separated by
//     lines holding only a given string (`sep:%` for fortune files);
//   * JSON Lines (.jsonl / .json): one object per non-blank line, whose
//     `text_field` string is the document;
//   * a .npy of token ids: 1-D is one document, 2-D [D, T] is D documents;
//     the text is the tokens' bytes (the tokenizer's token_bytes), so offsets
//     are exact;
//   * tokfsm: TokFSM sequences drawn from an FSM (train/tokfsm.h); a
//     document's text is its digits (the BOS renders as nothing).
// Text is tokenised by TokenText::encode_document: the document-start token,
// then the text's tokens with their byte offsets.
#pragma once
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "support/json.h"
#include "tools/text_io.h"
#include "train/tokfsm.h"

namespace cb::cache {

struct Document {
  std::string text;
  std::vector<int64_t> ids;     // tokens
  std::vector<int64_t> starts;  // byte of `text` where each token starts
};

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  // The next document; false at the end. Errors name the file and line.
  virtual bool next(Document& d) = 0;
  // How far through the input (0..1), for the progress bar; < 0 when unknown.
  virtual double fraction_read() const = 0;
  // What the manifest records about the source.
  virtual Json describe() const = 0;
};

struct SourceOptions {
  std::string spec;                // a path, or tokfsm / tokfsm:CONFIG.yaml
  std::string doc_split = "line";  // text files: line | blank-line | sep:STRING
  std::string text_field = "text";
  // tokfsm: the machine and sample layout.
  std::shared_ptr<const Fsm> fsm;
  int64_t tokfsm_seq_len = 64;
  int64_t tokfsm_documents = 0;
  uint64_t tokfsm_seed = 0;
};

// Opens the source `options.spec`; `tokens` tokenises text documents.
std::unique_ptr<DocumentSource> open_source(const SourceOptions& options, const tools::TokenText& tokens);

}  // namespace cb::cache
