#include "tools/device_option.h"

#include <algorithm>

#include "passes/inference_pipeline.h"
#include "passes/place_devices.h"
#include "support/error.h"

namespace cb::tools {

std::unique_ptr<Backend> make_device_backend(const std::string& device) {
  if (device == "cpu") return nullptr;
  CB_CHECK(device == "cuda", "--device '" << device << "': expected cpu or cuda");
  const std::vector<std::string> names = backend_names();
  CB_CHECK(std::find(names.begin(), names.end(), "cuda") != names.end(),
           "--device cuda: this build has no CUDA support (nvcc was not found when it was configured)");
  try {
    return make_backend("cuda");
  } catch (const Error& e) {
    CB_FAIL("--device cuda: " << e.what());
  }
}

std::shared_ptr<Graph> placed_inference_graph(const std::shared_ptr<Graph>& g, const Backend* device_backend,
                                              CompileOptions& opts, Precision precision) {
  std::shared_ptr<Graph> fused = inference_graph(g, precision);
  if (!device_backend || fused == g) return fused;  // the same graph: it has subgraphs, or nothing to place
  PlaceDevicesPass pass(placement_target(*device_backend));
  PassManager().run(pass, *fused);
  opts.device_backend = device_backend;
  return fused;
}

}  // namespace cb::tools
