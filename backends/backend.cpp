#include "backends/backend.h"

#include "support/error.h"

namespace cb {

const Tensor& KernelContext::in(size_t i) const {
  CB_CHECK(i < inputs.size() && inputs[i], node.describe() << ": input " << i << " is missing");
  return *inputs[i];
}

Tensor& KernelContext::out(size_t i) const {
  CB_CHECK(i < outputs.size() && outputs[i], node.describe() << ": output " << i << " is missing");
  return *outputs[i];
}

namespace {
class FunctionKernel : public Kernel {
 public:
  explicit FunctionKernel(KernelFn fn) : fn_(fn) {}
  void run(KernelContext& ctx) override { fn_(ctx); }

 private:
  KernelFn fn_;
};
}  // namespace

std::unique_ptr<Kernel> make_function_kernel(KernelFn fn) { return std::make_unique<FunctionKernel>(fn); }

std::vector<std::string> backend_names() {
  std::vector<std::string> v = {"reference", "cpu"};
#ifdef CB_WITH_CUDA
  v.push_back("cuda");
#endif
  return v;
}

#ifdef CB_WITH_CUDA
std::unique_ptr<Backend> make_cuda_backend();
#endif

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "reference") return make_reference_backend();
  if (name == "cpu") return make_cpu_backend();
#ifdef CB_WITH_CUDA
  if (name == "cuda") return make_cuda_backend();
#endif
  std::string known;
  for (auto& n : backend_names()) known += (known.empty() ? "" : ", ") + n;
  CB_FAIL("unknown backend '" << name << "' (known: " << known << ")");
}

}  // namespace cb
