// Fast CPU kernels for f32 elementwise ops (see elementwise_kernels.h).
//
// Why: a training step runs hundreds of elementwise nodes (the AdamW update
// alone is ~15 per parameter, most on small tensors or scalars). The
// reference kernels are single-threaded and Erf is scalar libm; the oneDNN
// eltwise primitive enters an OpenMP parallel region on every call, and with
// libgomp's default (spinning) wait policy on a loaded machine each region
// waits a scheduler time slice for its worker: ~16 ms per call measured
// here, even for 1000 elements.
//
// Binary ops (and Where, Sum) reuse the reference's broadcast plan and row
// loop (backends/reference/elementwise_util.h): dims are merged, the
// innermost row is a plain loop in which every input either advances or
// repeats one element, and the compiler vectorises it. Here the flat output
// index range is cut into pieces (rows may be cut in the middle), so
// same-shape, scalar, row ("bias"), column and general broadcasts all run
// threaded. These ops are IEEE-exact (+ - * /, min, max, select), so a
// vector lane and the scalar remainder give the same bits: results equal the
// reference's and do not depend on the thread count.
//
// Unary ops are written once over an 8-float AVX2 vector (a plain float in
// builds without AVX2+FMA; backends/cpu/vec_math.h, shared with the grad
// kernels); the last partial vector is loaded and stored masked, so every
// element goes through the same instructions whatever the split. Exp, Tanh,
// Erf and Gelu are our own approximations (vec_math.h gives their accuracy).
//
// Threads: only big jobs are shared with the pool's helper threads
// (support/thread_pool.h, which never makes the caller wait for them to wake
// up); the rest run on the calling thread with no synchronisation at all.
// See kMinParallelWork for what "big" means and why.
#include "backends/cpu/elementwise_kernels.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backends/cpu/fallback_kernel.h"
#include "backends/cpu/vec_math.h"
#include "backends/reference/elementwise_util.h"
#include "backends/reference/reference_backend.h"
#include "support/error.h"
#include "support/thread_pool.h"

