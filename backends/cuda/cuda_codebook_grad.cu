// codebook.grad.CodebookGrad on CUDA (ir/ops/grad.h: every loss mode),
// deterministic, without float atomics, so a run on the GPU repeats bit for
// bit. Per call:
//   1. rows: a block per (token, member) recomputes u = LN(x) and y (the
//      mean of its selected codes), keeps them and the LayerNorm's mean and
//      1/std, and writes dx from du = g (+ 2 beta (u - y)).
//   2. columns: a thread per (member, component) sums dscale and dbias over
//      the tokens in order.
//   3. dcodes: the selected slots are sorted by (member, code, token, slot)
//      (a bitonic sort of 64-bit keys: unique, so any sort gives one order),
//      each code's run of slots is found, and a block per code sums its
//      slots' T and R terms in token order, as the reference does.
#include <climits>

#include "backends/cuda/cuda_common.h"
#include "backends/reference/reference_backend.h"
#include "ir/ops/grad.h"

namespace cb::cuda {

namespace {

struct CodebookGradCall {
  const float *dy, *x, *codes, *ln_scale, *ln_bias;
  const int64_t* ids;  // [tokens, G, k]
  float *dx, *dcodes, *dscale, *dbias;
  long long tokens, G, K, Dg;
  int k;
  double eps, N, beta2;  // beta2 = 2 beta
  bool task_to_codes, reconstruction_to_codes, commitment;
  // Scratch: u and y [tokens, G, Dg], the LayerNorm's (mean, 1/std) per (token, member).
  float *u, *y;
  double* stats;
  int* bad;  // set when an id is outside [-1, K)
};

// du of one component: the task gradient, plus the commitment term.
__device__ inline double du_of(const CodebookGradCall& c, long long at) {
  double du = c.dy[at];
  if (c.commitment) du += c.beta2 * (double(c.u[at]) - double(c.y[at]));
  return du;
}

__global__ void codebook_grad_rows_kernel(CodebookGradCall c) {
  __shared__ double shared[32];
  const long long row = blockIdx.x;  // token * G + g
  const long long g = row % c.G, base = row * c.Dg;
  const float* xg = c.x + base;
  const int64_t* slot = c.ids + row * c.k;
  const float* member = c.codes + g * c.K * c.Dg;
  double s = 0;
  for (long long i = threadIdx.x; i < c.Dg; i += blockDim.x) s += xg[i];
  const double mean = block_sum(s, shared) / double(c.Dg);
  double q = 0;
  for (long long i = threadIdx.x; i < c.Dg; i += blockDim.x) q += (xg[i] - mean) * (xg[i] - mean);
  const double inv = 1.0 / sqrt(block_sum(q, shared) / double(c.Dg) + c.eps);
  if (threadIdx.x == 0) {
    c.stats[2 * row] = mean;
    c.stats[2 * row + 1] = inv;
    for (int j = 0; j < c.k; ++j)
      if (slot[j] < -1 || slot[j] >= c.K) atomicExch(c.bad, 1);
  }
  double m1 = 0, m2 = 0;  // sums of dxhat and dxhat * xhat
  for (long long i = threadIdx.x; i < c.Dg; i += blockDim.x) {
    const double xhat = (xg[i] - mean) * inv;
    const double u = xhat * c.ln_scale[g * c.Dg + i] + c.ln_bias[g * c.Dg + i];
    double y = 0;
    for (int j = 0; j < c.k; ++j)
      if (slot[j] >= 0 && slot[j] < c.K) y += member[slot[j] * c.Dg + i];
    y /= double(c.k);
    c.u[base + i] = float(u);
    c.y[base + i] = float(y);
    const double dxhat = du_of(c, base + i) * c.ln_scale[g * c.Dg + i];  // as the later passes read u and y
    m1 += dxhat;
    m2 += dxhat * xhat;
  }
  if (!c.dx) return;
  m1 = block_sum(m1, shared) / double(c.Dg);
  m2 = block_sum(m2, shared) / double(c.Dg);
  for (long long i = threadIdx.x; i < c.Dg; i += blockDim.x) {
    const double xhat = (xg[i] - mean) * inv;
    c.dx[base + i] = float(inv * (du_of(c, base + i) * c.ln_scale[g * c.Dg + i] - m1 - xhat * m2));
  }
}

// dscale[g, i] = sum over tokens of du * xhat; dbias[g, i] = sum of du.
__global__ void codebook_grad_columns_kernel(CodebookGradCall c) {
  for (long long col = blockIdx.x * (long long)blockDim.x + threadIdx.x; col < c.G * c.Dg;
       col += (long long)gridDim.x * blockDim.x) {
    const long long g = col / c.Dg, i = col % c.Dg;
    double ds = 0, db = 0;
    for (long long t = 0; t < c.tokens; ++t) {
      const long long row = t * c.G + g, at = row * c.Dg + i;
      const double du = du_of(c, at);
      ds += du * ((c.x[at] - c.stats[2 * row]) * c.stats[2 * row + 1]);
      db += du;
    }
    if (c.dscale) c.dscale[col] = float(ds);
    if (c.dbias) c.dbias[col] = float(db);
  }
}

// ---- dcodes ----

constexpr unsigned long long kNoKey = ~0ull;

// Key of slot (token, g, j): (g * K + code) << 32 | (token * k + j); a blocked
// slot sorts last. Positions past the slots are padding.
__global__ void slot_keys_kernel(CodebookGradCall c, unsigned long long* keys, long long slots, long long padded) {
  for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < padded;
       p += (long long)gridDim.x * blockDim.x) {
    unsigned long long key = kNoKey;
    if (p < slots) {
      const long long token = p / (c.G * c.k), g = p / c.k % c.G, j = p % c.k;
      const int64_t code = c.ids[p];
      if (code >= 0 && code < c.K)
        key = (unsigned long long)(g * c.K + code) << 32 | (unsigned long long)(token * c.k + j);
    }
    keys[p] = key;
  }
}

// One compare-exchange step (size, stride) of a bitonic sort, ascending.
__global__ void bitonic_step_kernel(unsigned long long* keys, long long n, long long size, long long stride) {
  for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < n; p += (long long)gridDim.x * blockDim.x) {
    const long long partner = p ^ stride;
    if (partner <= p) continue;
    const bool ascending = (p & size) == 0;
    const unsigned long long a = keys[p], b = keys[partner];
    if ((a > b) == ascending) {
      keys[p] = b;
      keys[partner] = a;
    }
  }
}

