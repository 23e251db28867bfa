// passes/tie_embeddings.h: an exported GPT-2 carries its lm_head as a copy of
// the embedding table; the pass makes the projection read the table again,
// so fine-tuning trains one matrix, and the logits do not change.
#include <gtest/gtest.h>

#include "backends/backend.h"
#include "frontend/hf_import.h"
#include "frontend/onnx_import.h"
#include "passes/tie_embeddings.h"
#include "runtime/executable.h"
#include "train/parameters.h"
#include "train/training_graph.h"

namespace cb {
namespace {

std::string model_dir(const std::string& name) { return std::string(CB_SOURCE_DIR) + "/tests/models/" + name; }

Tensor logits_of(std::shared_ptr<Graph> g) {
  Tensor ids = Tensor::empty(DType::i64, {2, 7});
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = (i * 37 + 11) % 500;
  auto exe = Executable::compile(g, *make_backend("reference"));
  return exe->run(causal_lm_feeds(*g, ids)).at(0);
}

int64_t parameter_elements(const Graph& g) {
  int64_t n = 0;
  for (Value* v : model_parameters(g)) n += v->constant->numel();
  return n;
}

TEST(TieEmbeddings, ExportedGpt2HasOneEmbeddingMatrixAgain) {
  for (const char* exporter : {"gpt2", "gpt2-optimum"}) {
    std::shared_ptr<Graph> g = import_onnx(model_dir(exporter) + "/model.onnx");
    Tensor before = logits_of(import_onnx(model_dir(exporter) + "/model.onnx"));
    HfConfig c = read_hf_config(model_dir("gpt2") + "/hf/config.json");
    ASSERT_EQ(parameter_elements(*g), hf_parameter_count(c) + c.vocab_size * c.hidden_size) << exporter;
    EXPECT_EQ(tie_embeddings(*g), 1) << exporter;
    // The parameters are the Hugging Face ones: the copy is gone.
    EXPECT_EQ(parameter_elements(*g), hf_parameter_count(c)) << exporter;
    Tensor after = logits_of(g);
    ASSERT_EQ(after.dims(), before.dims());
    for (int64_t i = 0; i < after.numel(); ++i) ASSERT_EQ(after.data<float>()[i], before.data<float>()[i]) << i;
    EXPECT_EQ(tie_embeddings(*g), 0) << "a second run finds nothing to tie";
  }
}

TEST(TieEmbeddings, UntiedOrDifferentMatricesStayApart) {
  // The Hugging Face GPT-NeoX has untied embeddings: nothing to do.
  std::shared_ptr<Graph> neox = import_hf(model_dir("gpt-neox") + "/hf");
  EXPECT_EQ(tie_embeddings(*neox), 0);
  // A copy that differs in one element is not the table.
  std::shared_ptr<Graph> g = import_onnx(model_dir("gpt2") + "/model.onnx");
  for (auto& n : g->nodes())
    if (n->op_type == "MatMul" && n->input(1)->constant && n->input(1)->constant->dim(1) == 500) {
      Tensor w = n->input(1)->constant->clone();
      w.data<float>()[3] += 1e-3f;
      n->input(1)->constant = w;
    }
  EXPECT_EQ(tie_embeddings(*g), 0);
}

}  // namespace
}  // namespace cb
