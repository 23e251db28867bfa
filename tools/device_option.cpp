#include "tools/device_option.h"

#include <algorithm>

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

}  // namespace cb::tools
