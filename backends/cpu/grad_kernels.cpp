// Fast CPU kernels of the codebook.grad ops (see grad_kernels.h).
//
// Precision: arithmetic in f32; sums along a row in 8 f32 lanes flushed to
// an f64 total every 128 elements (lane_sum); sums over rows (parameter
// gradients) in f32 within blocks of 32 rows, the blocks added in f64; the
// code gradients in f64. The reference works in f64 throughout; results
// agree to ~1e-6 relative (tests/test_cpu_grad_kernels.cpp checks 1e-5).
//
// Determinism: no result depends on the thread count. Per-row outputs are
// computed row by row. Reductions over rows use fixed-size row blocks:
//   LayerNormalizationGrad  dscale/dbias: f32 partial sums per block of
//                           kRowBlock rows, added in f64 in block order;
//   CodebookGrad            dln_scale/dln_bias the same per block of
//                           kTokenBlock tokens; dcodes per selected code,
//                           its slots added in token order (as the
//                           reference does), threads splitting the codes;
//   GatherGrad              per output element, the dy slices added in index
//                           order (as the reference does; f32 adds, which
//                           round exactly like the reference's f64 add then
//                           f32 rounding), threads split the columns.
// SliceGrad moves bytes (equal to the reference bit for bit): per block of
// output rows, zero the block and copy dy's part in while it is in cache.
// GeluGrad is elementwise, in blocks that are a multiple of the vector width.
//
// Threads: the arithmetic kernels use ctx.num_threads from
// kParallelComputeBytes of input on; the memory-bound ones (SliceGrad,
// GatherGrad, the code-gradient sums) only from kParallelCopyBytes
// (layout_kernels.h says why).
#include "backends/cpu/grad_kernels.h"

#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "backends/cpu/fallback_kernel.h"
#include "backends/cpu/layout_kernels.h"
#include "backends/cpu/vec_math.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"
#include "ir/ops/grad.h"
#include "support/error.h"

namespace cb {

namespace {

constexpr int64_t kRowBlock = 32;              // LayerNormalizationGrad rows per partial sum
constexpr int64_t kTokenBlock = 32;            // CodebookGrad tokens per partial sum
constexpr int64_t kPrefetchTokens = 2;         // CodebookGrad fetches code rows this many tokens ahead
constexpr int64_t kColumnChunk = 64;           // GatherGrad and SoftmaxGrad (inner > 1) columns per task
constexpr size_t kZeroBlockBytes = 32 * 1024;  // SliceGrad: output bytes zeroed and filled per step
constexpr int kLanes = 8;

int64_t dims_product(const std::vector<int64_t>& d, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= d[i];
  return p;
}

// ------------------------------------------------------------------- sums
// Sums over a row: f32 terms in 8 f32 lanes (one AVX register; a GCC/Clang
// vector type, so no intrinsics), the lanes added into an f64 total every
// kFlush elements, so a lane never sums more than kFlush / 8 terms; the
// order depends on n alone.

constexpr int64_t kFlush = 128;

// Builds without AVX (no -march) warn that passing this type by value has
// another ABI there; it never leaves this file, so that does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float Lanes __attribute__((vector_size(kLanes * sizeof(float))));

inline Lanes load_lanes(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The 8 lanes added pairwise (halves, quarters, pairs) in f32.
inline double lanes_total(Lanes v) {
  const float a = v[0] + v[4], b = v[1] + v[5], c = v[2] + v[6], d = v[3] + v[7];
  return double((a + c) + (b + d));
}

// sum of term(i) over [0, n): vec_term(i) gives the 8 terms from i on,
// scalar_term(i) one term (for the last n % 8).
template <typename VecTerm, typename ScalarTerm>
inline double lane_sum(int64_t n, VecTerm vec_term, ScalarTerm scalar_term) {
  double total = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kFlush) {
    const int64_t i1 = std::min(n, i0 + kFlush);
    Lanes lanes = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) lanes += vec_term(i);
    float tail = 0;
    for (; i < i1; ++i) tail += scalar_term(i);
    total += lanes_total(lanes) + double(tail);
  }
  return total;
}

inline double sum_row(const float* a, int64_t n) {
  return lane_sum(
      n, [a](int64_t i) { return load_lanes(a + i); }, [a](int64_t i) { return a[i]; });
}
inline double dot_row(const float* a, const float* b, int64_t n) {
  return lane_sum(
      n, [a, b](int64_t i) { return load_lanes(a + i) * load_lanes(b + i); },
      [a, b](int64_t i) { return a[i] * b[i]; });
}

// LayerNorm statistics of a row (biased variance): the mean and 1/sqrt(var + eps).
struct RowStats {
  float mean, inv;
};
inline RowStats row_stats(const float* x, int64_t n, double eps) {
  const float mean = float(sum_row(x, n) / double(n));
  const double var = lane_sum(
                         n,
                         [x, mean](int64_t i) {
                           const Lanes d = load_lanes(x + i) - mean;
                           return d * d;
                         },
                         [x, mean](int64_t i) { return (x[i] - mean) * (x[i] - mean); }) /
                     double(n);
  return {mean, float(1.0 / std::sqrt(var + eps))};
}

// Both sums of a row in one pass: {sum a[i], sum a[i] * b[i]}.
inline std::pair<double, double> sum_and_dot_row(const float* a, const float* b, int64_t n) {
  double total_a = 0, total_ab = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kFlush) {
    const int64_t i1 = std::min(n, i0 + kFlush);
    Lanes lanes_a = {}, lanes_ab = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes) {
      const Lanes va = load_lanes(a + i);
      lanes_a += va;
      lanes_ab += va * load_lanes(b + i);
    }
    float tail_a = 0, tail_ab = 0;
    for (; i < i1; ++i) {
      tail_a += a[i];
      tail_ab += a[i] * b[i];
    }
    total_a += lanes_total(lanes_a) + double(tail_a);
    total_ab += lanes_total(lanes_ab) + double(tail_ab);
  }
  return {total_a, total_ab};
}

