// Kernel microbenchmarks: one node compiled on a backend, run repeatedly.
// Reports GFLOP/s for matrix products so they can be read against the
// machine's FMA peak (~200 GFLOP/s per core in f32 here).
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "backends/backend.h"
#include "ir/builder.h"
#include "ir/ops/grad.h"
#include "ir/verifier.h"
#include "passes/fold_attention_layouts.h"
#include "passes/fuse_attention.h"
#include "runtime/executable.h"
#include "train/kmeans.h"

using namespace cb;

namespace {

Tensor random_f32(std::vector<int64_t> dims) {
  Tensor t = Tensor::empty(DType::f32, std::move(dims));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

// [B, 1, T, T]: 0 on and below the diagonal, the lowest float above it.
Tensor causal_mask(int64_t B, int64_t T) {
  Tensor m = Tensor::zeros(DType::f32, {B, 1, T, T});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = i + 1; j < T; ++j) m.data<float>()[(b * T + i) * T + j] = std::numeric_limits<float>::lowest();
  return m;
}

void matmul(benchmark::State& state, const char* backend) {
  int64_t m = state.range(0), k = state.range(1), n = state.range(2);
  auto g = std::make_shared<Graph>();
  Value* a = g->add_input("a", {DType::f32, Shape::of({m, k})});
  Value* w = g->add_constant("w", random_f32({k, n}));
  Value* y = g->add_value("y");
  g->add_node("MatMul", {a, w}, {y});
  g->outputs.push_back(y);
  auto ex = Executable::compile(g, *make_backend(backend));
  std::map<std::string, Tensor> in = {{"a", random_f32({m, k})}};
  for (auto _ : state) benchmark::DoNotOptimize(ex->run(in));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * double(m * k * n), benchmark::Counter::kIsIterationInvariantRate);
}

// One decode step's products by weights, GPT-2 small's shapes at M = 1:
// per layer [768, 2304], [768, 768], [768, 3072], [3072, 768], then the
// [768, 50257] unembedding, all constants in their exported [K, N] layout
// (471 MiB: far out of cache, as in generation). Reports the weights' read
// rate, to set against a plain read of the machine (bench/generate.sh).
void decode_products(benchmark::State& state) {
  const int64_t layers = 12, d = 768, vocab = 50257;
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape::of({1, d})});
  Value* h = g->add_input("h", {DType::f32, Shape::of({1, 4 * d})});
  size_t bytes = 0;
  auto product = [&](Value* a, int64_t k, int64_t n) {
    Value* w = g->add_constant("w" + std::to_string(g->num_nodes()), random_f32({k, n}));
    Value* y = g->add_value("y" + std::to_string(g->num_nodes()));
    g->add_node("MatMul", {a, w}, {y});
    g->outputs.push_back(y);
    bytes += size_t(k * n) * sizeof(float);
  };
  for (int64_t l = 0; l < layers; ++l) {
    product(x, d, 3 * d);
    product(x, d, d);
    product(x, d, 4 * d);
    product(h, 4 * d, d);
  }
  product(x, d, vocab);
  CompileOptions opts;
  opts.num_threads = int(state.range(0));
  auto ex = Executable::compile(g, *make_backend("cpu"), opts);
  std::map<std::string, Tensor> in = {{"x", random_f32({1, d})}, {"h", random_f32({1, 4 * d})}};
  for (auto _ : state) benchmark::DoNotOptimize(ex->run(in));
  state.counters["GB/s"] = benchmark::Counter(1e-9 * double(bytes), benchmark::Counter::kIsIterationInvariantRate);
}

