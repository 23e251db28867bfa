// Reference kernels for NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss,
// following the ONNX spec: input [N,C,d1..], target [N,d1..], optional
// weight [C]; loss = -input[n, t, d...] * weight[t]; targets equal to
// ignore_index contribute 0 and are left out of the mean, which divides by the
// sum of the applied weights (the count when there is no weight).
#include <optional>
#include <vector>

#include "backends/reference/accumulate.h"
#include "backends/reference/reference_backend.h"
#include "backends/reference/softmax.h"

namespace cb {

void register_reference_loss(KernelTable& t);

namespace {

// `logp` is the [N,C,D] log-probability tensor (the NLL input, or SCE's log_softmax).
template <typename T>
void nll_typed(const KernelContext& ctx, const Tensor& logp, const Tensor& target, const Tensor* weight, Tensor& loss) {
  const Node& node = ctx.node;
  std::string reduction = node.attr_string("reduction", "mean");
  std::optional<int64_t> ignore;
  if (node.has_attr("ignore_index")) ignore = node.attr_int("ignore_index", 0);
  int64_t N = logp.dim(0), C = logp.dim(1), D = 1;
  for (size_t i = 2; i < logp.rank(); ++i) D *= logp.dim(i);
  const T* x = logp.data<T>();
  const T* w = weight ? weight->data<T>() : nullptr;
  T* out = loss.data<T>();
  bool per_element = reduction == "none";
  double total = 0, weight_sum = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) {
      int64_t i = n * D + d;
      int64_t t = target.get_int(i);
      double l = 0, wt = 0;
      if (!(ignore && t == *ignore)) {
        CB_CHECK(t >= 0 && t < C,
                 node.describe() << ": target value " << t << " at position " << i << " is outside [0, " << C << ")");
        wt = w ? load(w[t]) : 1.0;
        l = -load(x[(n * C + t) * D + d]) * wt;
      }
      if (per_element) out[i] = from_double<T>(l);
      total += l;
      weight_sum += wt;
    }
  if (reduction == "sum") out[0] = from_double<T>(total);
  if (reduction == "mean") out[0] = from_double<T>(total / weight_sum);
}

void nll_dispatch(const KernelContext& ctx, const Tensor& logp, Tensor& loss) {
  const Tensor& target = ctx.in(1);
  const Tensor* weight = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
  switch (logp.dtype()) {
    case DType::f32: return nll_typed<float>(ctx, logp, target, weight, loss);
    case DType::f64: return nll_typed<double>(ctx, logp, target, weight, loss);
    case DType::f16: return nll_typed<Half>(ctx, logp, target, weight, loss);
    case DType::bf16: return nll_typed<BFloat16>(ctx, logp, target, weight, loss);
    default: CB_FAIL(ctx.node.describe() << ": unsupported dtype " << dtype_name(logp.dtype()));
  }
}

void nll_kernel(KernelContext& ctx) { nll_dispatch(ctx, ctx.in(0), ctx.out(0)); }

void softmax_cross_entropy_kernel(KernelContext& ctx) {
  const Tensor& scores = ctx.in(0);
  bool want_log_prob = ctx.outputs.size() > 1 && ctx.outputs[1];
  Tensor log_prob = want_log_prob ? *ctx.outputs[1] : Tensor::empty(scores.dtype(), scores.dims());
  softmax_along_axis(scores, log_prob, 1, true);
  nll_dispatch(ctx, log_prob, ctx.out(0));
}

}  // namespace

void register_reference_loss(KernelTable& t) {
  t.add("NegativeLogLikelihoodLoss", nll_kernel);
  t.add("SoftmaxCrossEntropyLoss", softmax_cross_entropy_kernel);
}

}  // namespace cb
