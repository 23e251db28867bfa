// Reference kernels of the backward-pass ops (domain "codebook.grad",
// semantics in ir/ops/grad.h). Float kernels work on any float storage type,
// with sums in double; CodebookGrad is f32 like the Codebook op and follows
// the loss-mode table of ir/ops/grad.h term by term.
#include "ir/ops/grad.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "backends/reference/accumulate.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"
#include "ir/codebook.h"

namespace cb {

CodebookGradDims codebook_grad_dims(const KernelContext& ctx) {
  const Node& node = ctx.node;
  const Tensor& dy = ctx.in(0);
  const Tensor& x = ctx.in(1);
  const Tensor& codes = ctx.in(2);
  const Tensor& ln_scale = ctx.in(3);
  const Tensor& ln_bias = ctx.in(4);
  const Tensor& ids = ctx.in(5);
  CB_CHECK(x.rank() == 3 && codes.rank() == 3 && ids.rank() == 4,
           node.describe() << ": x " << dims_str(x.dims()) << ", codes " << dims_str(codes.dims()) << " and ids "
                           << dims_str(ids.dims()) << " must have rank 3, 3 and 4");
  CodebookGradDims d{x.dim(0), x.dim(1), x.dim(2), codes.dim(0), codes.dim(1), codes.dim(2), node.attr_int("k", 1)};
  CB_CHECK(d.G * d.Dg == d.D && ln_scale.numel() == d.G * d.Dg && ln_bias.numel() == d.G * d.Dg &&
               dy.dims() == x.dims() && ids.dims() == std::vector<int64_t>({d.B, d.T, d.G, d.k}),
           node.describe() << ": dy " << dims_str(dy.dims()) << ", x " << dims_str(x.dims()) << ", codes "
                           << dims_str(codes.dims()) << ", ln_scale " << dims_str(ln_scale.dims()) << " and ids "
                           << dims_str(ids.dims()) << " do not agree (k = " << d.k << ")");
  return d;
}

namespace {

int64_t dims_product(const std::vector<int64_t>& d, size_t from, size_t to) {
  int64_t p = 1;
  for (size_t i = from; i < to; ++i) p *= d[i];
  return p;
}

// Calls fn(T{}) for a float storage type.
template <typename Fn>
void float_dispatch(const Node& node, DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    case DType::f16: return fn(Half{});
    case DType::bf16: return fn(BFloat16{});
    default: CB_FAIL(node.describe() << ": unsupported dtype " << dtype_name(t));
  }
}

// ---------------------------------------------------------------- SoftmaxGrad

template <typename T>
void softmax_grad_typed(KernelContext& ctx, bool log) {
  const Tensor& dy = ctx.in(0);
  const Tensor& y = ctx.in(1);
  Tensor& dx = ctx.out(0);
  CB_CHECK(dy.dims() == y.dims(), ctx.node.describe() << ": dy " << dims_str(dy.dims()) << " and y "
                                                      << dims_str(y.dims()) << " differ in shape");
  size_t axis = size_t(norm_axis(ctx.node.attr_int("axis", -1), int64_t(y.rank())));
  const int64_t outer = dims_product(y.dims(), 0, axis), n = y.dim(axis),
                inner = dims_product(y.dims(), axis + 1, y.rank());
  const T* g = dy.data<T>();
  const T* p = y.data<T>();
  T* out = dx.data<T>();
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t base = o * n * inner + i;
      double s = 0;
      for (int64_t j = 0; j < n; ++j) {
        int64_t e = base + j * inner;
        s += log ? to_double(g[e]) : to_double(g[e]) * to_double(p[e]);
      }
      for (int64_t j = 0; j < n; ++j) {
        int64_t e = base + j * inner;
        double gy = to_double(g[e]), yv = to_double(p[e]);
        out[e] = from_double<T>(log ? gy - std::exp(yv) * s : yv * (gy - s));
      }
    }
}

void softmax_grad_kernel(KernelContext& ctx) {
  bool log = ctx.node.attr_int("log", 0) != 0;
  float_dispatch(ctx.node, ctx.in(0).dtype(), [&](auto tag) { softmax_grad_typed<decltype(tag)>(ctx, log); });
}

