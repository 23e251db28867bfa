// MatMul (numpy semantics), Gemm and codebook.FusedMatMul (ir/fused_matmul.h)
// through oneDNN's matmul primitive.
//
// A primitive is specialised to shapes, so each kernel keeps the primitives
// of the last kMaxCachedShapes input shapes it saw: a model run at a few
// (batch, seq) sizes, alternating (prefill and decode, a last short batch),
// builds each primitive once. Batch dims are broadcast by oneDNN after
// padding both operands to the same rank, except that an A of rank > 2 times
// a 2-D B is one [rows, K] x [K, N] product (one large GEMM, not a batch of
// small ones); transposes (Gemm, transB) are strides; Gemm's alpha is an
// output scale, a [N]-shaped C (FusedMatMul's bias) is the primitive's bias,
// any other C is copied into the output first and added with a sum post-op;
// FusedMatMul's GELU is an eltwise post-op.
//
// Prepacked weights: when B is a graph constant (the run's tensor is the
// constant's own buffer, which the kernel holds, so a graph input, such as a
// parameter that training feeds anew each step, never matches), the weights
// are asked for in format_tag::any and the constant is reordered once into
// the layout oneDNN picks, kept per layout for the kernel's life. Where
// oneDNN picks the plain layout (oneDNN 2.x on AVX2: jit gemm, which packs
// internally) the constant's bytes are used as they are, with no copy.
// Packing waits for a shape's second call: the first reads the constant as
// it is, since a shape used once (generation's prefill, whose decode steps
// take the GEMV below) would pay a pass over the weights and fresh memory
// for a packed copy never used again (GPT-2 small: 471 MB, 0.2 s).
//
// Precision bf16 (ir/precision.h: a node marked by passes/bf16_matmuls.h):
// A is rounded to bf16 into a scratch buffer on every call, B too unless it
// is a constant, which is rounded once and packed (bf16 weights: half the
// bytes); the primitive multiplies bf16 with f32 accumulation, and the
// bias, the post-ops and Y stay f32. Creating such a kernel on a CPU without
// AVX512_BF16 is a cb::Error. One row times a constant B (a decode step) is
// backends/cpu/gemv_bf16.h's product over B packed once as bf16 rows.
// Where this CPU's bf16 dot product is slower than its f32 FMAs
// (backends/cpu/bf16_dot_speed.h), the rounded factors are kept as f32 and
// the primitive is oneDNN's f32 one: the same products, f32 speed.
#include "backends/cpu/dnnl_matmul.h"

#include <algorithm>
#include <cstring>
#include <dnnl.hpp>
#include <optional>

#include "backends/cpu/bf16_convert.h"
#include "backends/cpu/bf16_dot_speed.h"
#include "backends/cpu/dnnl_engine.h"
#include "backends/cpu/gemv_bf16.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"
#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "ir/precision.h"
#include "support/cpu_features.h"
#include "support/error.h"
#include "support/threads.h"