// The layout ops of a TokFSM 64 x 128 training step's attention (4 heads of
// 32, bench/train_throughput.sh tokfsm): the heads' Transpose of the QKV
// rows, their Split into Q, K, V, the keys' and the probabilities'
// Transposes of the last two axes. Args: case (0-3), threads. Reports the
// bytes moved (read + written) per second.
void layout(benchmark::State& state) {
  const int64_t B = 64, T = 128, H = 4, d = 32;
  auto g = std::make_shared<Graph>();
  Builder b(*g);
  const int64_t kase = state.range(0);
  const std::vector<int64_t> in_dims = kase == 0   ? std::vector<int64_t>{B, T, H, 3 * d}
                                       : kase == 1 ? std::vector<int64_t>{B, H, T, 3 * d}
                                       : kase == 2 ? std::vector<int64_t>{B, H, T, d}
                                                   : std::vector<int64_t>{B, H, T, T};
  Value* x = g->add_input("x", {DType::f32, Shape::of(in_dims)});
  if (kase == 1) {
    Node* split = g->add_node("Split", {x}, {g->add_value("q"), g->add_value("k"), g->add_value("v")},
                              {{"axis", int64_t(3)}, {"num_outputs", int64_t(3)}});
    g->outputs = split->outputs;
  } else {
    g->outputs.push_back(
        b.transpose(x, kase == 0 ? std::vector<int64_t>{0, 2, 1, 3} : std::vector<int64_t>{0, 1, 3, 2}));
  }
  CompileOptions opts;
  opts.num_threads = int(state.range(1));
  auto ex = Executable::compile(g, *make_backend("cpu"), opts);
  Tensor t = random_f32(in_dims);
  std::map<std::string, Tensor> in = {{"x", t}};
  for (auto _ : state) benchmark::DoNotOptimize(ex->run(in));
  state.counters["GB/s"] = benchmark::Counter(2e-9 * double(t.nbytes()), benchmark::Counter::kIsIterationInvariantRate);
}

// A batched product of two activations, as attention's products are in a
// training step (no fusion there): a [B, H, M, K] @ b [B, H, K, N]. Args:
// B, H, M, K, N, threads.
void batched_matmul(benchmark::State& state) {
  const int64_t B = state.range(0), H = state.range(1), m = state.range(2), k = state.range(3), n = state.range(4);
  auto g = std::make_shared<Graph>();
  Value* a = g->add_input("a", {DType::f32, Shape::of({B, H, m, k})});
  Value* b = g->add_input("b", {DType::f32, Shape::of({B, H, k, n})});
  Value* y = g->add_value("y");
  g->add_node("MatMul", {a, b}, {y});
  g->outputs.push_back(y);
  CompileOptions opts;
  opts.num_threads = int(state.range(5));
  auto ex = Executable::compile(g, *make_backend("cpu"), opts);
  std::map<std::string, Tensor> in = {{"a", random_f32({B, H, m, k})}, {"b", random_f32({B, H, k, n})}};
  for (auto _ : state) benchmark::DoNotOptimize(ex->run(in));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * double(B * H * m * k * n), benchmark::Counter::kIsIterationInvariantRate);
}

void unary(benchmark::State& state, const char* op) {
  int64_t n = state.range(0);
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape::of({n})});
  Value* y = g->add_value("y");
  g->add_node(op, {x}, {y});
  g->outputs.push_back(y);
  auto ex = Executable::compile(g, *make_backend("cpu"));
  std::map<std::string, Tensor> in = {{"x", random_f32({n})}};
  for (auto _ : state) benchmark::DoNotOptimize(ex->run(in));
  state.SetItemsProcessed(state.iterations() * n);
}

// codebook.Codebook on the cpu backend, as inserted at attn_preproj of GPT-2
// small with one codebook per head: x [1, tokens, G*Dg], constant codes
// [G, K, Dg], outputs y and ids. Args: tokens, G, K, Dg, k, threads. GFLOP/s
// counts the scoring products (2 * tokens * K * G*Dg). `scoring` "f32" forces
// f32 scoring (CB_CODEBOOK_SCORING, backends/cpu/codebook_kernel.h); "auto"
// is the default choice (bf16 scoring on large codebooks where it is faster).
void codebook(benchmark::State& state, const char* metric, const char* scoring, bool codes_input = false) {
  int64_t tokens = state.range(0), G = state.range(1), K = state.range(2), Dg = state.range(3);
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape::of({1, tokens, G * Dg})});
  // Codes fed each run (as a training step's codebooks are) or a constant.
  Value* codes = codes_input ? g->add_input("codes", {DType::f32, Shape::of({G, K, Dg})})
                             : g->add_constant("codes", random_f32({G, K, Dg}));
  Value* scale = g->add_constant("ln_scale", random_f32({G, Dg}));
  Value* bias = g->add_constant("ln_bias", random_f32({G, Dg}));
  Value* y = g->add_value("y");
  Value* ids = g->add_value("ids");
  g->add_node("Codebook", {x, codes, scale, bias}, {y, ids}, {{"k", state.range(4)}, {"metric", std::string(metric)}},
              "codebook", "codebook");
  g->outputs = {y, ids};
  CompileOptions opts;
  opts.num_threads = int(state.range(5));
  if (std::string(scoring) != "auto") setenv("CB_CODEBOOK_SCORING", scoring, 1);  // read when the kernel is made
  auto ex = Executable::compile(g, *make_backend("cpu"), opts);
  unsetenv("CB_CODEBOOK_SCORING");
  std::map<std::string, Tensor> in = {{"x", random_f32({1, tokens, G * Dg})}};
  if (codes_input) in["codes"] = random_f32({G, K, Dg});
  ex->run(in);  // packs the constant codebook
  for (auto _ : state) benchmark::DoNotOptimize(ex->run(in));
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * double(tokens * K * G * Dg), benchmark::Counter::kIsIterationInvariantRate);
}