// dx of one LayerNorm row from dxhat = dy * scale and x-hat.
inline void layer_norm_dx_row(const float* dxhat, const float* xhat, int64_t n, float inv, float* dx) {
  const auto [sum_dxhat, sum_dxhat_xhat] = sum_and_dot_row(dxhat, xhat, n);
  const float mean_dxhat = float(sum_dxhat / double(n));
  const float mean_dxhat_xhat = float(sum_dxhat_xhat / double(n));
  for (int64_t i = 0; i < n; ++i) dx[i] = inv * (dxhat[i] - mean_dxhat - xhat[i] * mean_dxhat_xhat);
}

// Copies n floats (a multiple of 4; dst 16-byte aligned) with streaming
// stores where there are: CodebookGrad's contributions are written by one
// thread and read by another, and a line left modified in the writer's
// cache is slow to fetch from the other core (measured 5x on the phase that
// reads them), while one in memory streams in. The writer calls
// streaming_stores_done() before others read.
#if defined(__x86_64__) || defined(__i386__)
inline void stream_row(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
}
inline void streaming_stores_done() { _mm_sfence(); }
#else
inline void stream_row(const float* src, float* dst, int64_t n) { std::memcpy(dst, src, size_t(n) * sizeof(float)); }
inline void streaming_stores_done() {}
#endif

// out[i] = sum over blocks b (in order) of partial[b * n + i].
void combine_partials(const std::vector<float>& partial, int64_t blocks, int64_t n, float* out) {
  std::vector<double> sum(static_cast<size_t>(n), 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = 0; i < n; ++i) sum[size_t(i)] += double(partial[size_t(b * n + i)]);
  for (int64_t i = 0; i < n; ++i) out[i] = float(sum[size_t(i)]);
}

void zero_parallel(void* p, size_t bytes, int threads) {
  uint8_t* b = static_cast<uint8_t*>(p);
  const int64_t pieces = int64_t((bytes + kZeroBlockBytes - 1) / kZeroBlockBytes);
  parallel_chunks(pieces, bytes, kParallelCopyBytes, threads, [&](int64_t begin, int64_t end) {
    const size_t from = size_t(begin) * kZeroBlockBytes, to = std::min(bytes, size_t(end) * kZeroBlockBytes);
    std::memset(b + from, 0, to - from);
  });
}

// ------------------------------------------------------------- the kernels

class GradKernel : public FallbackKernel {
 public:
  using FallbackKernel::FallbackKernel;

 protected:
  static int threads_of(const KernelContext& ctx) { return std::max(1, ctx.num_threads); }
  static Tensor* optional_output(const KernelContext& ctx, size_t i) {
    return ctx.outputs.size() > i ? ctx.outputs[i] : nullptr;
  }
};

// ---------------------------------------------------------------- SoftmaxGrad
//   log = 0: dx = y * (dy - sum(dy * y)),  log = 1: dx = dy - exp(y) * sum(dy)

class SoftmaxGradKernel : public GradKernel {
 public:
  using GradKernel::GradKernel;

