// Fuzz target: the ONNX importer (frontend/onnx_import.h): bytes -> ModelProto
// -> cb::Graph (opset upgrade, function inlining, type checking,
// canonicalisation), then the IR verifier on the result. Any bytes either
// import to a graph that verifies or throw cb::Error. External data resolves
// against a folder that does not exist, so no input can read local files.
#include "frontend/onnx_import.h"
#include "ir/verifier.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes = cb::fuzz::to_string(data, size);
  cb::fuzz::expect_only_cb_errors([&] {
    auto graph = cb::import_onnx_bytes(bytes, "/nonexistent/codebook-fuzz", "fuzz.onnx");
    cb::verify_graph(*graph);
  });
  return 0;
}