// ------------------------------------------------------------------- GeluGrad

template <typename T>
void gelu_grad_typed(KernelContext& ctx, bool tanh_approximation) {
  const Tensor& dy = ctx.in(0);
  const Tensor& x = ctx.in(1);
  CB_CHECK(dy.dims() == x.dims(), ctx.node.describe() << ": dy " << dims_str(dy.dims()) << " and x "
                                                      << dims_str(x.dims()) << " differ in shape");
  constexpr double kSqrt2OverPi = 0.7978845608028654, kCubic = 0.044715;
  constexpr double kInvSqrt2 = 0.7071067811865476, kInvSqrt2Pi = 0.3989422804014327;
  const T* g = dy.data<T>();
  const T* xp = x.data<T>();
  T* out = ctx.out(0).data<T>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = to_double(xp[i]);
    double d;
    if (tanh_approximation) {
      const double t = std::tanh(kSqrt2OverPi * (v + kCubic * v * v * v));
      d = 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * kSqrt2OverPi * (1 + 3 * kCubic * v * v);
    } else {
      d = 0.5 * (1 + std::erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * std::exp(-0.5 * v * v);
    }
    out[i] = from_double<T>(to_double(g[i]) * d);
  }
}

void gelu_grad_kernel(KernelContext& ctx) {
  const std::string approximate = ctx.node.attr_string("approximate", "none");
  CB_CHECK(approximate == "none" || approximate == "tanh",
           ctx.node.describe() << ": approximate must be \"none\" or \"tanh\", got \"" << approximate << "\"");
  float_dispatch(ctx.node, ctx.in(1).dtype(),
                 [&](auto tag) { gelu_grad_typed<decltype(tag)>(ctx, approximate == "tanh"); });
}

// ----------------------------------------------------- LayerNormalizationGrad

