// MatMul (numpy semantics) and Gemm through oneDNN's matmul primitive.
//
// A primitive is specialised to shapes, so each kernel caches the primitive of
// the last input shapes it saw: a model run at one (batch, seq) size builds
// each primitive once, on the first run. Batch dims are broadcast by oneDNN
// after padding both operands to the same rank; transposes (Gemm) are strides;
// Gemm's alpha is an output scale, a [N]-shaped C is the primitive's bias and
// any other C is copied into the output first and added with a sum post-op.
#include "backends/cpu/dnnl_matmul.h"

#include <cstring>
#include <dnnl.hpp>

#include "backends/cpu/dnnl_engine.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"
#include "support/error.h"
#include "support/threads.h"

namespace cb {

namespace {

std::optional<dnnl::memory::data_type> dnnl_type(DType t) {
  switch (t) {
    case DType::f32: return dnnl::memory::data_type::f32;
    case DType::bf16: return dnnl::memory::data_type::bf16;
    case DType::f16: return dnnl::memory::data_type::f16;
    default: return std::nullopt;
  }
}

dnnl::memory::desc plain_md(const std::vector<int64_t>& dims, dnnl::memory::data_type dt) {
  dnnl::memory::dims d(dims.begin(), dims.end());
  std::vector<int64_t> strides = contiguous_strides(dims);
  dnnl::memory::dims s(strides.begin(), strides.end());
  return dnnl::memory::desc(d, dt, s);
}

std::vector<int64_t> pad_rank(const std::vector<int64_t>& dims, size_t rank) {
  std::vector<int64_t> d(rank - dims.size(), 1);
  d.insert(d.end(), dims.begin(), dims.end());
  return d;
}

struct Prepared {
  std::vector<int64_t> a_dims, b_dims, c_dims;  // the shapes the primitive was built for
  bool has_c = false;
  dnnl::matmul prim;
  dnnl::memory::desc a_md, b_md, c_md, out_md;
  bool use_bias = false, use_sum = false;
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

// y[n] = bias[n] + sum_k x[k] W[k, n] for n in [n0, n1), k in order.
[[gnu::noinline]] void gemv_columns(const float* x, const float* w, const float* bias, float* y, int64_t K, int64_t N,
                                    int64_t n0, int64_t n1) {
  float* yb = y + n0;
  const int64_t width = n1 - n0;
  for (int64_t j = 0; j < width; ++j) yb[j] = bias ? bias[n0 + j] : 0.0f;
  for (int64_t k = 0; k < K; ++k) {
    const float xk = x[k];
    const float* row = w + k * N + n0;
    for (int64_t j = 0; j < width; ++j) yb[j] += xk * row[j];
  }
}

class DnnlMatMulKernel : public Kernel {
 public:
  DnnlMatMulKernel(bool gemm, const Node& node) : gemm_(gemm) {
    if (gemm) {
      trans_a_ = node.attr_int("transA", 0) != 0;
      trans_b_ = node.attr_int("transB", 0) != 0;
      alpha_ = node.attr_float("alpha", 1.0f);
      beta_ = node.attr_float("beta", 1.0f);
    }
  }

  void run(KernelContext& ctx) override {
    const Tensor& a = ctx.in(0);
    const Tensor& b = ctx.in(1);
    const Tensor* c = gemm_ && ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;
    if (c && beta_ == 0.0f) c = nullptr;
    Tensor& out = ctx.out(0);
    if (out.numel() == 0) return;
    if (gemv(ctx, a, b, c, out)) return;
    auto dt = dnnl_type(a.dtype());
    if (!dt || a.rank() < 2 || b.rank() < 2 || a.dtype() != b.dtype() || a.numel() == 0 || b.numel() == 0) {
      fallback(ctx);
      return;
    }
    if (!prepared_ || prepared_->a_dims != a.dims() || prepared_->b_dims != b.dims() ||
        prepared_->has_c != (c != nullptr) || (c && prepared_->c_dims != c->dims())) {
      try {
        prepare(a, b, c, out, *dt);
      } catch (const dnnl::error&) {
        prepared_.reset();
        fallback(ctx);
        return;
      }
    }
    Prepared& p = *prepared_;
    auto& eng = dnnl_cpu_engine();
    dnnl::stream stream(eng);
    dnnl::memory am(p.a_md, eng, a.raw()), bm(p.b_md, eng, b.raw()), om(p.out_md, eng, out.raw());
    std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, om}};
    if (p.use_bias) {
      args[DNNL_ARG_BIAS] = dnnl::memory(p.c_md, eng, c->raw());
    } else if (p.use_sum) {
      broadcast_into(*c, out);
    }
    p.prim.execute(stream, args);
    stream.wait();
  }

