// The fused AdamW update (codebook.train.AdamW, ir/ops/optim.h) on CUDA: the
// reference's element formula (backends/reference/optim.h, shared through
// CB_HOST_DEVICE), a grid-stride loop over the parameter. The learning rate,
// step and clip factor are device scalars, read by every thread.
#include "backends/cuda/cuda_common.h"
#include "backends/reference/optim.h"
#include "ir/ops/optim.h"

namespace cb::cuda {

namespace {

struct AdamWCall {
  AdamWArgs a;  // lr, clip and the bias corrections are filled in on the device
  const float *lr, *step, *clip;
  long long n;
};

__global__ void adamw_kernel(AdamWCall c) {
  AdamWArgs a = c.a;
  a.lr = *c.lr;
  a.clip = c.clip ? *c.clip : 1.f;
  adamw_bias_corrections(a, *c.step);
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < c.n; i += (long long)gridDim.x * blockDim.x)
    adamw_range(a, i, i + 1);
}

class AdamWKernel : public Kernel {
 public:
  AdamWKernel(const Node& n, const Launch& l) : launch_(l) {
    beta1_ = n.attr_float("beta1", 0.9f);
    beta2_ = n.attr_float("beta2", 0.999f);
    eps_ = n.attr_float("epsilon", 1e-8f);
    weight_decay_ = n.attr_float("weight_decay", 0.f);
  }
  void run(KernelContext& ctx) override {
    const Tensor& p = ctx.in(0);
    for (size_t i = 1; i < 4; ++i)
      CB_CHECK(ctx.in(i).numel() == p.numel(), ctx.node.describe()
                                                   << ": input " << i << " " << dims_str(ctx.in(i).dims())
                                                   << " is not p's " << dims_str(p.dims()));
    AdamWCall c{};
    c.a.p = p.data<float>();
    c.a.g = ctx.in(1).data<float>();
    c.a.m = ctx.in(2).data<float>();
    c.a.v = ctx.in(3).data<float>();
    c.a.p_out = ctx.out(0).data<float>();
    c.a.m_out = ctx.out(1).data<float>();
    c.a.v_out = ctx.out(2).data<float>();
    c.a.beta1 = beta1_;
    c.a.beta2 = beta2_;
    c.a.eps = eps_;
    c.a.weight_decay = weight_decay_;
    c.lr = ctx.in(4).data<float>();
    c.step = ctx.in(5).data<float>();
    c.clip = ctx.inputs.size() > 6 && ctx.inputs[6] ? ctx.inputs[6]->data<float>() : nullptr;
    c.n = p.numel();
    if (c.n == 0) return;
    CB_LAUNCH(adamw_kernel, grid_for(c.n), kThreads, 0, launch_.stream)(c);
    check_launch(ctx.node);
  }

 private:
  Launch launch_;
  float beta1_, beta2_, eps_, weight_decay_;
};

}  // namespace

bool adamw_supports(const Node& n) { return n.inputs.size() >= 6 && n.outputs.size() == 3 && all_f32(n); }

std::unique_ptr<Kernel> make_adamw(const Node& n, const Launch& l) { return std::make_unique<AdamWKernel>(n, l); }

}  // namespace cb::cuda