  void run(KernelContext& ctx) override {
    const Tensor& dy = ctx.in(0);
    const Tensor& y = ctx.in(1);
    if (dy.dtype() != DType::f32 || y.dtype() != DType::f32) return fall_back(ctx);
    CB_CHECK(dy.dims() == y.dims(), ctx.node.describe() << ": dy " << dims_str(dy.dims()) << " and y "
                                                        << dims_str(y.dims()) << " differ in shape");
    const bool log = ctx.node.attr_int("log", 0) != 0;
    const size_t axis = size_t(norm_axis(ctx.node.attr_int("axis", -1), int64_t(y.rank())));
    const int64_t outer = dims_product(y.dims(), 0, axis), n = y.dim(axis),
                  inner = dims_product(y.dims(), axis + 1, y.rank());
    const float* g = dy.data<float>();
    const float* p = y.data<float>();
    float* dx = ctx.out(0).data<float>();
    const size_t bytes = 3 * dy.nbytes();
    if (inner == 1) {
      parallel_chunks(outer, bytes, kParallelComputeBytes, threads_of(ctx), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) row(g + r * n, p + r * n, n, log, dx + r * n);
      });
      return;
    }
    const int64_t chunks = (inner + kColumnChunk - 1) / kColumnChunk;
    parallel_chunks(outer * chunks, bytes, kParallelComputeBytes, threads_of(ctx), [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t o = t / chunks, c0 = (t % chunks) * kColumnChunk, w = std::min(kColumnChunk, inner - c0);
        columns(g + o * n * inner + c0, p + o * n * inner + c0, n, inner, w, log, dx + o * n * inner + c0);
      }
    });
  }

 private:
  static void row(const float* g, const float* p, int64_t n, bool log, float* dx) {
    if (log) {
      const float s = float(sum_row(g, n));
      for (int64_t j = 0; j < n; ++j) dx[j] = g[j] - std::exp(p[j]) * s;
    } else {
      const float s = float(dot_row(g, p, n));
      for (int64_t j = 0; j < n; ++j) dx[j] = p[j] * (g[j] - s);
    }
  }

  // w adjacent columns (stride 1) of n elements each, `inner` apart.
  static void columns(const float* g, const float* p, int64_t n, int64_t inner, int64_t w, bool log, float* dx) {
    double acc[kColumnChunk] = {};
    for (int64_t j = 0; j < n; ++j) {
      const float* gj = g + j * inner;
      const float* pj = p + j * inner;
      if (log)
        for (int64_t i = 0; i < w; ++i) acc[i] += double(gj[i]);
      else
        for (int64_t i = 0; i < w; ++i) acc[i] += double(gj[i]) * double(pj[i]);
    }
    float s[kColumnChunk];
    for (int64_t i = 0; i < w; ++i) s[i] = float(acc[i]);
    for (int64_t j = 0; j < n; ++j) {
      const float* gj = g + j * inner;
      const float* pj = p + j * inner;
      float* dj = dx + j * inner;
      if (log)
        for (int64_t i = 0; i < w; ++i) dj[i] = gj[i] - std::exp(pj[i]) * s[i];
      else
        for (int64_t i = 0; i < w; ++i) dj[i] = pj[i] * (gj[i] - s[i]);
    }
  }
};

// ------------------------------------------------------------------- GeluGrad
//   dx = dy * Gelu'(x) in one vectorised pass (Gelu' in backends/cpu/vec_math.h).
// The work is cut into blocks of kGeluBlock elements, a multiple of the
// vector width, so every element goes through the same instructions on any
// number of threads. Accuracy: within 1e-6 absolute of the reference's f64
// Gelu'(x) for |x| < 10 (tests/test_fuse_gelu.cpp).

constexpr int64_t kGeluBlock = 4096;

class GeluGradKernel : public GradKernel {
 public:
  explicit GeluGradKernel(const Node& node)
      : GradKernel(node), tanh_(node.attr_string("approximate", "none") == "tanh") {}

  void run(KernelContext& ctx) override {
    const Tensor& dy = ctx.in(0);
    const Tensor& x = ctx.in(1);
    Tensor& dx = ctx.out(0);
    if (dy.dtype() != DType::f32 || x.dtype() != DType::f32) return fall_back(ctx);
    CB_CHECK(dy.dims() == x.dims(), ctx.node.describe() << ": dy " << dims_str(dy.dims()) << " and x "
                                                        << dims_str(x.dims()) << " differ in shape");
    const int64_t n = x.numel();
    const float* g = dy.data<float>();
    const float* xp = x.data<float>();
    float* out = dx.data<float>();
    const int64_t blocks = (n + kGeluBlock - 1) / kGeluBlock;
    parallel_chunks(blocks, 3 * x.nbytes(), kParallelComputeBytes, threads_of(ctx), [&](int64_t begin, int64_t end) {
      const int64_t from = begin * kGeluBlock, to = std::min(n, end * kGeluBlock);
      if (tanh_)
        simd::map_vec2(g + from, xp + from, out + from, to - from,
                       [](simd::Vec gv, simd::Vec xv) { return gv * simd::gelu_tanh_derivative(xv); });
      else
        simd::map_vec2(g + from, xp + from, out + from, to - from,
                       [](simd::Vec gv, simd::Vec xv) { return gv * simd::gelu_erf_derivative(xv); });
    });
  }

 private:
  bool tanh_;
};