// One attention layer as GPT-2's exporters write it: the fused QKV rows
// [B, T, 3 H dh] split into Q, K, V, heads split out by Reshape + Transpose,
// Q Kt MatMul, * scale, + causal mask [B,1,T,T], Softmax, @ V, heads merged
// back into [B, T, H dh]. Unfused (0), fused into codebook.Attention (1,
// passes/fuse_attention.h), or fused with its layouts folded (2: no Split or
// Transpose copies, passes/fold_attention_layouts.h). Args: B, H, T, head
// size, threads, fusion.
void attention(benchmark::State& state) {
  const int64_t B = state.range(0), H = state.range(1), T = state.range(2), dh = state.range(3);
  auto g = std::make_shared<Graph>();
  Builder b(*g);
  Value* qkv = g->add_input("qkv", {DType::f32, Shape::of({B, T, 3 * H * dh})});
  Value* mask = g->add_input("mask", {DType::f32, Shape::of({B, 1, T, T})});
  Node* split = g->add_node("Split", {qkv}, {g->add_value("q_rows"), g->add_value("k_rows"), g->add_value("v_rows")},
                            {{"axis", int64_t(2)}, {"num_outputs", int64_t(3)}});
  auto heads = [&](int i, std::vector<int64_t> perm) {
    return b.transpose(b.reshape(split->outputs[size_t(i)], {B, T, H, dh}), perm);
  };
  Value* q = heads(0, {0, 2, 1, 3});
  Value* kt = heads(1, {0, 2, 3, 1});
  Value* v = heads(2, {0, 2, 1, 3});
  Value* p = b.softmax(b.add(b.mul(b.matmul(q, kt), b.f32(0.125f)), mask));
  Value* out = b.reshape(b.transpose(b.matmul(p, v), {0, 2, 1, 3}), {B, T, H * dh});
  g->outputs.push_back(out);
  infer_types(*g);
  if (state.range(5) >= 1) fuse_attention(*g);
  if (state.range(5) >= 2) fold_attention_layouts(*g);
  CompileOptions opts;
  opts.num_threads = int(state.range(4));
  auto ex = Executable::compile(g, *make_backend("cpu"), opts);
  std::map<std::string, Tensor> in = {{qkv->name, random_f32({B, T, 3 * H * dh})}, {"mask", causal_mask(B, T)}};
  for (auto _ : state) benchmark::DoNotOptimize(ex->run(in));
}

