// The fused optimizer ops (domain codebook.train, ir/ops/optim.h). The cpu
// backend's AdamW kernel, threaded over element ranges, is bit-identical to
// the reference, on a parameter large enough to be split.
#include "ir/ops/optim.h"

#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

std::vector<OpCase> optim_cases() {
  std::vector<OpCase> v;
  for (int64_t n : {int64_t(7), int64_t(1 << 18) + 37})
    for (bool clip : {false, true}) {
      OpCase c("AdamW_" + std::to_string(n) + (clip ? "_clip" : ""), "AdamW", kTrainDomain);
      c.attr("beta1", 0.9f)
          .attr("beta2", 0.999f)
          .attr("epsilon", 1e-8f)
          .attr("weight_decay", 0.01f)
          .in({n}, uniform(-1, 1))              // p
          .in({n}, uniform(-1, 1))              // g
          .in({n}, uniform(-0.1, 0.1))          // m
          .in({n}, uniform(0, 0.01))            // v
          .given(Tensor::scalar<float>(1e-3f))  // lr
          .given(Tensor::scalar<float>(3.f));   // step
      if (clip) c.given(Tensor::scalar<float>(0.5f));
      v.push_back(c.outs({true, true, true}));
    }
  // Without weight decay the decay factor is skipped.
  v.push_back(OpCase("AdamW_no_decay", "AdamW", kTrainDomain)
                  .in({100}, uniform(-1, 1))
                  .in({100}, uniform(-1, 1))
                  .in({100}, uniform(-0.1, 0.1))
                  .in({100}, uniform(0, 0.01))
                  .given(Tensor::scalar<float>(1e-2f))
                  .given(Tensor::scalar<float>(1.f))
                  .outs({true, true, true}));
  return v;
}

const RegisterOpCases kRegistered(optim_cases());

}  // namespace
}  // namespace cb::test
