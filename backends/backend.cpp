#include "backends/backend.h"

#include <cstring>

#include "ir/placement.h"
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

namespace {

void check_copy(const Tensor& from, const Tensor& to, const char* what) {
  CB_CHECK(from.dtype() == to.dtype() && from.dims() == to.dims(),
           what << ": copying " << dtype_name(from.dtype()) << dims_str(from.dims()) << " into "
                << dtype_name(to.dtype()) << dims_str(to.dims()));
}

}  // namespace

void Backend::copy_to_device(const Tensor& host, Tensor& device) const {
  check_copy(host, device, "copy to device");
  if (host.nbytes()) std::memcpy(device.raw(), host.raw(), host.nbytes());
}

void Backend::copy_to_host(const Tensor& device, Tensor& host) const {
  check_copy(device, host, "copy to host");
  if (device.nbytes()) std::memcpy(host.raw(), device.raw(), device.nbytes());
}

void check_rows(const Tensor& from, const Tensor& to, const Backend::Rows& r) {
  auto fits = [&](const Tensor& t, size_t offset, size_t pitch) {
    return r.rows == 0 || r.width == 0 || (r.width <= pitch && offset + (r.rows - 1) * pitch + r.width <= t.nbytes());
  };
  CB_CHECK(fits(from, r.from_offset, r.from_pitch) && fits(to, r.to_offset, r.to_pitch),
           "copy_rows: " << r.rows << " runs of " << r.width << " bytes do not fit " << dims_str(from.dims())
                         << " (offset " << r.from_offset << ", pitch " << r.from_pitch << ") or " << dims_str(to.dims())
                         << " (offset " << r.to_offset << ", pitch " << r.to_pitch << ")");
}

void Backend::copy_rows(const Tensor& from, Tensor& to, const Rows& r) const {
  check_rows(from, to, r);
  const auto* src = static_cast<const uint8_t*>(from.raw());
  auto* dst = static_cast<uint8_t*>(to.raw());
  for (size_t i = 0; i < r.rows && r.width; ++i)
    std::memcpy(dst + r.to_offset + i * r.to_pitch, src + r.from_offset + i * r.from_pitch, r.width);
}

namespace {

class DeviceCopyKernel : public Kernel {
 public:
  DeviceCopyKernel(const Backend& backend, bool to_device) : backend_(backend), to_device_(to_device) {}
  void run(KernelContext& ctx) override {
    const Tensor& from = ctx.in(0);
    Tensor& to = ctx.out(0);
    const Device host = Device::host(), device = backend_.device();
    const Device& want_from = to_device_ ? host : device;
    const Device& want_to = to_device_ ? device : host;
    CB_CHECK(from.device() == want_from && to.device() == want_to,
             ctx.node.describe() << ": copies " << want_from.str() << " -> " << want_to.str() << ", given "
                                 << from.device().str() << " -> " << to.device().str());
    if (to_device_)
      backend_.copy_to_device(from, to);
    else
      backend_.copy_to_host(from, to);
  }

 private:
  const Backend& backend_;
  bool to_device_;
};

}  // namespace

std::unique_ptr<Kernel> make_device_copy_kernel(const Backend& backend, const Node& node) {
  if (!is_copy_to_device(node) && !is_copy_to_host(node)) return nullptr;
  CB_CHECK(node_device(node) == backend.device(), node.describe()
                                                      << " copies to or from " << node_device(node).str()
                                                      << ", not the backend's device " << backend.device().str());
  return std::make_unique<DeviceCopyKernel>(backend, is_copy_to_device(node));
}

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