template <typename T>
void layer_norm_grad_typed(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Tensor& x = ctx.in(1);
  const Tensor& scale = ctx.in(2);
  const Node& node = ctx.node;
  CB_CHECK(dy.dims() == x.dims(),
           node.describe() << ": dy " << dims_str(dy.dims()) << " and x " << dims_str(x.dims()) << " differ in shape");
  size_t axis = size_t(norm_axis(node.attr_int("axis", -1), int64_t(x.rank())));
  const double eps = node.attr_float("epsilon", 1e-5f);
  const int64_t rows = dims_product(x.dims(), 0, axis), n = dims_product(x.dims(), axis, x.rank());
  // Scale read over the normalised dims; it must not vary along the leading ones.
  std::vector<int64_t> norm_dims(x.dims().begin() + long(axis), x.dims().end());
  CB_CHECK(scale.rank() <= norm_dims.size() || dims_product(scale.dims(), 0, scale.rank() - norm_dims.size()) == 1,
           node.describe() << ": scale " << dims_str(scale.dims()) << " varies over the leading dims of x "
                           << dims_str(x.dims()));
  std::vector<int64_t> sdims = scale.dims();
  if (sdims.size() > norm_dims.size()) sdims.erase(sdims.begin(), sdims.end() - long(norm_dims.size()));
  std::vector<int64_t> scale_off;
  const std::vector<int64_t> strides[1] = {broadcast_strides(sdims, norm_dims)};
  for_each_offset(norm_dims, strides, [&](const int64_t* o) { scale_off.push_back(o[0]); });

  Tensor* dx_out = ctx.outputs.size() > 0 ? ctx.outputs[0] : nullptr;
  Tensor* dscale_out = ctx.outputs.size() > 1 ? ctx.outputs[1] : nullptr;
  Tensor* dbias_out = ctx.outputs.size() > 2 ? ctx.outputs[2] : nullptr;
  std::vector<double> dscale(size_t(n), 0.0), dbias(size_t(n), 0.0), xhat(static_cast<size_t>(n)),
      dxhat(static_cast<size_t>(n));
  const T* xp = x.data<T>();
  const T* gp = dy.data<T>();
  const T* sp = scale.data<T>();
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = xp + r * n;
    const T* gr = gp + r * n;
    double mean = 0;
    for (int64_t i = 0; i < n; ++i) mean += to_double(xr[i]);
    mean /= double(n);
    double var = 0;
    for (int64_t i = 0; i < n; ++i) var += (to_double(xr[i]) - mean) * (to_double(xr[i]) - mean);
    var /= double(n);
    const double inv = 1.0 / std::sqrt(var + eps);
    double mean_dxhat = 0, mean_dxhat_xhat = 0;
    for (int64_t i = 0; i < n; ++i) {
      size_t ui = size_t(i);
      double g = to_double(gr[i]);
      xhat[ui] = (to_double(xr[i]) - mean) * inv;
      dxhat[ui] = g * to_double(sp[scale_off[ui]]);
      dscale[ui] += g * xhat[ui];
      dbias[ui] += g;
      mean_dxhat += dxhat[ui];
      mean_dxhat_xhat += dxhat[ui] * xhat[ui];
    }
    mean_dxhat /= double(n);
    mean_dxhat_xhat /= double(n);
    if (dx_out) {
      T* dxr = dx_out->data<T>() + r * n;
      for (int64_t i = 0; i < n; ++i) {
        size_t ui = size_t(i);
        dxr[i] = from_double<T>(inv * (dxhat[ui] - mean_dxhat - xhat[ui] * mean_dxhat_xhat));
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (dscale_out) dscale_out->data<T>()[i] = from_double<T>(dscale[size_t(i)]);
    if (dbias_out) dbias_out->data<T>()[i] = from_double<T>(dbias[size_t(i)]);
  }
}

void layer_norm_grad_kernel(KernelContext& ctx) {
  float_dispatch(ctx.node, ctx.in(1).dtype(), [&](auto tag) { layer_norm_grad_typed<decltype(tag)>(ctx); });
}

// ----------------------------------------------------------------- GatherGrad

template <typename T>
void gather_grad_typed(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  const Tensor& indices = ctx.in(1);
  Tensor& out = ctx.out(0);
  const Node& node = ctx.node;
  size_t axis = size_t(norm_axis(node.attr_int("axis", 0), int64_t(out.rank())));
  const int64_t outer = dims_product(out.dims(), 0, axis), A = out.dim(axis),
                inner = dims_product(out.dims(), axis + 1, out.rank()), count = indices.numel();
  CB_CHECK(dy.numel() == outer * count * inner, node.describe() << ": dy " << dims_str(dy.dims())
                                                                << " is not a Gather of " << dims_str(out.dims())
                                                                << " by indices " << dims_str(indices.dims()));
  std::memset(out.raw(), 0, out.nbytes());
  const T* g = dy.data<T>();
  T* o = out.data<T>();
  for (int64_t c = 0; c < count; ++c) {
    int64_t idx = indices.get_int(c);
    CB_CHECK(idx >= -A && idx < A,
             node.describe() << ": index " << idx << " is out of range for axis " << axis << " of size " << A);
    if (idx < 0) idx += A;
    for (int64_t p = 0; p < outer; ++p) {
      const T* src = g + (p * count + c) * inner;
      T* dst = o + (p * A + idx) * inner;
      for (int64_t i = 0; i < inner; ++i) dst[i] = from_double<T>(to_double(dst[i]) + to_double(src[i]));
    }
  }
}

void gather_grad_kernel(KernelContext& ctx) {
  float_dispatch(ctx.node, ctx.in(0).dtype(), [&](auto tag) { gather_grad_typed<decltype(tag)>(ctx); });
}

// ------------------------------------------------------------------ SliceGrad

// dy goes where Slice reads: start and step per axis after ONNX's clamping
// (as the Slice kernel computes them), counts from dy's dims.
void slice_grad_kernel(KernelContext& ctx) {
  const Tensor& dy = ctx.in(0);
  Tensor& out = ctx.out(0);
  const Node& node = ctx.node;
  const int64_t r = int64_t(out.rank());
  CB_CHECK(dy.rank() == out.rank(), node.describe() << ": dy " << dims_str(dy.dims()) << " and shape "
                                                    << dims_str(out.dims()) << " differ in rank");
  std::vector<int64_t> starts = ctx.in(2).to_int_vector(), ends = ctx.in(3).to_int_vector();
  size_t n = starts.size();
  std::vector<int64_t> axes, steps(n, 1);
  if (ctx.inputs.size() > 4 && ctx.inputs[4])
    axes = ctx.inputs[4]->to_int_vector();
  else
    for (size_t i = 0; i < n; ++i) axes.push_back(int64_t(i));
  if (ctx.inputs.size() > 5 && ctx.inputs[5]) steps = ctx.inputs[5]->to_int_vector();
  CB_CHECK(ends.size() == n && axes.size() == n && steps.size() == n,
           node.describe() << ": starts, ends, axes and steps differ in length");
  std::vector<int64_t> out_strides = contiguous_strides(out.dims()), strides = out_strides;
  int64_t base = 0;
  for (size_t i = 0; i < n; ++i) {
    int64_t a = norm_axis(axes[i], r), d = out.dim(size_t(a)), st = starts[i], step = steps[i];
    CB_CHECK(step != 0, node.describe() << ": a step is 0");
    if (st < 0) st += d;
    st = step > 0 ? std::min(std::max<int64_t>(st, 0), d) : std::min(std::max<int64_t>(st, 0), d - 1);
    base += st * out_strides[size_t(a)];
    // With one element the step is never taken (and step * stride may overflow).
    strides[size_t(a)] = dy.dim(size_t(a)) > 1 ? out_strides[size_t(a)] * step : 0;
  }
  std::memset(out.raw(), 0, out.nbytes());
  size_t esize = dtype_size(out.dtype());
  const uint8_t* src = static_cast<const uint8_t*>(dy.raw());
  uint8_t* dst = static_cast<uint8_t*>(out.raw());
  const std::vector<int64_t> st[1] = {strides};
  int64_t e = 0;
  for_each_offset(dy.dims(), st, [&](const int64_t* o) {
    std::memcpy(dst + size_t(base + o[0]) * esize, src + size_t(e++) * esize, esize);
  });
}

// --------------------------------------------------------------- CodebookGrad

void codebook_grad_kernel(KernelContext& ctx) {
  const Node& node = ctx.node;
  const Tensor& dy = ctx.in(0);
  const Tensor& x = ctx.in(1);
  const Tensor& codes = ctx.in(2);
  const Tensor& ln_scale = ctx.in(3);
  const Tensor& ln_bias = ctx.in(4);
  const Tensor& ids = ctx.in(5);
  const auto [B, T, D, G, K, Dg, k] = codebook_grad_dims(ctx);
  const CodebookLoss loss = codebook_loss_of(node);
  const double eps = node.attr_float("epsilon", 1e-5f);
  const double N = double(B * T);
  const double beta2 = 2.0 * double(loss.beta);

  Tensor* dx_out = ctx.outputs.size() > 0 ? ctx.outputs[0] : nullptr;
  Tensor* dcodes_out = ctx.outputs.size() > 1 ? ctx.outputs[1] : nullptr;
  Tensor* dscale_out = ctx.outputs.size() > 2 ? ctx.outputs[2] : nullptr;
  Tensor* dbias_out = ctx.outputs.size() > 3 ? ctx.outputs[3] : nullptr;
  const bool need_du = dx_out || dscale_out || dbias_out;
  std::vector<double> dcodes(dcodes_out ? size_t(G * K * Dg) : 0, 0.0);
  std::vector<double> dscale(size_t(G * Dg), 0.0), dbias(size_t(G * Dg), 0.0);
  const size_t dg = static_cast<size_t>(Dg);
  std::vector<double> xhat(dg), u(dg), y(dg), du(dg);
  const float* C = codes.data<float>();
  const float* gam = ln_scale.data<float>();
  const float* bet = ln_bias.data<float>();

  for (int64_t token = 0; token < B * T; ++token)
    for (int64_t g = 0; g < G; ++g) {
      const float* xg = x.data<float>() + token * D + g * Dg;
      const float* gg = dy.data<float>() + token * D + g * Dg;
      const int64_t* slot = ids.data<int64_t>() + (token * G + g) * k;
      const float* Cg = C + g * K * Dg;
      // u = LN(x_g) and y = (1/k) sum of the selected rows (blocked slots 0).
      double mean = 0;
      for (int64_t i = 0; i < Dg; ++i) mean += xg[i];
      mean /= double(Dg);
      double var = 0;
      for (int64_t i = 0; i < Dg; ++i) var += (xg[i] - mean) * (xg[i] - mean);
      var /= double(Dg);
      const double inv = 1.0 / std::sqrt(var + eps);
      for (int64_t i = 0; i < Dg; ++i) {
        xhat[size_t(i)] = (xg[i] - mean) * inv;
        u[size_t(i)] = xhat[size_t(i)] * gam[g * Dg + i] + bet[g * Dg + i];
        y[size_t(i)] = 0;
      }
      for (int64_t j = 0; j < k; ++j) {
        int64_t c = slot[j];
        if (c == -1) continue;
        CB_CHECK(c >= 0 && c < K, node.describe() << ": id " << c << " is outside [0, " << K << ")");
        for (int64_t i = 0; i < Dg; ++i) y[size_t(i)] += Cg[c * Dg + i];
      }
      for (int64_t i = 0; i < Dg; ++i) y[size_t(i)] /= double(k);

      // dcodes: T_c = (1/k) g, R_c = (2/(N k)) (y - u), per selected slot.
      if (dcodes_out)
        for (int64_t j = 0; j < k; ++j) {
          int64_t c = slot[j];
          if (c == -1) continue;
          double* dc = dcodes.data() + (g * K + c) * Dg;
          for (int64_t i = 0; i < Dg; ++i) {
            double v = 0;
            if (loss.task_to_codes()) v += gg[i] / double(k);
            if (loss.reconstruction_to_codes()) v += 2.0 / (N * double(k)) * (y[size_t(i)] - u[size_t(i)]);
            dc[i] += v;
          }
        }
      if (!need_du) continue;

      // du = g (+ 2 beta (u - y)), then the LayerNorm backward.
      double mean_dxhat = 0, mean_dxhat_xhat = 0;
      for (int64_t i = 0; i < Dg; ++i) {
        size_t ui = size_t(i);
        du[ui] = gg[i];
        if (loss.commitment()) du[ui] += beta2 * (u[ui] - y[ui]);
        dscale[size_t(g * Dg + i)] += du[ui] * xhat[ui];
        dbias[size_t(g * Dg + i)] += du[ui];
        double dxh = du[ui] * gam[g * Dg + i];
        mean_dxhat += dxh;
        mean_dxhat_xhat += dxh * xhat[ui];
      }
      mean_dxhat /= double(Dg);
      mean_dxhat_xhat /= double(Dg);
      if (dx_out) {
        float* dxg = dx_out->data<float>() + token * D + g * Dg;
        for (int64_t i = 0; i < Dg; ++i) {
          size_t ui = size_t(i);
          dxg[i] = float(inv * (du[ui] * gam[g * Dg + i] - mean_dxhat - xhat[ui] * mean_dxhat_xhat));
        }
      }
    }
  if (dcodes_out)
    for (size_t i = 0; i < dcodes.size(); ++i) dcodes_out->data<float>()[i] = float(dcodes[i]);
  for (size_t i = 0; i < dscale.size(); ++i) {
    if (dscale_out) dscale_out->data<float>()[i] = float(dscale[i]);
    if (dbias_out) dbias_out->data<float>()[i] = float(dbias[i]);
  }
}

}  // namespace

void register_reference_grad(KernelTable& t) {
  t.add("SoftmaxGrad", softmax_grad_kernel, kGradDomain);
  t.add("GeluGrad", gelu_grad_kernel, kGradDomain);
  t.add("LayerNormalizationGrad", layer_norm_grad_kernel, kGradDomain);
  t.add("GatherGrad", gather_grad_kernel, kGradDomain);
  t.add("SliceGrad", slice_grad_kernel, kGradDomain);
  t.add("CodebookGrad", codebook_grad_kernel, kGradDomain);
}

}  // namespace cb
