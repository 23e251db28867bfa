#include "backends/cpu/optim_kernels.h"

#include <algorithm>

#include "backends/reference/optim.h"
#include "ir/ops/optim.h"
#include "support/threads.h"

namespace cb {
namespace {

class AdamWKernel : public Kernel {
 public:
  void run(KernelContext& ctx) override {
    AdamWArgs a = adamw_args(ctx);
    const int64_t n = ctx.in(0).numel();
    // Threads only pay off on large parameters (a parallel region costs microseconds).
    constexpr int64_t kMinPerThread = 1 << 16;
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(ctx.num_threads, n / kMinPerThread)));
    parallel_chunks(
        n, 0, 0, threads, [&](int64_t begin, int64_t end) { adamw_range(a, begin, end); },
        /*pieces_per_thread=*/1);
  }
};

}  // namespace

void register_cpu_optim_kernels(KernelFactoryTable& t) {
  t.add(
      "AdamW", [](const Node&) -> std::unique_ptr<Kernel> { return std::make_unique<AdamWKernel>(); }, kTrainDomain);
}

}  // namespace cb