// ----------------------------------------------------- LayerNormalizationGrad

class LayerNormGradKernel : public GradKernel {
 public:
  using GradKernel::GradKernel;

  void run(KernelContext& ctx) override {
    const Tensor& dy = ctx.in(0);
    const Tensor& x = ctx.in(1);
    const Tensor& scale = ctx.in(2);
    const Node& node = ctx.node;
    if (dy.dtype() != DType::f32 || x.dtype() != DType::f32 || scale.dtype() != DType::f32) return fall_back(ctx);
    CB_CHECK(dy.dims() == x.dims(), node.describe() << ": dy " << dims_str(dy.dims()) << " and x " << dims_str(x.dims())
                                                    << " differ in shape");
    const size_t axis = size_t(norm_axis(node.attr_int("axis", -1), int64_t(x.rank())));
    const double eps = node.attr_float("epsilon", 1e-5f);
    const int64_t rows = dims_product(x.dims(), 0, axis), n = dims_product(x.dims(), axis, x.rank());
    const std::vector<float> gamma = scale_over_row(node, scale, x.dims(), axis);

    Tensor* dx_out = optional_output(ctx, 0);
    Tensor* dscale_out = optional_output(ctx, 1);
    Tensor* dbias_out = optional_output(ctx, 2);
    const bool params = dscale_out || dbias_out;
    const int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
    std::vector<float> dscale_part(dscale_out ? size_t(blocks * n) : 0, 0.0f);
    std::vector<float> dbias_part(dbias_out ? size_t(blocks * n) : 0, 0.0f);
    const float* xp = x.data<float>();
    const float* gp = dy.data<float>();
    float* dxp = dx_out ? dx_out->data<float>() : nullptr;

    if (dx_out || params)
      parallel_chunks(blocks, 3 * x.nbytes(), kParallelComputeBytes, threads_of(ctx), [&](int64_t begin, int64_t end) {
        std::vector<float> xhat(static_cast<size_t>(n)), dxhat(static_cast<size_t>(n));
        for (int64_t b = begin; b < end; ++b) {
          float* ds = dscale_out ? dscale_part.data() + b * n : nullptr;
          float* db = dbias_out ? dbias_part.data() + b * n : nullptr;
          for (int64_t r = b * kRowBlock; r < std::min(rows, (b + 1) * kRowBlock); ++r) {
            const float* g = gp + r * n;
            const float* xr = xp + r * n;
            const RowStats st = row_stats(xr, n, eps);
            for (int64_t i = 0; i < n; ++i) xhat[size_t(i)] = (xr[i] - st.mean) * st.inv;
            if (ds)
              for (int64_t i = 0; i < n; ++i) ds[i] += g[i] * xhat[size_t(i)];
            if (db)
              for (int64_t i = 0; i < n; ++i) db[i] += g[i];
            if (!dxp) continue;
            for (int64_t i = 0; i < n; ++i) dxhat[size_t(i)] = g[i] * gamma[size_t(i)];
            layer_norm_dx_row(dxhat.data(), xhat.data(), n, st.inv, dxp + r * n);
          }
        }
      });
    if (dscale_out) combine_partials(dscale_part, blocks, n, dscale_out->data<float>());
    if (dbias_out) combine_partials(dbias_part, blocks, n, dbias_out->data<float>());
  }

 private:
  // The scale read over the normalised dims (broadcast as the reference
  // kernel reads it), as one contiguous row.
  static std::vector<float> scale_over_row(const Node& node, const Tensor& scale, const std::vector<int64_t>& x_dims,
                                           size_t axis) {
    const std::vector<int64_t> norm_dims(x_dims.begin() + long(axis), x_dims.end());
    CB_CHECK(scale.rank() <= norm_dims.size() || dims_product(scale.dims(), 0, scale.rank() - norm_dims.size()) == 1,
             node.describe() << ": scale " << dims_str(scale.dims()) << " varies over the leading dims of x "
                             << dims_str(x_dims));
    std::vector<int64_t> sdims = scale.dims();
    if (sdims.size() > norm_dims.size()) sdims.erase(sdims.begin(), sdims.end() - long(norm_dims.size()));
    std::vector<float> row;
    row.reserve(size_t(dims_product(norm_dims, 0, norm_dims.size())));
    const float* sp = scale.data<float>();
    const std::vector<int64_t> strides[1] = {broadcast_strides(sdims, norm_dims)};
    for_each_offset(norm_dims, strides, [&](const int64_t* o) { row.push_back(sp[o[0]]); });
    return row;
  }
};

// ----------------------------------------------------------------- GatherGrad

class GatherGradKernel : public GradKernel {
 public:
  using GradKernel::GradKernel;

