#include "backends/cpu/optim_kernels.h"

#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_OPTIM_X86 1
#endif

#include "backends/reference/optim.h"
#include "ir/ops/optim.h"
#include "support/cpu_features.h"
#include "support/threads.h"

namespace cb {
namespace {

#ifdef CB_OPTIM_X86
// adamw_range 8 elements at a time: the same operations in the same order
// (IEEE multiply, FMA, square root and divide per lane), so the same bits;
// the tail is adamw_range's.
__attribute__((target("avx2,fma"))) void adamw_range_avx2(const AdamWArgs& a, int64_t begin, int64_t end) {
  const __m256 keep = _mm256_set1_ps(1.f - a.lr * a.weight_decay);
  const __m256 step_size = _mm256_set1_ps(a.lr / a.bias_correction1);
  const __m256 one_minus_b1 = _mm256_set1_ps(1.f - a.beta1), one_minus_b2 = _mm256_set1_ps(1.f - a.beta2);
  const __m256 clip = _mm256_set1_ps(a.clip), beta1 = _mm256_set1_ps(a.beta1), beta2 = _mm256_set1_ps(a.beta2);
  const __m256 sqrt_bc2 = _mm256_set1_ps(a.sqrt_bias_correction2), eps = _mm256_set1_ps(a.eps);
  const bool decay = a.weight_decay != 0.f;
  // Streaming stores where the three outputs can be 32-byte aligned
  // together: each is written once and not read back by this step, and
  // a normal store would first read the line it writes (a third more
  // memory traffic on a kernel that is all memory traffic).
  auto misalignment = [](const float* x) { return reinterpret_cast<uintptr_t>(x) % 32; };
  const bool stream = misalignment(a.p_out + begin) == misalignment(a.m_out + begin) &&
                      misalignment(a.p_out + begin) == misalignment(a.v_out + begin) &&
                      misalignment(a.p_out + begin) % sizeof(float) == 0;
  int64_t i = begin;
  if (stream)
    for (; i < end && misalignment(a.p_out + i) != 0;) {
      adamw_range(a, i, i + 1);
      ++i;
    }
  for (; i + 8 <= end; i += 8) {
    const __m256 g = _mm256_mul_ps(_mm256_loadu_ps(a.g + i), clip);
    const __m256 m = _mm256_fmadd_ps(_mm256_loadu_ps(a.m + i), beta1, _mm256_mul_ps(g, one_minus_b1));
    const __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(a.v + i), beta2, _mm256_mul_ps(_mm256_mul_ps(g, g), one_minus_b2));
    __m256 p = _mm256_loadu_ps(a.p + i);
    if (decay) p = _mm256_mul_ps(p, keep);
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v), sqrt_bc2), eps);
    const __m256 p_out = _mm256_fnmadd_ps(step_size, _mm256_div_ps(m, denom), p);
    if (stream) {
      _mm256_stream_ps(a.p_out + i, p_out);
      _mm256_stream_ps(a.m_out + i, m);
      _mm256_stream_ps(a.v_out + i, v);
    } else {
      _mm256_storeu_ps(a.p_out + i, p_out);
      _mm256_storeu_ps(a.m_out + i, m);
      _mm256_storeu_ps(a.v_out + i, v);
    }
  }
  if (stream) _mm_sfence();  // the streamed lines are visible before the pool's join
  adamw_range(a, i, end);
}
#endif

class AdamWKernel : public Kernel {
 public:
  void run(KernelContext& ctx) override {
    AdamWArgs a = adamw_args(ctx);
    const int64_t n = ctx.in(0).numel();
    // Threads only pay off on large parameters (a parallel region costs microseconds).
    constexpr int64_t kMinPerThread = 1 << 16;
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(ctx.num_threads, n / kMinPerThread)));
    parallel_chunks(
        n, 0, 0, threads,
        [&](int64_t begin, int64_t end) {
#ifdef CB_OPTIM_X86
          if (cpu_has_avx2_fma()) return adamw_range_avx2(a, begin, end);
#endif
          adamw_range(a, begin, end);
        },
        /*pieces_per_thread=*/1);
  }
};

}  // namespace

void register_cpu_optim_kernels(KernelFactoryTable& t) {
  t.add(
      "AdamW", [](const Node&) -> std::unique_ptr<Kernel> { return std::make_unique<AdamWKernel>(); }, kTrainDomain);
}

}  // namespace cb