namespace cb {

namespace {

using namespace simd;

// ---- Work split -------------------------------------------------------------

// Work is counted in elements of a memory-bound op (+ - * /, select, sqrt,
// x^2: 0.3-0.7 ns each here, bandwidth-bound); an element of Exp, Tanh,
// Erf or powf counts kComputeBoundCost (Erf measured 1.4 ns). Jobs below
// kMinParallelWork run on the calling thread. On the shared 2-vCPU machine
// this was tuned on, a helper gained nothing measurable for any op up to 4M
// elements, and splitting a cache-resident 1M-element tensor between the two
// cores was up to 2x slower; machines with more cores and memory bandwidth
// do gain on big jobs. So memory-bound ops go parallel from 8M elements,
// compute-bound ones from 2M.
constexpr int64_t kMinParallelWork = int64_t(1) << 23;
constexpr int64_t kComputeBoundCost = 4;
// Big tensors are cut into pieces of this many elements (a multiple of 16,
// so pieces start on 64-byte lines), claimed one at a time by the threads.
constexpr int64_t kPieceElements = 32768;

// Calls body(begin, end) over contiguous pieces covering [0, n): one piece
// on the calling thread when the job (n elements of `cost` units each) is
// small or there is one thread, else kPieceElements-sized pieces on up to
// num_threads threads of the pool.
template <typename Body>
void for_pieces(int64_t n, int64_t cost, int num_threads, const Body& body) {
  if (num_threads <= 1 || n * cost < kMinParallelWork) {
    body(int64_t(0), n);
    return;
  }
  const int64_t pieces = (n + kPieceElements - 1) / kPieceElements;
  ThreadPool::instance().run(pieces, num_threads,
                             [&](int64_t p) { body(p * kPieceElements, std::min(n, (p + 1) * kPieceElements)); });
}

// ---- Broadcasting driver (binary ops, Where) --------------------------------

// Calls seg(offsets, len) for the pieces of rows covering flat output
// elements [begin, end) of `plan`; offsets[k] is operand k's element offset
// at the piece's start (operand 0 is the output). Rows can be short (a bias
// of 128), so the per-row step is kept to a few adds.
template <size_t N, typename SegFn>
void for_each_segment(const BroadcastPlan<N>& plan, int64_t begin, int64_t end, const SegFn& seg) {
  const size_t outer = plan.dims.size() - 1;  // dims before the row
  const int64_t* dims = plan.dims.data();
  const int64_t row_len = dims[outer];
  std::array<const int64_t*, N + 1> strides;
  std::array<int64_t, N + 1> row_step;  // stride of the innermost outer dim
  for (size_t k = 0; k <= N; ++k) {
    strides[k] = plan.strides[k].data();
    row_step[k] = outer > 0 ? strides[k][outer - 1] : 0;
  }
  std::vector<int64_t> idx(outer, 0);
  std::array<int64_t, N + 1> row_off{};
  int64_t row = begin / row_len, col = begin % row_len;
  for (size_t d = outer; d-- > 0;) {
    idx[d] = row % dims[d];
    row /= dims[d];
    for (size_t k = 0; k <= N; ++k) row_off[k] += idx[d] * strides[k][d];
  }
  std::array<int64_t, N + 1> off;
  for (;;) {
    const int64_t len = std::min(row_len - col, end - begin);
    for (size_t k = 0; k <= N; ++k) off[k] = row_off[k] + col * strides[k][outer];
    seg(off.data(), len);
    begin += len;
    if (begin >= end) return;
    col = 0;
    // Next row: bump the innermost outer dim, carrying into the ones before it.
    if (++idx[outer - 1] < dims[outer - 1]) {
      for (size_t k = 0; k <= N; ++k) row_off[k] += row_step[k];
      continue;
    }
    for (size_t d = outer; d-- > 0;) {
      if (idx[d] < dims[d]) {
        for (size_t k = 0; k <= N; ++k) row_off[k] += strides[k][d];
        break;
      }
      for (size_t k = 0; k <= N; ++k) row_off[k] -= strides[k][d] * (dims[d] - 1);
      idx[d] = 0;
      if (d > 0) ++idx[d - 1];
    }
  }
}

// out = fn(ins...) with numpy broadcasting, like the reference's
// broadcast_map (the same row loop, so the same bits), over num_threads threads.
template <typename Out, typename... In, typename Fn>
void parallel_broadcast_map(Tensor& out, const std::array<const Tensor*, sizeof...(In)>& ins, int num_threads,
                            const Fn& fn) {
  broadcast_map_rows<Out, In...>(out, ins, fn, [&](const auto& plan, const auto& row) {
    for_pieces(out.numel(), 1, num_threads,
               [&](int64_t begin, int64_t end) { for_each_segment(plan, begin, end, row); });
  });
}

// ---- Kernels ------------------------------------------------------------------

bool all_f32(const KernelContext& ctx) {
  for (const Tensor* t : ctx.inputs)
    if (!t || t->dtype() != DType::f32) return false;
  return ctx.out(0).dtype() == DType::f32;
}

enum class BinaryOp { add, sub, mul, div, min, max };

class BinaryKernel : public FallbackKernel {
 public:
  BinaryKernel(const Node& node, BinaryOp op) : FallbackKernel(node), op_(op) {}

  void run(KernelContext& ctx) override {
    if (ctx.inputs.size() != 2 || !all_f32(ctx)) return fall_back(ctx);
    const Tensor* lhs = &ctx.in(0);
    const Tensor* rhs = &ctx.in(1);
    auto map = [&](auto fn) {
      parallel_broadcast_map<float, float, float>(ctx.out(0), {lhs, rhs}, ctx.num_threads, fn);
    };
    switch (op_) {
      case BinaryOp::add: return map([](float a, float b) { return a + b; });
      case BinaryOp::sub: return map([](float a, float b) { return a - b; });
      case BinaryOp::mul: return map([](float a, float b) { return a * b; });
      case BinaryOp::div: return map([](float a, float b) { return a / b; });
      // NaN-propagating, like numpy.minimum / numpy.maximum and the reference.
      case BinaryOp::min: return map([](float a, float b) { return a < b || a != a ? a : b; });
      case BinaryOp::max: return map([](float a, float b) { return a > b || a != a ? a : b; });
    }
  }