namespace cb {

namespace {

constexpr size_t kMaxCachedShapes = 8;
// Up to this many rows of A, a constant weight wider than deep is packed as
// [N, K] for oneDNN's GEMM path (measured at 128 and 1024 rows).
constexpr int64_t kColumnsFirstMaxRows = 512;

std::optional<dnnl::memory::data_type> dnnl_type(DType t) {
  switch (t) {
    case DType::f32: return dnnl::memory::data_type::f32;
    case DType::bf16: return dnnl::memory::data_type::bf16;
    case DType::f16: return dnnl::memory::data_type::f16;
    default: return std::nullopt;
  }
}

dnnl::memory::desc strided_md(const std::vector<int64_t>& dims, const std::vector<int64_t>& strides,
                              dnnl::memory::data_type dt) {
  return dnnl::memory::desc(dnnl::memory::dims(dims.begin(), dims.end()), dt,
                            dnnl::memory::dims(strides.begin(), strides.end()));
}

dnnl::memory::desc plain_md(const std::vector<int64_t>& dims, dnnl::memory::data_type dt) {
  return strided_md(dims, contiguous_strides(dims), dt);
}

std::vector<int64_t> pad_rank(const std::vector<int64_t>& dims, size_t rank) {
  std::vector<int64_t> d(rank - dims.size(), 1);
  d.insert(d.end(), dims.begin(), dims.end());
  return d;
}

// What a primitive was built for.
struct PrimitiveKey {
  std::vector<int64_t> a_dims, b_dims, c_dims;
  bool has_c = false, constant_b = false;
  bool operator==(const PrimitiveKey&) const = default;
};

struct Prepared {
  PrimitiveKey key;
  dnnl::matmul prim;
  dnnl::memory::desc a_md, b_md, c_md, out_md;
  bool use_bias = false, use_sum = false;
  std::optional<dnnl::memory> packed_b;  // the constant B in b_md, when that is not its own layout
  bool unpacked_constant = false;        // a constant B read as it is, the shape's first call
  bool bf16_rows = false;                // ... read as the GEMV's bf16 rows (bf16_rows_of())
};

// The GEMV kernels of DnnlMatMulKernel::gemv, out of line so that every
// thread count runs one compiled body (the same summation order, bit for bit).
// y[n] = bias[n] + sum_k x[k] W[n, k] for n in [n0, n1): eight fixed lanes
// (lane k % 8), summed in a fixed order.
[[gnu::noinline]] void gemv_rows(const float* x, const float* w, const float* bias, float* y, int64_t K, int64_t n0,
                                 int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* row = w + n * K;
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
      for (int j = 0; j < 8; ++j) lane[j] += x[k + j] * row[k + j];
    for (; k < K; ++k) lane[k % 8] += x[k] * row[k];
    float s = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    y[n] = s + (bias ? bias[n] : 0.0f);
  }
}

// For W [K, N], K is cut into fixed chunks of this many rows: each chunk's
// rows are read whole and in order (one contiguous stream; splitting N
// instead read short strided pieces of every row, at about half the
// bandwidth), and the chunks' partial sums are added in chunk order, so the
// bits do not depend on the thread count.
constexpr int64_t kGemvChunkRows = 32;

// Each thread streams its share of W in this many long pieces: cut finer
// (8 pieces, handed out as threads come free), the two threads' reads
// interleaved in short runs and the decode step read its weights at ~27
// GB/s instead of ~35 (bench_kernels --benchmark_filter=decode_products).
constexpr int64_t kGemvPiecesPerThread = 2;

// partial[n] = sum_k x[k] W[k, n] over k in [k0, k1), k in order, every n.
// Eight rows at a time: one load and store of the partial sums per eight
// weights read (one row at a time, those loads and stores held a 2-thread
// decode step at ~23 GB/s; eight, at ~28, a plain read's rate on 4 KiB
// pages). The additions stay in row order, so the bits do not change.
[[gnu::noinline]] void gemv_columns_chunk(const float* x, const float* w, float* partial, int64_t N, int64_t k0,
                                          int64_t k1) {
  for (int64_t j = 0; j < N; ++j) partial[j] = 0.0f;
  int64_t k = k0;
  for (; k + 8 <= k1; k += 8) {
    const float* r = w + k * N;
    const float x0 = x[k], x1 = x[k + 1], x2 = x[k + 2], x3 = x[k + 3];
    const float x4 = x[k + 4], x5 = x[k + 5], x6 = x[k + 6], x7 = x[k + 7];
    for (int64_t j = 0; j < N; ++j) {
      float s = partial[j];
      s += x0 * r[j];
      s += x1 * r[N + j];
      s += x2 * r[2 * N + j];
      s += x3 * r[3 * N + j];
      s += x4 * r[4 * N + j];
      s += x5 * r[5 * N + j];
      s += x6 * r[6 * N + j];
      s += x7 * r[7 * N + j];
      partial[j] = s;
    }
  }
  for (; k < k1; ++k) {
    const float xk = x[k];
    const float* row = w + k * N;
    for (int64_t j = 0; j < N; ++j) partial[j] += xk * row[j];
  }
}

// y[n] = bias[n] + sum over chunks c, in order, of partials[c * N + n], for n in [n0, n1).
[[gnu::noinline]] void gemv_columns_sum(const float* partials, int64_t chunks, const float* bias, float* y, int64_t N,
                                        int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    float s = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) s += partials[c * N + n];
    y[n] = s + (bias ? bias[n] : 0.0f);
  }
}