  void run(KernelContext& ctx) override {
    const Tensor& dy = ctx.in(0);
    const Tensor& indices = ctx.in(1);
    Tensor& out = ctx.out(0);
    const Node& node = ctx.node;
    if (dy.dtype() != DType::f32 || out.dtype() != DType::f32) return fall_back(ctx);
    const size_t axis = size_t(norm_axis(node.attr_int("axis", 0), int64_t(out.rank())));
    const int64_t outer = dims_product(out.dims(), 0, axis), A = out.dim(axis),
                  inner = dims_product(out.dims(), axis + 1, out.rank()), count = indices.numel();
    CB_CHECK(dy.numel() == outer * count * inner, node.describe() << ": dy " << dims_str(dy.dims())
                                                                  << " is not a Gather of " << dims_str(out.dims())
                                                                  << " by indices " << dims_str(indices.dims()));
    std::vector<int64_t> idx(static_cast<size_t>(count));
    for (int64_t c = 0; c < count; ++c) {
      int64_t i = indices.get_int(c);
      CB_CHECK(i >= -A && i < A, node.describe()
                                     << ": index " << i << " is out of range for axis " << axis << " of size " << A);
      idx[size_t(c)] = i < 0 ? i + A : i;
    }
    const int threads = threads_of(ctx);
    zero_parallel(out.raw(), out.nbytes(), threads);
    const float* g = dy.data<float>();
    float* o = out.data<float>();
    const int64_t chunks = (inner + kColumnChunk - 1) / kColumnChunk;
    parallel_chunks(outer * chunks, dy.nbytes(), kParallelCopyBytes, threads, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t p = t / chunks, c0 = (t % chunks) * kColumnChunk, w = std::min(kColumnChunk, inner - c0);
        for (int64_t c = 0; c < count; ++c) {
          const float* src = g + (p * count + c) * inner + c0;
          float* dst = o + (p * A + idx[size_t(c)]) * inner + c0;
          for (int64_t i = 0; i < w; ++i) dst[i] += src[i];
        }
      }
    });
  }
};

// ------------------------------------------------------------------ SliceGrad

class SliceGradKernel : public GradKernel {
 public:
  using GradKernel::GradKernel;

  void run(KernelContext& ctx) override {
    const Tensor& dy = ctx.in(0);
    Tensor& out = ctx.out(0);
    const Node& node = ctx.node;
    const size_t esize = dtype_size(out.dtype());
    const size_t r = out.rank();
    if ((esize != 1 && esize != 2 && esize != 4 && esize != 8) || dy.dtype() != out.dtype() ||
        r > StridedCopy::kMaxRank)
      return fall_back(ctx);
    CB_CHECK(dy.rank() == r, node.describe() << ": dy " << dims_str(dy.dims()) << " and shape " << dims_str(out.dims())
                                             << " differ in rank");
    // Where Slice reads, exactly as the reference SliceGrad kernel computes it.
    const std::vector<int64_t> starts = ctx.in(2).to_int_vector(), ends = ctx.in(3).to_int_vector();
    const size_t n = starts.size();
    std::vector<int64_t> axes, steps(n, 1);
    if (ctx.inputs.size() > 4 && ctx.inputs[4])
      axes = ctx.inputs[4]->to_int_vector();
    else
      for (size_t i = 0; i < n; ++i) axes.push_back(int64_t(i));
    if (ctx.inputs.size() > 5 && ctx.inputs[5]) steps = ctx.inputs[5]->to_int_vector();
    CB_CHECK(ends.size() == n && axes.size() == n && steps.size() == n,
             node.describe() << ": starts, ends, axes and steps differ in length");
    const std::vector<int64_t> out_strides = contiguous_strides(out.dims());
    std::vector<int64_t> strides = out_strides, axis_base(r, 0);
    for (size_t i = 0; i < n; ++i) {
      const int64_t a = norm_axis(axes[i], int64_t(r)), d = out.dim(size_t(a)), step = steps[i];
      int64_t st = starts[i];
      CB_CHECK(step != 0, node.describe() << ": a step is 0");
      if (st < 0) st += d;
      st = step > 0 ? std::min(std::max<int64_t>(st, 0), d) : std::min(std::max<int64_t>(st, 0), d - 1);
      axis_base[size_t(a)] += st * out_strides[size_t(a)];
      strides[size_t(a)] = dy.dim(size_t(a)) > 1 ? out_strides[size_t(a)] * step : 0;
    }
    const int threads = threads_of(ctx);
    if (dy.numel() == 0) return zero_parallel(out.raw(), out.nbytes(), threads);

    // Leading axes that dy covers whole (all but the last at most): output
    // row o over the remaining axes receives dy's row o.
    size_t lead = 0;
    while (lead + 1 < r && dy.dim(lead) == out.dim(lead) && axis_base[lead] == 0 &&
           (dy.dim(lead) == 1 || strides[lead] == out_strides[lead]))
      ++lead;
    int64_t base = 0;
    for (size_t a = lead; a < r; ++a) base += axis_base[a];
    const uint8_t* src = static_cast<const uint8_t*>(dy.raw());
    uint8_t* dst = static_cast<uint8_t*>(out.raw());
    const int64_t rows = dims_product(out.dims(), 0, lead);
    const int64_t out_row = dims_product(out.dims(), lead, r), dy_row = dims_product(dy.dims(), lead, r);
    // The copy of dy rows [0, count) into their output rows.
    auto rows_copy = [&](int64_t count) {
      std::vector<int64_t> dims = {count}, src_strides = {dy_row}, dst_strides = {out_row};
      const std::vector<int64_t> dy_strides = contiguous_strides(dy.dims());
      for (size_t a = lead; a < r; ++a) {
        dims.push_back(dy.dim(a));
        src_strides.push_back(dy_strides[a]);
        dst_strides.push_back(strides[a]);
      }
      return StridedCopy(dims, src_strides, dst_strides, esize);
    };
    if (rows == 1) {  // dy is no stack of rows: zero everything, then copy
      zero_parallel(dst, out.nbytes(), threads);
      rows_copy(1).run(src, dst + size_t(base) * esize, threads);
      return;
    }
    const int64_t rows_per_block = std::max<int64_t>(1, int64_t(kZeroBlockBytes / (size_t(out_row) * esize)));
    const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
    const StridedCopy block_copy = rows_copy(rows_per_block);
    parallel_chunks(blocks, out.nbytes(), kParallelCopyBytes, threads, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t r0 = b * rows_per_block, r1 = std::min(rows, r0 + rows_per_block);
        std::memset(dst + size_t(r0 * out_row) * esize, 0, size_t((r1 - r0) * out_row) * esize);
        const uint8_t* s = src + size_t(r0 * dy_row) * esize;
        uint8_t* d = dst + size_t(r0 * out_row + base) * esize;
        if (r1 - r0 == rows_per_block) {
          block_copy.run_units(s, d, 0, block_copy.units());
        } else {
          const StridedCopy last = rows_copy(r1 - r0);
          last.run_units(s, d, 0, last.units());
        }
      }
    });
  }
};