 private:
  BinaryOp op_;
};

// Pow with an f32 base and one f32 exponent; like the reference, x^2 and x^3
// multiply (as ONNX Runtime does) and other exponents call powf.
class PowKernel : public FallbackKernel {
 public:
  explicit PowKernel(const Node& node) : FallbackKernel(node) {}

  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    const Tensor& e = ctx.in(1);
    Tensor& y = ctx.out(0);
    if (!all_f32(ctx) || e.numel() != 1 || y.numel() != x.numel()) return fall_back(ctx);
    const float exponent = e.data<float>()[0];
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    const bool multiplies = exponent == 2.f || exponent == 3.f;
    for_pieces(y.numel(), multiplies ? 1 : kComputeBoundCost, ctx.num_threads, [&](int64_t begin, int64_t end) {
      if (exponent == 2.f) {
        for (int64_t i = begin; i < end; ++i) yp[i] = xp[i] * xp[i];
      } else if (exponent == 3.f) {
        for (int64_t i = begin; i < end; ++i) yp[i] = xp[i] * xp[i] * xp[i];
      } else {
        for (int64_t i = begin; i < end; ++i) yp[i] = std::pow(xp[i], exponent);
      }
    });
  }
};

// Where(bool condition, f32 x, f32 y) with broadcasting.
class WhereKernel : public FallbackKernel {
 public:
  explicit WhereKernel(const Node& node) : FallbackKernel(node) {}

  void run(KernelContext& ctx) override {
    const Tensor& c = ctx.in(0);
    const Tensor& x = ctx.in(1);
    const Tensor& y = ctx.in(2);
    if (c.dtype() != DType::boolean || x.dtype() != DType::f32 || y.dtype() != DType::f32 ||
        ctx.out(0).dtype() != DType::f32)
      return fall_back(ctx);
    parallel_broadcast_map<float, bool, float, float>(ctx.out(0), {&c, &x, &y}, ctx.num_threads,
                                                      [](uint8_t cond, float a, float b) { return cond ? a : b; });
  }
};

// Sum of f32 inputs of the output's shape, folded left to right in one pass
// per cache-sized block: ((a + b) + c) + ..., the reference's order.
class SumKernel : public FallbackKernel {
 public:
  explicit SumKernel(const Node& node) : FallbackKernel(node) {}

  void run(KernelContext& ctx) override {
    Tensor& out = ctx.out(0);
    bool fast = ctx.inputs.size() >= 2 && all_f32(ctx);
    for (size_t k = 0; fast && k < ctx.inputs.size(); ++k) fast = ctx.in(k).dims() == out.dims();
    if (!fast) return fall_back(ctx);
    constexpr int64_t kBlock = 4096;
    float* o = out.data<float>();
    const float* a = ctx.in(0).data<float>();
    const float* b = ctx.in(1).data<float>();
    for_pieces(out.numel(), 1, ctx.num_threads, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; s += kBlock) {
        const int64_t e = std::min(end, s + kBlock);
        for (int64_t i = s; i < e; ++i) o[i] = a[i] + b[i];
        for (size_t k = 2; k < ctx.inputs.size(); ++k) {
          const float* c = ctx.in(k).data<float>();
          for (int64_t i = s; i < e; ++i) o[i] = o[i] + c[i];
        }
      }
    });
  }
};

// ---- Unary kernels ---------------------------------------------------------------

enum class UnaryOp { neg, abs, relu, sqrt, reciprocal, exp, tanh, erf, gelu_tanh, gelu_erf };