// The GELU of the GEMV path, as the reference kernel computes it.
void apply_activation(MatMulActivation act, float* y, int64_t n) {
  if (act == MatMulActivation::none) return;
  for (int64_t i = 0; i < n; ++i) y[i] = matmul_activation_value(act, y[i]);
}

enum class MatMulKind { matmul, gemm, fused };

// What the primitive multiplies: the inputs as they are (precision f32), or
// their bf16 roundings as bf16 (bf16 kernels) or as f32 values (f32 kernels).
enum class Factors { as_is, bf16_bits, rounded_f32 };

class DnnlMatMulKernel : public Kernel {
 public:
  DnnlMatMulKernel(MatMulKind kind, const Node& node) : kind_(kind) {
    if (kind == MatMulKind::gemm) {
      trans_a_ = node.attr_int("transA", 0) != 0;
      alpha_ = node.attr_float("alpha", 1.0f);
      beta_ = node.attr_float("beta", 1.0f);
    }
    if (kind != MatMulKind::matmul) trans_b_ = node.attr_int("transB", 0) != 0;
    if (kind == MatMulKind::fused) activation_ = matmul_activation(node);
    if (const Value* w = node.input(1); w && w->constant) constant_b_ = *w->constant;
    if (node_precision(node) == Precision::bf16) {
      CB_CHECK(cpu_supports_bf16_matmuls(),
               node.describe() << ": precision bf16 needs a CPU with AVX512_BF16, which this one lacks (use f32)");
      factors_ = cpu_bf16_dot_is_fast() ? Factors::bf16_bits : Factors::rounded_f32;
    }
  }