// --------------------------------------------------------------- CodebookGrad
// Per (token, member): u = LN(x_g), y = mean of the selected code rows;
// contribution to each selected code's gradient (1/k) g + (2/(N k)) (y - u)
// per loss mode; du = g (+ 2 beta (u - y)) through the LayerNorm backward.

class CodebookGradKernel : public GradKernel {
 public:
  using GradKernel::GradKernel;

  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor& dy = ctx.in(0);
    const Tensor& x = ctx.in(1);
    const Tensor& codes = ctx.in(2);
    const Tensor& ln_scale = ctx.in(3);
    const Tensor& ln_bias = ctx.in(4);
    const Tensor& ids = ctx.in(5);
    for (const Tensor* t : {&dy, &x, &codes, &ln_scale, &ln_bias})
      if (t->dtype() != DType::f32) return fall_back(ctx);
    if (ids.dtype() != DType::i64) return fall_back(ctx);
    const auto [B, T, D, G, K, Dg, k] = codebook_grad_dims(ctx);
    const int64_t N = B * T;
    const int64_t* id = ids.data<int64_t>();
    for (int64_t s = 0; s < N * G * k; ++s)
      CB_CHECK(id[s] == -1 || (id[s] >= 0 && id[s] < K), node.describe()
                                                             << ": id " << id[s] << " is outside [0, " << K << ")");

    Tensor* dx_out = optional_output(ctx, 0);
    Tensor* dcodes_out = optional_output(ctx, 1);
    Tensor* dscale_out = optional_output(ctx, 2);
    Tensor* dbias_out = optional_output(ctx, 3);
    const CodebookLoss loss = codebook_loss_of(node);
    const int threads = threads_of(ctx);

    Member m;
    m.dy = dy.data<float>();
    m.x = x.data<float>();
    m.codes = codes.data<float>();
    m.gamma = ln_scale.data<float>();
    m.beta = ln_bias.data<float>();
    m.ids = id;
    m.N = N, m.D = D, m.G = G, m.K = K, m.Dg = Dg, m.k = k;
    m.eps = node.attr_float("epsilon", 1e-5f);
    m.task_coef = loss.task_to_codes() ? 1.0 / double(k) : 0.0;
    m.recon_coef = loss.reconstruction_to_codes() ? 2.0 / (double(N) * double(k)) : 0.0;
    m.commit_coef = loss.commitment() ? 2.0 * double(loss.beta) : 0.0;
    m.dx = dx_out ? dx_out->data<float>() : nullptr;
    if (dcodes_out) {
      m.contrib_stride = (Dg + 3) / 4 * 4;  // rows of 16-byte blocks, for streaming stores
      const size_t bytes = size_t(N * G * m.contrib_stride) * sizeof(float);
      if (!contrib_ || contrib_->size() < bytes) contrib_ = buffer_allocate(bytes);
      m.contrib = static_cast<float*>(contrib_->data());
    }
    const int64_t blocks = (N + kTokenBlock - 1) / kTokenBlock;
    std::vector<float> dscale_part(dscale_out ? size_t(blocks * D) : 0, 0.0f);
    std::vector<float> dbias_part(dbias_out ? size_t(blocks * D) : 0, 0.0f);
    const bool need_du = dx_out || dscale_out || dbias_out;

