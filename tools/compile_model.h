// What `codebook compile` does, as a function the command and the Python
// package (codebook.compile) share: load a model, insert codebooks, record
// the tokenizer, write the compiled model.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "ir/precision.h"
#include "passes/insert_codebooks.h"

namespace cb::tools {

struct CompileModelResult {
  std::vector<InsertedCodebook> codebooks;  // their `node` is gone with the graph: null
  std::string tokenizer;                    // the recorded tokenizer spec; empty when none
};

// Inserts the codebooks of `cfg` into the model at `model_arg` and writes it
// to `output` (tensors over 1 KiB to OUTPUT.data with `external_data`). The
// tokenizer recorded is `tokenizer`, else the input model's; a bad one fails
// here. Throws cb::Error naming what is wrong.
// `precision`, when given, is recorded as the model's default precision
// (kPrecisionMetadataKey: run, bench and generate use it unless told otherwise).
CompileModelResult compile_model(const std::string& model_arg, const CodebookConfig& cfg,
                                 const std::optional<std::string>& tokenizer, const std::string& output,
                                 bool external_data, std::optional<Precision> precision = std::nullopt);

}  // namespace cb::tools