  void run(KernelContext& ctx) override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    const Tensor* c = kind_ != MatMulKind::matmul && ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
    if (c && beta_ == 0.0f) c = nullptr;
    Tensor& out = ctx.out(0);
    if (out.numel() == 0) return;
    const Factors factors = a.dtype() == DType::f32 && b.dtype() == DType::f32 ? factors_ : Factors::as_is;
    const bool bf16 = factors != Factors::as_is;
    if (bf16 ? gemv_bf16(ctx, a, b, c, out) : gemv(ctx, a, b, c, out)) return;
    if (!bf16 && batched_one_row(ctx, a, b, out)) return;
    auto dt = dnnl_type(a.dtype());
    if (!dt || a.rank() < 2 || b.rank() < 2 || a.dtype() != b.dtype() || a.numel() == 0 || b.numel() == 0) {
      fallback(ctx);
      return;
    }
    PrimitiveKey key{a.dims(), b.dims(), c ? c->dims() : std::vector<int64_t>{}, c != nullptr, is_constant_b(b)};
    Prepared* p = find(key);
    // The shape came back: worth packing its weights now. (Rounded factors
    // are packed on first use: rounding on every call measured slower; bf16
    // factors of a 2-D constant B are read on the shape's first call as the
    // GEMV's bf16 rows, which a prefill's decode steps read next anyway.)
    const bool repack = p && p->unpacked_constant;
    if (repack) cache_.pop_back();  // find() moved it last
    if (!p || repack) {
      const bool rows = !repack && factors == Factors::bf16_bits && key.constant_b && b.rank() == 2;
      try {
        p = prepare(key, a, b, c, out, factors == Factors::bf16_bits ? dnnl::memory::data_type::bf16 : *dt, *dt,
                    factors, !rows && (repack || factors != Factors::as_is), rows, ctx.num_threads);
      } catch (const dnnl::error&) {
        if (bf16) throw;  // the fallback would be the reference's emulation: say so instead
        fallback(ctx);
        return;
      }
    }
    auto& eng = dnnl_cpu_engine();
    if (!stream_) stream_.emplace(eng);
    const void* a_data = a.raw();
    const void* b_data = b.raw();
    if (factors == Factors::bf16_bits) {
      a_data = rounded(a, a_bf16_, ctx.num_threads);
      if (p->bf16_rows)
        b_data = bf16_rows_of(b, ctx.num_threads);
      else if (!p->packed_b)
        b_data = rounded(b, b_bf16_, ctx.num_threads);
    } else if (factors == Factors::rounded_f32) {
      a_data = rounded_f32(a, a_f32_, ctx.num_threads);
      if (!p->packed_b) b_data = rounded_f32(b, b_f32_, ctx.num_threads);
    }
    dnnl::memory am(p->a_md, eng, const_cast<void*>(a_data)), om(p->out_md, eng, out.raw());
    dnnl::memory bm = p->packed_b ? *p->packed_b : dnnl::memory(p->b_md, eng, const_cast<void*>(b_data));
    std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, om}};
    if (p->use_bias) {
      args[DNNL_ARG_BIAS] = dnnl::memory(p->c_md, eng, c->raw());
    } else if (p->use_sum) {
      broadcast_into(*c, out);
    }
    ThreadPool::instance().park();  // the cores go to oneDNN's OpenMP threads now
    p->prim.execute(*stream_, args);
    stream_->wait();
  }

 private:
  bool is_constant_b(const Tensor& b) const {
    return constant_b_.defined() && b.raw() == constant_b_.raw() && b.dims() == constant_b_.dims() &&
           b.dtype() == constant_b_.dtype();
  }

  Prepared* find(const PrimitiveKey& key) {
    for (size_t i = 0; i < cache_.size(); ++i)
      if (cache_[i]->key == key) {
        std::rotate(cache_.begin() + long(i), cache_.begin() + long(i) + 1, cache_.end());  // most recent last
        return cache_.back().get();
      }
    return nullptr;
  }

  // Whether y = act(x op(B) + bias) is one row x times a 2-D B with at most
  // a [N] bias (then set): the products gemv() and gemv_bf16() take.
  bool one_row(const Tensor& a, const Tensor& b, const Tensor* c, const Tensor& out, const float*& bias) const {
    if (a.dtype() != DType::f32 || b.dtype() != DType::f32 || out.dtype() != DType::f32 || trans_a_ || alpha_ != 1.0f ||
        a.rank() < 1 || b.rank() != 2)
      return false;
    const int64_t K = a.dim(a.rank() - 1);
    const int64_t N = trans_b_ ? b.dim(0) : b.dim(1);
    if (a.numel() != K || (trans_b_ ? b.dim(1) : b.dim(0)) != K || out.numel() != N || K == 0) return false;
    bias = nullptr;
    if (c) {
      if (beta_ != 1.0f || c->dtype() != DType::f32 || c->numel() != N || (c->rank() == 2 && c->dim(0) != 1) ||
          c->rank() > 2)
        return false;
      bias = c->data<float>();
    }
    return true;
  }

  // y = act(x W + bias) for one row x (M = 1, as in every decode step of
  // generation), streaming W once: oneDNN's matmul read GPT-2 small's
  // weights at M = 1 at ~2 GB/s per thread, a fifth of a plain read
  // (docs/generation.md). Outputs ([N, K]) or chunks of rows ([K, N]) are
  // split between threads, so each y[n] sums in the same order whatever the
  // thread count.
  bool gemv(KernelContext& ctx, const Tensor& a, const Tensor& b, const Tensor* c, Tensor& out) {
    const float* bias = nullptr;
    if (!one_row(a, b, c, out, bias)) return false;
    const int64_t K = a.dim(a.rank() - 1);
    const int64_t N = trans_b_ ? b.dim(0) : b.dim(1);
    const float* x = a.data<float>();
    const float* w = b.data<float>();
    float* y = out.data<float>();
    const size_t bytes = size_t(N * K) * sizeof(float);
    if (trans_b_) {  // W [N, K]: one dot product per output
      parallel_chunks(
          N, bytes, size_t(1) << 16, ctx.num_threads,
          [&](int64_t n0, int64_t n1) { gemv_rows(x, w, bias, y, K, n0, n1); }, kGemvPiecesPerThread);
    } else {  // W [K, N]: chunks of whole rows of W, scaled by x[k], into partial sums
      const int64_t chunks = (K + kGemvChunkRows - 1) / kGemvChunkRows;
      if (partials_.size() < size_t(chunks * N)) partials_.resize(size_t(chunks * N));
      float* partials = partials_.data();
      parallel_chunks(
          chunks, bytes, size_t(1) << 16, ctx.num_threads,
          [&](int64_t c0, int64_t c1) {
            for (int64_t c = c0; c < c1; ++c)
              gemv_columns_chunk(x, w, partials + c * N, N, c * kGemvChunkRows, std::min(K, (c + 1) * kGemvChunkRows));
          },
          kGemvPiecesPerThread);
      parallel_chunks(N, size_t(chunks * N) * sizeof(float), size_t(1) << 16, ctx.num_threads,
                      [&](int64_t n0, int64_t n1) { gemv_columns_sum(partials, chunks, bias, y, N, n0, n1); });
    }
    apply_activation(activation_, y, N);
    return true;
  }

  // A [..., 1, K] times B [..., K, N] with the same leading dims: in
  // generation, the attention scores and weighted values of one new token
  // over a KV cache whose length grows every step, for which oneDNN would
  // build a new primitive per step. One row times one matrix per batch
  // entry, k in order (the same bits whatever the thread count).
  bool batched_one_row(KernelContext& ctx, const Tensor& a, const Tensor& b, Tensor& out) const {
    const size_t r = a.rank();
    if (kind_ != MatMulKind::matmul || a.dtype() != DType::f32 || b.dtype() != DType::f32 || r < 3 || b.rank() != r ||
        a.dim(r - 2) != 1 || b.dim(r - 2) != a.dim(r - 1))
      return false;
    for (size_t i = 0; i + 2 < r; ++i)
      if (a.dim(i) != b.dim(i)) return false;
    const int64_t K = a.dim(r - 1), N = b.dim(r - 1), batches = K > 0 ? a.numel() / K : 0;
    if (K == 0 || batches == 0) return false;
    const float* x = a.data<float>();
    const float* w = b.data<float>();
    float* y = out.data<float>();
    parallel_chunks(batches, size_t(b.numel()) * sizeof(float), size_t(1) << 18, ctx.num_threads,
                    [&](int64_t i0, int64_t i1) {
                      for (int64_t i = i0; i < i1; ++i)
                        gemv_columns_chunk(x + i * K, w + i * K * N, y + i * N, N, 0, K);
                    });
    return true;
  }

  // gemv() under precision bf16, for a constant B: x rounded per call, B
  // rounded and packed as bf16 rows [N][K] on first use.
  bool gemv_bf16(KernelContext& ctx, const Tensor& a, const Tensor& b, const Tensor* c, Tensor& out) {
    const float* bias = nullptr;
    if (!is_constant_b(b) || !one_row(a, b, c, out, bias)) return false;
    const int64_t K = a.dim(a.rank() - 1);
    const int64_t N = trans_b_ ? b.dim(0) : b.dim(1);
    const uint16_t* w = bf16_rows_of(b, ctx.num_threads);
    const uint16_t* x = rounded(a, a_bf16_, 1);
    float* y = out.data<float>();
    parallel_chunks(
        N, size_t(N * K) * 2, size_t(1) << 16, ctx.num_threads,
        [&](int64_t n0, int64_t n1) { gemv_bf16_rows(x, w, bias, y, K, n0, n1); }, kGemvPiecesPerThread);
    apply_activation(activation_, y, N);
    return true;
  }

  // The constant 2-D B rounded to bf16 as rows [N][K] (K contiguous), made
  // on first use and kept: what gemv_bf16() reads, and a bf16 primitive on
  // a shape's first call.
  const uint16_t* bf16_rows_of(const Tensor& b, int threads) {
    const int64_t K = trans_b_ ? b.dim(1) : b.dim(0);
    const int64_t N = trans_b_ ? b.dim(0) : b.dim(1);
    if (gemv_w_.empty()) {
      gemv_w_.resize(size_t(N * K));
      if (trans_b_) {
        convert_to_bf16_parallel(b.data<float>(), gemv_w_.data(), N * K, threads);
      } else {  // [K, N]: rounded as it is (vectorised), then transposed to rows [N][K] by oneDNN's reorder
        std::vector<uint16_t> rounded_kn(size_t(N * K));
        convert_to_bf16_parallel(b.data<float>(), rounded_kn.data(), N * K, threads);
        using tag = dnnl::memory::format_tag;
        auto& eng = dnnl_cpu_engine();
        if (!stream_) stream_.emplace(eng);
        dnnl::memory src({{K, N}, dnnl::memory::data_type::bf16, tag::ab}, eng, rounded_kn.data());
        dnnl::memory dst({{K, N}, dnnl::memory::data_type::bf16, tag::ba}, eng, gemv_w_.data());
        dnnl::reorder(src, dst).execute(*stream_, src, dst);
        stream_->wait();
      }
    }
    return gemv_w_.data();
  }

  // An f32 tensor rounded to bf16 into `scratch` (same layout), kept for reuse.
  static const uint16_t* rounded(const Tensor& t, std::vector<uint16_t>& scratch, int threads) {
    if (scratch.size() < size_t(t.numel())) scratch = std::vector<uint16_t>(size_t(t.numel()));  // no copy
    convert_to_bf16_parallel(t.data<float>(), scratch.data(), t.numel(), threads);
    return scratch.data();
  }

  // An f32 tensor rounded to bf16 values kept as f32, into `scratch`.
  static const float* rounded_f32(const Tensor& t, std::vector<float>& scratch, int threads) {
    if (scratch.size() < size_t(t.numel())) scratch = std::vector<float>(size_t(t.numel()));  // no copy
    round_to_bf16_parallel(t.data<float>(), scratch.data(), t.numel(), threads);
    return scratch.data();
  }

  // dt: the factors' type in the primitive (bf16 for Factors::bf16_bits);
  // out_dt: the output's and the bias's (the tensors' own).
  Prepared* prepare(const PrimitiveKey& key, const Tensor& a, const Tensor& b, const Tensor* c, const Tensor& out,
                    dnnl::memory::data_type dt, dnnl::memory::data_type out_dt, Factors factors, bool pack,
                    bool bf16_rows, int threads) {
    auto p = std::make_unique<Prepared>();
    p->key = key;
    std::vector<int64_t> ad = a.dims(), bd = b.dims(), od = out.dims();
    if (b.rank() == 2 && a.rank() > 2 && !trans_a_) {  // [..., M, K] x [K, N]: one [rows, K] x [K, N]
      ad = {a.numel() / ad.back(), ad.back()};
      od = {out.numel() / od.back(), od.back()};
    }
    size_t rank = std::max(ad.size(), bd.size());
    ad = pad_rank(ad, rank);
    bd = pad_rank(bd, rank);
    od = pad_rank(od, rank);
    std::vector<int64_t> as = contiguous_strides(ad), bs = contiguous_strides(bd);
    // Logical [.., M, K] / [.., K, N] views; a transpose swaps the last two dims and strides.
    if (trans_a_) {
      std::swap(ad[rank - 1], ad[rank - 2]);
      std::swap(as[rank - 1], as[rank - 2]);
    }
    if (trans_b_) {
      std::swap(bd[rank - 1], bd[rank - 2]);
      std::swap(bs[rank - 1], bs[rank - 2]);
    }
    if (bf16_rows) {  // B read as bf16_rows_of(): [K, N] with N rows of K contiguous
      bs[rank - 2] = 1;
      bs[rank - 1] = bd[rank - 2];
    }
    p->a_md = strided_md(ad, as, dt);
    const dnnl::memory::desc b_own = strided_md(bd, bs, dt);
    const dnnl::memory::desc b_query =
        key.constant_b && pack
            ? dnnl::memory::desc(dnnl::memory::dims(bd.begin(), bd.end()), dt, dnnl::memory::format_tag::any)
            : b_own;
    p->out_md = plain_md(od, out_dt);
    dnnl::primitive_attr attr;
    if (alpha_ != 1.0f) attr.set_output_scales(0, {alpha_});
    dnnl::post_ops po;
    int64_t n = od[rank - 1];
    if (c && beta_ == 1.0f && c->numel() == n && (c->rank() == 1 || (c->rank() == 2 && c->dim(0) == 1)) &&
        alpha_ == 1.0f) {
      p->use_bias = true;
      std::vector<int64_t> cd(rank, 1);
      cd[rank - 1] = n;
      p->c_md = plain_md(cd, out_dt);
    } else if (c) {
      p->use_sum = true;
      po.append_sum(beta_);
    }
    if (activation_ != MatMulActivation::none)
      po.append_eltwise(1.0f,
                        activation_ == MatMulActivation::gelu_tanh ? dnnl::algorithm::eltwise_gelu_tanh
                                                                   : dnnl::algorithm::eltwise_gelu_erf,
                        0.0f, 0.0f);
    if (po.len() > 0) attr.set_post_ops(po);
    auto make_pd = [&](const dnnl::memory::desc& b_md) {
      auto desc = p->use_bias ? dnnl::matmul::desc(p->a_md, b_md, p->c_md, p->out_md)
                              : dnnl::matmul::desc(p->a_md, b_md, p->out_md);
      return dnnl::matmul::primitive_desc(desc, attr, dnnl_cpu_engine());
    };
    dnnl::matmul::primitive_desc pd = make_pd(b_query);
    if (key.constant_b && pack && dnnl_is_plain_layout(pd.weights_desc())) {
      // oneDNN's GEMM path, which packs B itself on every call, takes any
      // plain layout and answers `any` with row-major [K, N]. For a weight
      // wider than deep read by few rows (GPT-2 small at 1x128: [768, 3072]
      // x 128 rows), packing from [N, K] is measurably faster (1.3-1.7x on
      // AVX2 EPYC, docs/performance.md); with many rows the layout does not
      // matter, and the weight's own layout is kept (no copy).
      const int64_t rows = ad[rank - 2], n_cols = bd[rank - 1], k = bd[rank - 2];
      const bool columns_first = rows <= kColumnsFirstMaxRows && n_cols > k;
      std::vector<int64_t> cs(rank);  // [..., N, K] in memory: K contiguous
      cs[rank - 2] = 1;
      cs[rank - 1] = k;
      int64_t inner = k * n_cols;
      for (size_t i = rank - 2; i-- > 0;) {
        cs[i] = inner;
        inner *= bd[i];
      }
      const dnnl::memory::desc want = columns_first ? strided_md(bd, cs, dt) : b_own;
      if (want != pd.weights_desc()) pd = make_pd(want);
    }
    p->prim = dnnl::matmul(pd);
    p->b_md = pd.weights_desc();
    p->unpacked_constant = key.constant_b && !pack;
    p->bf16_rows = bf16_rows;
    // A packed constant B under bf16 is rounded once, even where its layout is kept.
    if (key.constant_b && pack && (p->b_md != b_own || factors != Factors::as_is))
      p->packed_b = packed_weights(b, b_own, p->b_md, factors, threads);
    if (cache_.size() >= kMaxCachedShapes) cache_.erase(cache_.begin());  // the least recently used
    cache_.push_back(std::move(p));
    return cache_.back().get();
  }

  // The constant B in layout `want`, reordered on first use and kept. `own`
  // describes B's bytes in the factors' type: for bf16, B is first rounded
  // as ir/precision.h says (oneDNN's reorder need not flush denormals).
  dnnl::memory packed_weights(const Tensor& b, const dnnl::memory::desc& own, const dnnl::memory::desc& want,
                              Factors factors, int threads) {
    for (auto& [md, mem] : packed_)
      if (md == want) return mem;
    auto& eng = dnnl_cpu_engine();
    if (!stream_) stream_.emplace(eng);
    dnnl::memory src(own, eng, b.raw());
    std::vector<uint16_t> b_bf16;
    if (factors == Factors::bf16_bits) src = dnnl::memory(own, eng, const_cast<uint16_t*>(rounded(b, b_bf16, threads)));
    dnnl::memory dst(want, eng);
    dnnl::reorder(src, dst).execute(*stream_, src, dst);
    stream_->wait();
    if (factors == Factors::rounded_f32) {  // rounding is per element: round the packed copy in place
      float* packed = static_cast<float*>(dst.get_data_handle());
      round_to_bf16_parallel(packed, packed, int64_t(want.get_size() / sizeof(float)), threads);
    }
    packed_.emplace_back(want, dst);
    return dst;
  }

  // out[i, j] = C broadcast to out's shape (same dtype), for the sum post-op.
  static void broadcast_into(const Tensor& c, Tensor& out) {
    size_t es = dtype_size(out.dtype());
    std::vector<int64_t> st[1] = {broadcast_strides(c.dims(), out.dims())};
    auto* dst = static_cast<uint8_t*>(out.raw());
    auto* src = static_cast<const uint8_t*>(c.raw());
    for_each_offset(out.dims(), st, [&](const int64_t* off) {
      std::memcpy(dst, src + off[0] * int64_t(es), es);
      dst += es;
    });
  }

  void fallback(KernelContext& ctx) {
    KernelFn fn = kind_ == MatMulKind::fused
                      ? reference_kernels().find(kCodebookDomain, kFusedMatMulOp)
                      : reference_kernels().find("", kind_ == MatMulKind::gemm ? "Gemm" : "MatMul");
    CB_CHECK(fn, ctx.node.describe() << ": no reference kernel");
    fn(ctx);
  }

  MatMulKind kind_;
  bool trans_a_ = false, trans_b_ = false;
  float alpha_ = 1.0f, beta_ = 1.0f;
  MatMulActivation activation_ = MatMulActivation::none;
  Factors factors_ = Factors::as_is;              // for f32 inputs (as_is: precision f32)
  std::vector<uint16_t> a_bf16_, b_bf16_;         // the rounded factors of the last call
  std::vector<float> a_f32_, b_f32_;              // the same as f32 values (Factors::rounded_f32)
  std::vector<float> partials_;                   // gemv()'s per-chunk sums for a [K, N] weight
  std::vector<uint16_t> gemv_w_;                  // the constant B as bf16 rows [N][K], for gemv_bf16()
  Tensor constant_b_;                             // the graph constant B, when it is one (shares its buffer)
  std::vector<std::unique_ptr<Prepared>> cache_;  // least recently used first
  std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> packed_;
  std::optional<dnnl::stream> stream_;
};

std::unique_ptr<Kernel> make_matmul(const Node& node) {
  return std::make_unique<DnnlMatMulKernel>(MatMulKind::matmul, node);
}
std::unique_ptr<Kernel> make_gemm(const Node& node) {
  return std::make_unique<DnnlMatMulKernel>(MatMulKind::gemm, node);
}
std::unique_ptr<Kernel> make_fused_matmul(const Node& node) {
  return std::make_unique<DnnlMatMulKernel>(MatMulKind::fused, node);
}

}  // namespace

void register_dnnl_matmul_kernels(KernelFactoryTable& t) {
  t.add("MatMul", make_matmul);
  t.add("Gemm", make_gemm);
  t.add(kFusedMatMulOp, make_fused_matmul, kCodebookDomain);
}

}  // namespace cb
