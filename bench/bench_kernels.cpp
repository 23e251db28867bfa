// Microbenchmarks of individual kernels (filled in as fast kernels land).
#include <benchmark/benchmark.h>

#include "ir/tensor.h"

static void BM_TensorAllocate(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(cb::Tensor::empty(cb::DType::f32, {1024, 1024}));
}
BENCHMARK(BM_TensorAllocate);
BENCHMARK_MAIN();