// Each code's run [start, end) in the sorted keys (empty where never selected).
__global__ void code_runs_kernel(const unsigned long long* keys, long long n, unsigned* start, unsigned* end) {
  for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < n; p += (long long)gridDim.x * blockDim.x) {
    if (keys[p] == kNoKey) continue;
    const unsigned long long code = keys[p] >> 32;
    if (p == 0 || keys[p - 1] >> 32 != code) start[code] = unsigned(p);
    if (p + 1 == n || keys[p + 1] == kNoKey || keys[p + 1] >> 32 != code) end[code] = unsigned(p + 1);
  }
}

// Block per code (g * K + c): dcodes[c, i] = sum over its slots of
// T = g_t / k and R = 2 / (N k) (y_t - u_t), in token order.
__global__ void codebook_grad_codes_kernel(CodebookGradCall c, const unsigned long long* keys, const unsigned* start,
                                           const unsigned* end) {
  const long long code = blockIdx.x, g = code / c.K;
  const double r_scale = 2.0 / (c.N * double(c.k));
  for (long long i = threadIdx.x; i < c.Dg; i += blockDim.x) {
    double acc = 0;
    for (unsigned p = start[code]; p < end[code]; ++p) {
      const long long token = (long long)(keys[p] & 0xffffffffull) / c.k;
      const long long at = (token * c.G + g) * c.Dg + i;
      double v = 0;
      if (c.task_to_codes) v += double(c.dy[at]) / double(c.k);
      if (c.reconstruction_to_codes) v += r_scale * (double(c.y[at]) - double(c.u[at]));
      acc += v;
    }
    c.dcodes[code * c.Dg + i] = float(acc);
  }
}