 private:
  // y = x W (+ bias) for one row x (M = 1, as in every decode step of
  // generation), streaming W once: oneDNN's matmul read GPT-2 small's
  // weights at M = 1 at ~2 GB/s per thread, a fifth of a plain read
  // (docs/generation.md). Columns are split between threads, so each y[n]
  // sums over k in the same order whatever the thread count.
  bool gemv(KernelContext& ctx, const Tensor& a, const Tensor& b, const Tensor* c, Tensor& out) const {
    if (a.dtype() != DType::f32 || b.dtype() != DType::f32 || out.dtype() != DType::f32 || trans_a_ || alpha_ != 1.0f ||
        a.rank() < 1 || b.rank() != 2)
      return false;
    const int64_t K = a.dim(a.rank() - 1);
    const int64_t N = trans_b_ ? b.dim(0) : b.dim(1);
    if (a.numel() != K || (trans_b_ ? b.dim(1) : b.dim(0)) != K || out.numel() != N || K == 0) return false;
    const float* bias = nullptr;
    if (c) {
      if (beta_ != 1.0f || c->dtype() != DType::f32 || c->numel() != N || (c->rank() == 2 && c->dim(0) != 1) ||
          c->rank() > 2)
        return false;
      bias = c->data<float>();
    }
    const float* x = a.data<float>();
    const float* w = b.data<float>();
    float* y = out.data<float>();
    const size_t bytes = size_t(N * K) * sizeof(float);
    if (trans_b_) {  // W [N, K]: one dot product per output
      parallel_chunks(N, bytes, size_t(1) << 16, ctx.num_threads,
                      [&](int64_t n0, int64_t n1) { gemv_rows(x, w, bias, y, K, n0, n1); });
    } else {  // W [K, N]: rows of W scaled by x[k] into a block of y
      parallel_chunks(N, bytes, size_t(1) << 16, ctx.num_threads,
                      [&](int64_t n0, int64_t n1) { gemv_columns(x, w, bias, y, K, N, n0, n1); });
    }
    return true;
  }

  void prepare(const Tensor& a, const Tensor& b, const Tensor* c, const Tensor& out, dnnl::memory::data_type dt) {
    auto p = std::make_unique<Prepared>();
    p->a_dims = a.dims();
    p->b_dims = b.dims();
    p->has_c = c != nullptr;
    if (c) p->c_dims = c->dims();
    size_t rank = std::max(a.rank(), b.rank());
    std::vector<int64_t> ad = pad_rank(a.dims(), rank), bd = pad_rank(b.dims(), rank);
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
    p->a_md =
        dnnl::memory::desc(dnnl::memory::dims(ad.begin(), ad.end()), dt, dnnl::memory::dims(as.begin(), as.end()));
    p->b_md =
        dnnl::memory::desc(dnnl::memory::dims(bd.begin(), bd.end()), dt, dnnl::memory::dims(bs.begin(), bs.end()));
    std::vector<int64_t> od = pad_rank(out.dims(), rank);
    p->out_md = plain_md(od, dt);
    dnnl::primitive_attr attr;
    if (alpha_ != 1.0f) attr.set_output_scales(0, {alpha_});
    int64_t n = od[rank - 1];
    if (c && beta_ == 1.0f && c->numel() == n && (c->rank() == 1 || (c->rank() == 2 && c->dim(0) == 1)) &&
        alpha_ == 1.0f) {
      p->use_bias = true;
      std::vector<int64_t> cd(rank, 1);
      cd[rank - 1] = n;
      p->c_md = plain_md(cd, dt);
    } else if (c) {
      p->use_sum = true;
      dnnl::post_ops po;
      po.append_sum(beta_);
      attr.set_post_ops(po);
    }
    auto desc = p->use_bias ? dnnl::matmul::desc(p->a_md, p->b_md, p->c_md, p->out_md)
                            : dnnl::matmul::desc(p->a_md, p->b_md, p->out_md);
    dnnl::matmul::primitive_desc pd(desc, attr, dnnl_cpu_engine());
    p->prim = dnnl::matmul(pd);
    prepared_ = std::move(p);
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
    KernelFn fn = reference_kernels().find("", gemm_ ? "Gemm" : "MatMul");
    CB_CHECK(fn, ctx.node.describe() << ": no reference kernel");
    fn(ctx);
  }

  bool gemm_;
  bool trans_a_ = false, trans_b_ = false;
  float alpha_ = 1.0f, beta_ = 1.0f;
  std::unique_ptr<Prepared> prepared_;
};

std::unique_ptr<Kernel> make_matmul(const Node& node) { return std::make_unique<DnnlMatMulKernel>(false, node); }
std::unique_ptr<Kernel> make_gemm(const Node& node) { return std::make_unique<DnnlMatMulKernel>(true, node); }

}  // namespace

void register_dnnl_matmul_kernels(KernelFactoryTable& t) {
  t.add("MatMul", make_matmul);
  t.add("Gemm", make_gemm);
}

}  // namespace cb
