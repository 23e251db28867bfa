// The public API in one page: import an ONNX causal LM, compile it for a
// backend, run it on token ids, and read the logits.
//
//   ./build/release/examples/run_model tests/models/gpt2/model.onnx 5 17 300
#include <algorithm>
#include <cstdio>
#include <string>

#include "backends/backend.h"
#include "frontend/onnx_import.h"
#include "runtime/executable.h"
#include "support/error.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.onnx TOKEN [TOKEN...]\n", argv[0]);
    return 2;
  }
  try {
    std::shared_ptr<cb::Graph> graph = cb::import_onnx(argv[1]);  // import + canonicalise
    auto backend = cb::make_backend("cpu");
    auto exe = cb::Executable::compile(graph, *backend);  // one kernel per node

    std::vector<int64_t> ids;
    for (int i = 2; i < argc; ++i) ids.push_back(std::stoll(argv[i]));
    int64_t seq = int64_t(ids.size());
    std::map<std::string, cb::Tensor> inputs = {{"input_ids", cb::Tensor::from_vector<int64_t>(ids, {1, seq})}};
    for (const cb::Value* in : graph->inputs) {  // fill the usual companions if the model wants them
      std::vector<int64_t> v(static_cast<size_t>(seq));
      for (int64_t t = 0; t < seq; ++t) v[size_t(t)] = in->name == "position_ids" ? t : 1;
      if (in->name == "attention_mask" || in->name == "position_ids")
        inputs[in->name] = cb::Tensor::from_vector<int64_t>(v, {1, seq});
    }
    cb::Tensor logits = exe->run(inputs)[0];  // [1, seq, vocab]
    int64_t vocab = logits.dim(2);
    const float* last = logits.data<float>() + (seq - 1) * vocab;
    int64_t best = std::max_element(last, last + vocab) - last;
    std::printf("next token: %lld (logit %.4f)\n", static_cast<long long>(best), last[best]);
    return 0;
  } catch (const cb::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
}