// codebook.grad.AttentionGrad alone (the backward of one fused attention in
// a training step) under a causal mask. Args: B, H, T, head size, threads.
// GFLOP/s counts the five products of the causal half (5 * 2 * T^2/2 * dh per head).
void attention_grad(benchmark::State& state) {
  const int64_t B = state.range(0), H = state.range(1), T = state.range(2), dh = state.range(3);
  auto g = std::make_shared<Graph>();
  std::vector<Value*> ins;
  for (auto [name, dims] : std::vector<std::pair<std::string, std::vector<int64_t>>>{{"dy", {B, H, T, dh}},
                                                                                     {"q", {B, H, T, dh}},
                                                                                     {"kt", {B, H, dh, T}},
                                                                                     {"v", {B, H, T, dh}},
                                                                                     {"mask", {1, 1, T, T}}})
    ins.push_back(g->add_input(name, {DType::f32, Shape::of(dims)}));
  std::vector<Value*> outs = {g->add_value("dq"), g->add_value("dkt"), g->add_value("dv")};
  g->add_node(kAttentionGradOp, ins, outs, {{"scale", 0.125f}}, "attention_grad", kGradDomain);
  g->outputs = outs;
  infer_types(*g);
  CompileOptions opts;
  opts.num_threads = int(state.range(4));
  auto ex = Executable::compile(g, *make_backend("cpu"), opts);
  std::map<std::string, Tensor> in = {{"dy", random_f32({B, H, T, dh})},
                                      {"q", random_f32({B, H, T, dh})},
                                      {"kt", random_f32({B, H, dh, T})},
                                      {"v", random_f32({B, H, T, dh})},
                                      {"mask", causal_mask(1, T)}};
  for (auto _ : state) benchmark::DoNotOptimize(ex->run(in));
  state.counters["GFLOP/s"] = benchmark::Counter(5e-9 * double(B * H) * double(T * T) * double(dh),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// One mini-batch k-means step (train/kmeans.h) after initialisation: n rows
// of dim d against K centres (k-means codebook init).
void kmeans_step(benchmark::State& state) {
  const int64_t n = state.range(0), K = state.range(1), d = state.range(2);
  KMeansConfig cfg;
  cfg.num_clusters = K;
  cfg.dim = d;
  cfg.num_threads = int(state.range(3));
  MiniBatchKMeans km(cfg);
  Tensor rows = random_f32({n, d});
  km.partial_fit(rows.data<float>(), n);  // k-means++ initialisation
  for (auto _ : state) km.partial_fit(rows.data<float>(), n);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * double(n * K * d), benchmark::Counter::kIsIterationInvariantRate);
}

// The f32 FMA peak of this CPU: 12 independent chains of FMAs in
// registers, AVX-512 where the CPU has it, else AVX2. With ->Threads(2) both
// cores run it at once and GFLOP/s is their sum: the ceiling of every f32
// product (docs/performance.md#targets).
constexpr int kFmaChains = 12;
constexpr int64_t kFmaSteps = 1 << 20;

// The steps' factors come from memory the compiler cannot see into, so it
// cannot fold the chains.
__attribute__((target("avx512f"))) float fma_chains_avx512(const float* factors) {
  __m512 acc[kFmaChains];
  for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm512_set1_ps(1.0f + float(i));
  const __m512 x = _mm512_set1_ps(factors[0]), y = _mm512_set1_ps(factors[1]);
  for (int64_t k = 0; k < kFmaSteps; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
  float lanes[16];
  for (int i = 1; i < kFmaChains; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  _mm512_storeu_ps(lanes, acc[0]);
  return lanes[0];
}
__attribute__((target("avx2,fma"))) float fma_chains_avx2(const float* factors) {
  __m256 acc[kFmaChains];
  for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm256_set1_ps(1.0f + float(i));
  const __m256 x = _mm256_set1_ps(factors[0]), y = _mm256_set1_ps(factors[1]);
  for (int64_t k = 0; k < kFmaSteps; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kFmaChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
  float lanes[8];
  for (int i = 1; i < kFmaChains; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  _mm256_storeu_ps(lanes, acc[0]);
  return lanes[0];
}

void fma_peak(benchmark::State& state) {
  const bool avx512 = __builtin_cpu_supports("avx512f");
  float factors[2] = {0.999f, 1e-4f};
  benchmark::DoNotOptimize(factors);
  for (auto _ : state) benchmark::DoNotOptimize(avx512 ? fma_chains_avx512(factors) : fma_chains_avx2(factors));
  const double lanes = avx512 ? 16 : 8;
  // Each thread's iterations over the shared wall time, averaged over the
  // threads' identical counters: the threads' sum.
  state.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * lanes * kFmaChains * double(kFmaSteps),
                         benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kAvgThreads);
  state.SetLabel(avx512 ? "AVX-512" : "AVX2");
}

}  // namespace

BENCHMARK(fma_peak)->Threads(1)->Threads(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(attention)
    ->ArgNames({"B", "H", "T", "dh", "threads", "fusion"})
    ->ArgsProduct({{1}, {12}, {128, 1024}, {64}, {1, 2}, {0, 1, 2}})  // GPT-2 small 1x128, 1x1024
    ->ArgsProduct({{8}, {12}, {128}, {64}, {2}, {0, 1, 2}})           // GPT-2 small 8x128
    ->ArgsProduct({{8}, {8}, {128}, {64}, {1, 2}, {0, 1, 2}})         // Pythia-70m 8x128
    ->ArgsProduct({{8}, {16}, {128}, {4}, {1, 2}, {0, 1, 2}})         // TinyStories-1M 8x128
    ->Unit(benchmark::kMillisecond);

BENCHMARK(attention_grad)
    ->ArgNames({"B", "H", "T", "dh", "threads"})
    ->Args({64, 4, 128, 32, 1})
    ->Args({64, 4, 128, 32, 2})  // TokFSM's 64 x 128 training step (bench/train_throughput.sh tokfsm)
    ->Args({1, 12, 128, 64, 2})  // GPT-2 small 1 x 128 (bench/train_throughput.sh gpt2-small)
    ->Args({1, 12, 1024, 64, 2})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(kmeans_step)
    ->ArgNames({"rows", "K", "dim", "threads"})
    ->Args({24576, 1000, 32, 1})
    ->Args({24576, 1000, 32, 2})
    ->Args({24576, 1000, 128, 1})
    ->Args({24576, 1000, 128, 2})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(codebook, inner_product, "inner_product", "auto")
    ->ArgNames({"tokens", "G", "K", "Dg", "k", "threads"})
    ->Args({128, 12, 10000, 64, 8, 1})
    ->Args({128, 12, 10000, 64, 8, 2})
    ->Args({128, 12, 512, 64, 8, 1})
    ->Args({128, 12, 512, 64, 8, 2})
    ->Args({1, 12, 10000, 64, 8, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(codebook, inner_product_codes_input, "inner_product", "auto", true)
    ->ArgNames({"tokens", "G", "K", "Dg", "k", "threads"})
    ->Args({128, 12, 10000, 64, 8, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
// TokFSM's training codebooks (bench/train_throughput.sh tokfsm 64): attn_preproj 4 x 32, mlp 1 x 128.
BENCHMARK_CAPTURE(codebook, tokfsm_training, "inner_product", "auto", true)
    ->ArgNames({"tokens", "G", "K", "Dg", "k", "threads"})
    ->Args({8192, 4, 1000, 32, 1, 2})
    ->Args({8192, 1, 1000, 128, 1, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(codebook, tokfsm_training_bf16_scoring, "inner_product", "bf16", true)
    ->ArgNames({"tokens", "G", "K", "Dg", "k", "threads"})
    ->Args({8192, 4, 1000, 32, 1, 2})
    ->Args({8192, 1, 1000, 128, 1, 2})
    ->Args({2048, 4, 1000, 32, 1, 2})  // the main job's (configs/tokfsm.yaml: 32 x 64 tokens)
    ->Args({2048, 1, 1000, 128, 1, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(codebook, tokfsm_training_f32_scoring, "inner_product", "f32", true)
    ->ArgNames({"tokens", "G", "K", "Dg", "k", "threads"})
    ->Args({8192, 4, 1000, 32, 1, 2})
    ->Args({8192, 1, 1000, 128, 1, 2})
    ->Args({2048, 4, 1000, 32, 1, 2})
    ->Args({2048, 1, 1000, 128, 1, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(codebook, inner_product_f32_scoring, "inner_product", "f32")
    ->ArgNames({"tokens", "G", "K", "Dg", "k", "threads"})
    ->Args({128, 12, 10000, 64, 8, 1})
    ->Args({128, 12, 10000, 64, 8, 2})
    ->Args({1, 12, 10000, 64, 8, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(codebook, euclidean, "euclidean", "auto")
    ->ArgNames({"tokens", "G", "K", "Dg", "k", "threads"})
    ->Args({128, 12, 10000, 64, 8, 1})
    ->Args({128, 12, 10000, 64, 8, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(matmul, cpu, "cpu")
    ->Args({128, 768, 768})
    ->Args({128, 768, 2304})
    ->Args({128, 768, 3072})
    ->Unit(benchmark::kMillisecond);
BENCHMARK(layout)
    ->ArgNames({"case", "threads"})
    ->ArgsProduct({{0, 1, 2, 3}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(decode_products)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(batched_matmul)
    ->ArgNames({"B", "H", "M", "K", "N", "threads"})
    ->Args({64, 4, 128, 32, 128, 2})  // TokFSM 64x128 training: scores Q Kt (4 heads of 32)
    ->Args({64, 4, 128, 128, 32, 2})  // probs V, and the backward's products
    ->Args({64, 4, 32, 128, 128, 2})  // Q^T dS
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(matmul, reference, "reference")->Args({128, 768, 768})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(unary, tanh, "Tanh")->Arg(128 * 3072)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(unary, erf, "Erf")->Arg(128 * 3072)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
