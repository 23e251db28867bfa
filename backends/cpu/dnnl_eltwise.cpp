// Sigmoid and LeakyRelu through oneDNN's eltwise primitive. The primitive is
// built for a flat f32 tensor of the current element count and cached until
// the count changes; other dtypes use the reference kernel. The other unary
// ops have kernels of our own (elementwise_kernels.h); Log is left out:
// oneDNN's is less accurate than our tolerance near 1.
#include "backends/cpu/dnnl_eltwise.h"

#include <dnnl.hpp>

#include "backends/cpu/dnnl_engine.h"
#include "backends/cpu/fallback_kernel.h"
#include "backends/reference/reference_backend.h"
#include "support/error.h"
#include "support/thread_pool.h"

namespace cb {

namespace {

struct EltwiseAlgo {
  dnnl::algorithm algo;
  float alpha = 0, beta = 0;
};

std::optional<EltwiseAlgo> algo_for(const Node& node) {
  using A = dnnl::algorithm;
  if (node.op_type == "Sigmoid") return EltwiseAlgo{A::eltwise_logistic};
  if (node.op_type == "LeakyRelu") return EltwiseAlgo{A::eltwise_relu, node.attr_float("alpha", 0.01f)};
  return std::nullopt;
}

class DnnlEltwiseKernel : public FallbackKernel {
 public:
  DnnlEltwiseKernel(const Node& node, EltwiseAlgo algo) : FallbackKernel(node), algo_(algo) {}

  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    if (x.dtype() != DType::f32 || x.numel() == 0) return fall_back(ctx);
    dnnl::engine& eng = dnnl_cpu_engine();
    if (x.numel() != numel_) {
      dnnl::memory::desc md({x.numel()}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a);
      dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, algo_.algo, md, algo_.alpha, algo_.beta);
      prim_ = dnnl::eltwise_forward(dnnl::eltwise_forward::primitive_desc(d, eng));
      md_ = md;
      numel_ = x.numel();
    }
    dnnl::stream s(eng);
    ThreadPool::instance().park();  // the cores go to oneDNN's OpenMP threads now
    prim_.execute(s,
                  {{DNNL_ARG_SRC, dnnl::memory(md_, eng, x.raw())}, {DNNL_ARG_DST, dnnl::memory(md_, eng, y.raw())}});
    s.wait();
  }

 private:
  EltwiseAlgo algo_;
  int64_t numel_ = -1;
  dnnl::memory::desc md_;
  dnnl::eltwise_forward prim_;
};

std::unique_ptr<Kernel> make_dnnl_eltwise(const Node& node) {
  return std::make_unique<DnnlEltwiseKernel>(node, *algo_for(node));
}

}  // namespace

void register_dnnl_eltwise_kernels(KernelFactoryTable& t) {
  t.add("Sigmoid", make_dnnl_eltwise);
  t.add("LeakyRelu", make_dnnl_eltwise);
}

}  // namespace cb
