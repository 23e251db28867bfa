// A simulated device for tests (docs/cuda.md): lets a machine without a GPU
// test placement, copies and per-device memory planning exactly as the CUDA
// backend uses them. Its memory is host memory tagged as device "sim:0"
// (so the runtime's device checks treat it as foreign memory); its kernels
// are the reference kernels of the ops it is given, each checking that every
// input and output is on sim:0; it counts the copies it makes.
#pragma once
#include <set>
#include <string>

#include "backends/backend.h"
#include "backends/reference/reference_backend.h"
#include "ir/placement.h"

namespace cb::test {

class SimDeviceBackend : public Backend {
 public:
  // `ops`: op types ("MatMul", "codebook.FusedMatMul") it runs.
  explicit SimDeviceBackend(std::set<std::string> ops) : ops_(std::move(ops)) {}

  std::string name() const override { return "sim"; }
  Device device() const override { return {"sim", 0}; }
  bool supports(const Node& n) const override {
    return ops_.count(n.domain.empty() ? n.op_type : n.domain + "." + n.op_type) > 0;
  }
  std::unique_ptr<Kernel> create_kernel(const Node& n) const override {
    if (auto copy = make_device_copy_kernel(*this, n)) return copy;
    if (!supports(n)) return nullptr;
    KernelFn fn = reference_kernels().find(n.domain, n.op_type);
    return fn ? std::make_unique<CheckedKernel>(fn, device()) : nullptr;
  }
  std::shared_ptr<Buffer> allocate(size_t bytes) const override {
    allocations++;
    return std::make_shared<SimBuffer>(bytes, device());
  }
  void copy_to_device(const Tensor& host, Tensor& dev) const override {
    copies_to_device++;
    bytes_to_device += int64_t(host.nbytes());
    Backend::copy_to_device(host, dev);
  }
  void copy_to_host(const Tensor& dev, Tensor& host) const override {
    copies_to_host++;
    Backend::copy_to_host(dev, host);
  }

  mutable int64_t copies_to_device = 0, copies_to_host = 0, allocations = 0, bytes_to_device = 0;

 private:
  class SimBuffer : public Buffer {
   public:
    SimBuffer(size_t bytes, Device d) : host_(buffer_allocate(bytes)) {
      data_ = host_->data();
      size_ = bytes;
      device_ = std::move(d);
    }

   private:
    std::shared_ptr<Buffer> host_;
  };

  class CheckedKernel : public Kernel {
   public:
    CheckedKernel(KernelFn fn, Device d) : fn_(fn), device_(std::move(d)) {}
    void run(KernelContext& ctx) override {
      auto check = [&](const Tensor* t, const char* what, size_t i) {
        CB_CHECK(!t || !t->buffer() || t->device() == device_, ctx.node.describe()
                                                                   << ": " << what << " " << i << " is on "
                                                                   << t->device().str() << ", not " << device_.str());
      };
      for (size_t i = 0; i < ctx.inputs.size(); ++i) check(ctx.inputs[i], "input", i);
      for (size_t i = 0; i < ctx.outputs.size(); ++i) check(ctx.outputs[i], "output", i);
      fn_(ctx);
    }

   private:
    KernelFn fn_;
    Device device_;
  };

  std::set<std::string> ops_;
};

}  // namespace cb::test