    if (need_du || dcodes_out)
      // The bindings are captured by copy: clang before 16 cannot capture structured bindings.
      parallel_chunks(blocks, 3 * x.nbytes(), kParallelComputeBytes, threads,
                      [&, D = D, G = G, Dg = Dg](int64_t begin, int64_t end) {
                        Scratch s(Dg, m.contrib_stride);
                        for (int64_t b = begin; b < end; ++b) {
                          float* ds = dscale_out ? dscale_part.data() + b * D : nullptr;
                          float* db = dbias_out ? dbias_part.data() + b * D : nullptr;
                          for (int64_t token = b * kTokenBlock; token < std::min(N, (b + 1) * kTokenBlock); ++token)
                            for (int64_t g = 0; g < G; ++g)
                              member(m, token, g, need_du, ds ? ds + g * Dg : nullptr, db ? db + g * Dg : nullptr, s);
                        }
                        streaming_stores_done();
                      });
    if (dcodes_out) sum_code_gradients(m, N, dcodes_out->data<float>(), threads);
    if (dscale_out) combine_partials(dscale_part, blocks, D, dscale_out->data<float>());
    if (dbias_out) combine_partials(dbias_part, blocks, D, dbias_out->data<float>());
  }

 private:
  struct Member {
    const float *dy, *x, *codes, *gamma, *beta;
    const int64_t* ids;
    int64_t N, D, G, K, Dg, k;
    double eps, task_coef, recon_coef, commit_coef;
    float* dx = nullptr;  // [N, D] or null
    // [N, G, contrib_stride]: what each selected slot adds to its code's
    // gradient (the first Dg floats of a row), or null.
    float* contrib = nullptr;
    int64_t contrib_stride = 0;
  };
  struct Scratch {
    std::vector<float> xhat, y, du, dxhat, contrib;
    Scratch(int64_t Dg, int64_t contrib_stride)
        : xhat(size_t(Dg)),
          y(size_t(Dg)),
          du(size_t(Dg)),
          dxhat(size_t(Dg)),
          contrib(size_t(std::max(Dg, contrib_stride)), 0.0f) {}
  };
  std::shared_ptr<Buffer> contrib_;  // kept between runs

  static void member(const Member& m, int64_t token, int64_t g, bool need_du, float* ds, float* db, Scratch& s) {
    const int64_t Dg = m.Dg;
    const float* xg = m.x + token * m.D + g * Dg;
    const float* gg = m.dy + token * m.D + g * Dg;
    const float* gam = m.gamma + g * Dg;
    const float* bet = m.beta + g * Dg;
    const int64_t* slot = m.ids + (token * m.G + g) * m.k;
    const float* Cg = m.codes + g * m.K * Dg;
    // Distinct scratch rows: __restrict lets the loop below vectorise.
    float* __restrict xhat = s.xhat.data();
    float* __restrict y = s.y.data();
    float* __restrict du = s.du.data();
    float* __restrict dxhat = s.dxhat.data();
    float* __restrict contrib = s.contrib.data();

    // The next tokens' code rows are random rows of the codebook: fetch
    // them ahead while this token is computed.
    if (token + kPrefetchTokens < m.N) {
      const int64_t* ahead = m.ids + ((token + kPrefetchTokens) * m.G + g) * m.k;
      for (int64_t j = 0; j < m.k; ++j)
        if (ahead[j] != -1)
          for (int64_t i = 0; i < Dg; i += 16) __builtin_prefetch(Cg + ahead[j] * Dg + i);
    }
    // y = (1/k) sum of the selected rows (blocked slots add nothing).
    std::fill(y, y + Dg, 0.0f);
    for (int64_t j = 0; j < m.k; ++j) {
      if (slot[j] == -1) continue;
      const float* row = Cg + slot[j] * Dg;
      for (int64_t i = 0; i < Dg; ++i) y[i] += row[i];
    }
    if (m.k > 1) {
      const float fk = float(m.k);
      for (int64_t i = 0; i < Dg; ++i) y[i] /= fk;
    }
    // u = LN(x) * gamma + beta; contrib = (1/k) g + (2/(N k)) (y - u);
    // du = g + 2 beta (u - y); dxhat = du * gamma.
    const RowStats st = row_stats(xg, Dg, m.eps);
    const float tc = float(m.task_coef), rc = float(m.recon_coef), cc = float(m.commit_coef);
    for (int64_t i = 0; i < Dg; ++i) {
      const float xh = (xg[i] - st.mean) * st.inv;
      const float y_minus_u = y[i] - (xh * gam[i] + bet[i]);
      xhat[i] = xh;
      contrib[i] = tc * gg[i] + rc * y_minus_u;
      du[i] = gg[i] - cc * y_minus_u;
      dxhat[i] = du[i] * gam[i];
    }
    if (m.contrib) stream_row(contrib, m.contrib + (token * m.G + g) * m.contrib_stride, m.contrib_stride);
    if (!need_du) return;
    if (ds)
      for (int64_t i = 0; i < Dg; ++i) ds[i] += du[i] * xhat[i];
    if (db)
      for (int64_t i = 0; i < Dg; ++i) db[i] += du[i];
    if (m.dx) layer_norm_dx_row(dxhat, xhat, Dg, st.inv, m.dx + token * m.D + g * Dg);
  }

  // dcodes[g, c] = sum of contrib[token, g] over the slots (token, j) with
  // ids = c, in token order (as the reference adds them), in f64. Only the
  // selected codes have a nonzero gradient (at most N * k of each member's
  // K): the slots are sorted by code, keeping their order, each selected
  // code's row is summed from its run of slots, and the other rows are
  // zeroed. Threads split the zeroing and the runs; no sum depends on them.
  void sum_code_gradients(const Member& m, int64_t N, float* dcodes, int threads) {
    const int64_t G = m.G, K = m.K, Dg = m.Dg, k = m.k;
    zero_parallel(dcodes, size_t(G * K * Dg) * sizeof(float), threads);
    // Counting sort of the slot numbers (token, g, j) by code g * K + c.
    slot_order_.clear();
    code_start_.assign(size_t(G * K + 1), 0);
    for (int64_t s = 0; s < N * G * k; ++s)
      if (m.ids[s] != -1) ++code_start_[size_t((s / k) % G * K + m.ids[s] + 1)];
    for (size_t c = 1; c < code_start_.size(); ++c) code_start_[c] += code_start_[c - 1];
    slot_order_.resize(size_t(code_start_.back()));
    next_slot_.assign(code_start_.begin(), code_start_.end() - 1);
    selected_.clear();
    for (int64_t s = 0; s < N * G * k; ++s)
      if (m.ids[s] != -1) {
        const size_t gc = size_t((s / k) % G * K + m.ids[s]);
        if (next_slot_[gc] == code_start_[gc]) selected_.push_back(int64_t(gc));
        slot_order_[size_t(next_slot_[gc]++)] = s / k;  // the (token, g) row of contrib
      }
    const int64_t n = int64_t(selected_.size());
    const size_t bytes = size_t(code_start_.back() * Dg) * sizeof(float);
    parallel_chunks(n, bytes, kParallelCopyBytes, threads, [&](int64_t begin, int64_t end) {
      std::vector<double> acc(static_cast<size_t>(Dg));
      for (int64_t i = begin; i < end; ++i) {
        const size_t gc = size_t(selected_[size_t(i)]);
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t at = code_start_[gc]; at < code_start_[gc + 1]; ++at) {
          if (at + 1 < code_start_[gc + 1])  // the next slot's row is a random row of contrib
            for (int64_t d = 0; d < Dg; d += 16)
              __builtin_prefetch(m.contrib + slot_order_[size_t(at + 1)] * m.contrib_stride + d);
          const float* c = m.contrib + slot_order_[size_t(at)] * m.contrib_stride;
          for (int64_t d = 0; d < Dg; ++d) acc[size_t(d)] += double(c[d]);
        }
        float* out = dcodes + int64_t(gc) * Dg;
        for (int64_t d = 0; d < Dg; ++d) out[d] = float(acc[size_t(d)]);
      }
    });
  }

  // sum_code_gradients' buffers, kept between runs (fresh memory is slow).
  std::vector<int64_t> code_start_, next_slot_, slot_order_, selected_;
};

}  // namespace

void register_cpu_grad_kernels(KernelFactoryTable& t) {
  t.add("SoftmaxGrad", make_kernel<SoftmaxGradKernel>, kGradDomain);
  t.add("GeluGrad", make_kernel<GeluGradKernel>, kGradDomain);
  t.add("LayerNormalizationGrad", make_kernel<LayerNormGradKernel>, kGradDomain);
  t.add("GatherGrad", make_kernel<GatherGradKernel>, kGradDomain);
  t.add("SliceGrad", make_kernel<SliceGradKernel>, kGradDomain);
  t.add("CodebookGrad", make_kernel<CodebookGradKernel>, kGradDomain);
}

}  // namespace cb
