#include "tools/compile_model.h"

#include "frontend/onnx_export.h"
#include "passes/pass.h"
#include "tools/model_io.h"
#include "tools/text_io.h"

namespace cb::tools {

CompileModelResult compile_model(const std::string& model_arg, const CodebookConfig& cfg,
                                 const std::optional<std::string>& tokenizer_arg, const std::string& output,
                                 bool external_data, std::optional<Precision> precision) {
  LoadedModel m = load_model(model_arg);
  // The tokenizer travels with the model, as a path independent of the working directory.
  auto meta = m.graph->metadata.find(kTokenizerMetadataKey);
  std::optional<std::string> tokenizer =
      tokenizer_arg ? tokenizer_arg
                    : recorded_tokenizer(model_arg, meta == m.graph->metadata.end() ? "" : meta->second);
  CompileModelResult result;
  if (tokenizer) {
    TokenText::load(*tokenizer);  // a bad tokenizer fails here, not at `run --prompt`
    result.tokenizer = m.graph->metadata[kTokenizerMetadataKey] = absolute_tokenizer_spec(*tokenizer);
  }
  if (precision) m.graph->metadata[kPrecisionMetadataKey] = precision_name(*precision);
  InsertCodebooksPass insert(cfg);
  PassManager().run(insert, *m.graph);
  ExportOptions eo;
  if (external_data) eo.external_data_threshold = 1024;
  export_onnx(*m.graph, output, eo);
  result.codebooks = insert.inserted();
  for (InsertedCodebook& c : result.codebooks) c.node = nullptr;
  return result;
}

}  // namespace cb::tools