class CodebookGradKernel : public Kernel {
 public:
  CodebookGradKernel(const Node& n, const Launch& l) : launch_(l), loss_(codebook_loss_of(n)) {
    eps_ = n.attr_float("epsilon", 1e-5f);
  }
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const CodebookGradDims d = codebook_grad_dims(ctx);  // checks the shapes agree
    auto out = [&](size_t i) {
      return ctx.outputs.size() > i && ctx.outputs[i] ? ctx.outputs[i]->data<float>() : nullptr;
    };
    CodebookGradCall c{};
    c.dy = ctx.in(0).data<float>();
    c.x = ctx.in(1).data<float>();
    c.codes = ctx.in(2).data<float>();
    c.ln_scale = ctx.in(3).data<float>();
    c.ln_bias = ctx.in(4).data<float>();
    c.ids = ctx.in(5).data<int64_t>();
    c.dx = out(0);
    c.dcodes = out(1);
    c.dscale = out(2);
    c.dbias = out(3);
    c.tokens = d.B * d.T;
    c.G = d.G;
    c.K = d.K;
    c.Dg = d.Dg;
    c.k = int(d.k);
    c.eps = eps_;
    c.N = double(c.tokens);
    c.beta2 = 2.0 * double(loss_.beta);
    c.task_to_codes = loss_.task_to_codes();
    c.reconstruction_to_codes = loss_.reconstruction_to_codes();
    c.commitment = loss_.commitment();
    const long long rows = c.tokens * c.G, slots = rows * c.k;
    CB_CHECK(rows <= INT_MAX && slots < (1ll << 32) && c.G * c.K < (1ll << 31),
             node.describe() << ": too many tokens, slots or codes for one launch");
    if (c.dcodes && c.G * c.K * c.Dg > 0)
      check_cuda(node, cudaMemsetAsync(c.dcodes, 0, size_t(c.G * c.K * c.Dg) * sizeof(float), launch_.stream),
                 "cudaMemsetAsync");
    if (rows == 0 || c.Dg == 0) {
      for (float* p : {c.dscale, c.dbias})
        if (p) check_cuda(node, cudaMemsetAsync(p, 0, size_t(c.G * c.Dg) * sizeof(float), launch_.stream), "memset");
      return;
    }
    const size_t values = size_t(rows * c.Dg);
    char* scratch =
        static_cast<char*>(rows_scratch_.reserve(node, values * 2 * sizeof(float) + size_t(rows) * 2 * sizeof(double)));
    c.stats = reinterpret_cast<double*>(scratch);
    c.u = reinterpret_cast<float*>(scratch + size_t(rows) * 2 * sizeof(double));
    c.y = c.u + values;
    c.bad = bad_.reset(node, launch_.stream);
    CB_LAUNCH(codebook_grad_rows_kernel, unsigned(rows), kThreads, 0, launch_.stream)(c);
    check_launch(node);
    if (c.dscale || c.dbias) {
      CB_LAUNCH(codebook_grad_columns_kernel, grid_for(c.G * c.Dg), kThreads, 0, launch_.stream)(c);
      check_launch(node);
    }
    if (c.dcodes) codes_gradient(node, c, slots);
    // An id outside [-1, K) is an error, as on the host (one synchronisation).
    CB_CHECK(!bad_.raised(node, launch_.stream), node.describe() << ": an id is outside [-1, " << c.K << ")");
  }

 private:
  void codes_gradient(const Node& node, const CodebookGradCall& c, long long slots) {
    long long padded = 1;
    while (padded < slots) padded <<= 1;
    const long long codes = c.G * c.K;
    char* scratch = static_cast<char*>(sort_scratch_.reserve(
        node, size_t(padded) * sizeof(unsigned long long) + size_t(codes) * 2 * sizeof(unsigned)));
    auto* keys = reinterpret_cast<unsigned long long*>(scratch);
    auto* start = reinterpret_cast<unsigned*>(keys + padded);
    unsigned* end = start + codes;
    check_cuda(node, cudaMemsetAsync(start, 0, size_t(codes) * 2 * sizeof(unsigned), launch_.stream),
               "cudaMemsetAsync");
    CB_LAUNCH(slot_keys_kernel, grid_for(padded), kThreads, 0, launch_.stream)(c, keys, slots, padded);
    for (long long size = 2; size <= padded; size <<= 1)
      for (long long stride = size >> 1; stride > 0; stride >>= 1)
        CB_LAUNCH(bitonic_step_kernel, grid_for(padded), kThreads, 0, launch_.stream)(keys, padded, size, stride);
    CB_LAUNCH(code_runs_kernel, grid_for(padded), kThreads, 0, launch_.stream)(keys, padded, start, end);
    CB_LAUNCH(codebook_grad_codes_kernel, unsigned(codes), kThreads, 0, launch_.stream)(c, keys, start, end);
    check_launch(node);
  }

  Launch launch_;
  CodebookLoss loss_;
  float eps_;
  DeviceArray<char> rows_scratch_, sort_scratch_;
  DeviceFlag bad_;
};

}  // namespace

bool codebook_grad_supports(const Node& n) {
  if (n.inputs.size() != 6 || n.outputs.empty() || n.outputs.size() > 4) return false;
  for (size_t i = 0; i < 5; ++i)
    if (!is_f32(n.inputs[i])) return false;
  if (!is_dtype(n.inputs[5], DType::i64)) return false;
  for (const Value* v : n.outputs)
    if (v && !is_f32(v)) return false;
  try {
    codebook_loss_of(n);
    return true;
  } catch (const Error&) {
    return false;
  }
}

std::unique_ptr<Kernel> make_codebook_grad(const Node& n, const Launch& l) {
  return std::make_unique<CodebookGradKernel>(n, l);
}

}  // namespace cb::cuda