// Each op on one vector; the results match the reference's formulas exactly
// except for exp, tanh, erf and the GELUs (approximations, vec_math.h).
template <UnaryOp kOp>
inline Vec apply(Vec x) {
  if constexpr (kOp == UnaryOp::neg)
    return -x;
  else if constexpr (kOp == UnaryOp::abs)
    return abs(x);
  else if constexpr (kOp == UnaryOp::relu)
    return select(less(x, splat(0.f)), splat(0.f), x);  // NaN, -0 pass
  else if constexpr (kOp == UnaryOp::sqrt)
    return sqrt(x);
  else if constexpr (kOp == UnaryOp::reciprocal)
    return splat(1.f) / x;
  else if constexpr (kOp == UnaryOp::exp)
    return exp_approx(x);
  else if constexpr (kOp == UnaryOp::tanh)
    return tanh_approx(x);
  else if constexpr (kOp == UnaryOp::erf)
    return erf_approx(x);
  else if constexpr (kOp == UnaryOp::gelu_tanh)
    return gelu_tanh(x);
  else
    return gelu_erf(x);
}

template <UnaryOp kOp>
void unary_range(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) store(y + i, apply<kOp>(load(x + i)));
  if (i < n) store_partial(y + i, apply<kOp>(load_partial(x + i, n - i)), n - i);
}

template <UnaryOp kOp>
class UnaryKernel : public FallbackKernel {
 public:
  explicit UnaryKernel(const Node& node) : FallbackKernel(node) {}

  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    if (!all_f32(ctx) || x.numel() != y.numel()) return fall_back(ctx);
    const float* xp = x.data<float>();
    float* yp = y.data<float>();
    constexpr bool kComputeBound = kOp == UnaryOp::exp || kOp == UnaryOp::tanh || kOp == UnaryOp::erf ||
                                   kOp == UnaryOp::gelu_tanh || kOp == UnaryOp::gelu_erf;
    for_pieces(y.numel(), kComputeBound ? kComputeBoundCost : 1, ctx.num_threads,
               [&](int64_t begin, int64_t end) { unary_range<kOp>(xp + begin, yp + begin, end - begin); });
  }
};

template <BinaryOp op>
std::unique_ptr<Kernel> make_binary(const Node& node) {
  return std::make_unique<BinaryKernel>(node, op);
}
template <UnaryOp op>
std::unique_ptr<Kernel> make_unary(const Node& node) {
  return std::make_unique<UnaryKernel<op>>(node);
}
// Ahead of oneDNN's eltwise_gelu_*: its tanh form took ~3-5 ms per 1M
// elements here (slower than the decomposed Mul/Pow/Tanh chain), and every
// oneDNN call risks the OpenMP wake-up wait described at the top.
std::unique_ptr<Kernel> make_gelu(const Node& node) {
  if (node.attr_string("approximate", "none") == "tanh") return make_unary<UnaryOp::gelu_tanh>(node);
  return make_unary<UnaryOp::gelu_erf>(node);
}

}  // namespace

void register_cpu_elementwise_kernels(KernelFactoryTable& t) {
  t.add("Add", make_binary<BinaryOp::add>);
  t.add("Sub", make_binary<BinaryOp::sub>);
  t.add("Mul", make_binary<BinaryOp::mul>);
  t.add("Div", make_binary<BinaryOp::div>);
  t.add("Min", make_binary<BinaryOp::min>);
  t.add("Max", make_binary<BinaryOp::max>);
  t.add("Pow", make_kernel<PowKernel>);
  t.add("Where", make_kernel<WhereKernel>);
  t.add("Sum", make_kernel<SumKernel>);
  t.add("Neg", make_unary<UnaryOp::neg>);
  t.add("Abs", make_unary<UnaryOp::abs>);
  t.add("Relu", make_unary<UnaryOp::relu>);
  t.add("Sqrt", make_unary<UnaryOp::sqrt>);
  t.add("Reciprocal", make_unary<UnaryOp::reciprocal>);
  t.add("Exp", make_unary<UnaryOp::exp>);
  t.add("Tanh", make_unary<UnaryOp::tanh>);
  t.add("Erf", make_unary<UnaryOp::erf>);
  t.add("Gelu", make_gelu);
}

}  // namespace cb
