// codebook.Attention on CUDA (contract in ir/attention.h), written to be
// plainly correct rather than fast: one block per (batch, head, query row).
// The block keeps the row's S scores in shared memory, takes their max and
// sum as the reference Softmax does (a row of -inf gives NaN; nan_to_zero
// turns NaN probabilities into 0), then sums p_j V[j, :] with the threads
// split over output columns and groups of keys. A key whose probability is 0
// adds nothing, even where its V row is inf or NaN.
#include "backends/cuda/cuda_common.h"
#include "backends/reference/attention.h"

namespace cb::cuda {

namespace {

constexpr int kAttentionThreads = 128;

// Query row `row` = (b * H + h) * T + i of a call: its (b, h, i), the row
// of Q, the head's keys and values and the row of the mask (null without).
struct QueryRow {
  long long b, h, i;
  const float *q, *k_head, *v_head, *mask;
  const float *kp_head, *vp_head;  // the head's cached keys and values (null without)
};
__device__ inline QueryRow query_row(const AttentionCall& a, long long row) {
  QueryRow r;
  r.i = row % a.d.T;
  const long long bh = row / a.d.T;
  r.h = bh % a.d.H;
  r.b = bh / a.d.H;
  r.q = a.q + r.b * a.q_b + r.h * a.q_h + r.i * a.q_t;
  r.k_head = a.k + r.b * a.k_b + r.h * a.k_h;
  r.v_head = a.v + r.b * a.v_b + r.h * a.v_h;
  r.mask = a.mask ? a.mask + r.b * a.m_b + r.h * a.m_h + r.i * a.m_i : nullptr;
  r.kp_head = a.k_past ? a.k_past + r.b * a.kp_b + r.h * a.kp_h : nullptr;
  r.vp_head = a.v_past ? a.v_past + r.b * a.vp_b + r.h * a.vp_h : nullptr;
  return r;
}

// Element e of key j of the row's head: the P cached keys first
// (ir/attention.h), then the call's own.
__device__ inline float key_at(const AttentionCall& a, const QueryRow& r, long long j, long long e) {
  return j < a.d.P ? r.kp_head[e * a.d.P + j] : r.k_head[e * a.k_e + (j - a.d.P) * a.k_s];
}
// Value row j of the row's head (dv contiguous), cached ones first.
__device__ inline const float* value_at(const AttentionCall& a, const QueryRow& r, long long j) {
  return j < a.d.P ? r.vp_head + j * a.d.dv : r.v_head + (j - a.d.P) * a.v_s;
}

// p[j] = scale * q . k_j + m[j] for the row's keys j, as the unfused graph
// has them (f32 scale * dot, plus the mask), the block's threads over j;
// returns the largest this thread wrote.
__device__ inline float row_scores(const AttentionCall& a, const QueryRow& r, const float* q_s, float* p) {
  float mx = -INFINITY;
  for (long long j = threadIdx.x; j < a.d.S; j += blockDim.x) {
    float dot = 0;
    for (long long e = 0; e < a.d.dh; ++e) dot += q_s[e] * key_at(a, r, j, e);
    float s = a.scale * dot;
    if (r.mask) s += r.mask[j * a.m_j];
    p[j] = s;
    mx = fmaxf(mx, s);
  }
  return mx;
}

// `a` is the call the reference and CPU kernels read (backends/reference/
// attention.h: device pointers, the strides of the broadcast [B, H] dims and
// of the mask); only its fields are used here, not its host-side methods.
__global__ void attention_kernel(AttentionCall a) {
  CB_DYNAMIC_SHARED(float, shared);  // dh query values, then S scores
  __shared__ float reduce[32];
  __shared__ float partial[kAttentionThreads];
  const AttentionDims d = a.d;
  const long long row = blockIdx.x;  // (b * H + h) * T + i
  const QueryRow r = query_row(a, row);
  const float* q_row = r.q;
  float* q_s = shared;
  float* p = shared + d.dh;
  for (long long e = threadIdx.x; e < d.dh; e += blockDim.x) q_s[e] = q_row[e];
  __syncthreads();

  const float mx = block_max(row_scores(a, r, q_s, p), reduce);
  float sum = 0;
  for (long long j = threadIdx.x; j < d.S; j += blockDim.x) {
    const float e = expf(p[j] - mx);  // NaN for a row of -inf (mx = -inf) or a NaN score
    p[j] = e;
    sum += e;
  }
  sum = block_sum(sum, reduce);
  for (long long j = threadIdx.x; j < d.S; j += blockDim.x) {
    float pj = p[j] / sum;
    if (a.nan_to_zero && isnan(pj)) pj = 0;
    p[j] = pj;
  }
  __syncthreads();

  float* out_row = a.out + r.b * a.o_b + r.h * a.o_h + r.i * a.o_t;
  const long long groups = d.dv >= blockDim.x ? 1 : blockDim.x / d.dv;
  if (groups == 1) {
    for (long long e = threadIdx.x; e < d.dv; e += blockDim.x) {
      float acc = 0;
      for (long long j = 0; j < d.S; ++j)
        if (p[j] != 0) acc += p[j] * value_at(a, r, j)[e];
      out_row[e] = acc;
    }
    return;
  }
  // Thread (g, e) sums keys g, g + groups, ... of column e; then column sums.
  const long long e = threadIdx.x % d.dv, g = threadIdx.x / d.dv;
  float acc = 0;
  if (g < groups)
    for (long long j = g; j < d.S; j += groups)
      if (p[j] != 0) acc += p[j] * value_at(a, r, j)[e];
  partial[threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.x < d.dv) {
    float total = 0;
    for (long long k = 0; k < groups; ++k) total += partial[k * d.dv + threadIdx.x];
    out_row[threadIdx.x] = total;
  }
}

class AttentionKernel : public Kernel {
 public:
  AttentionKernel(const Node&, const Launch& l) : launch_(l) {}
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const AttentionCall a = attention_call(ctx);
    const long long rows = a.d.B * a.d.H * a.d.T;
    if (rows == 0 || a.d.dv == 0) return;
    const size_t shared = size_t(a.d.dh + a.d.S) * sizeof(float);
    // The statically allocated reduce and partial buffers share the block's memory.
    allow_shared_memory(node, attention_kernel, shared, kStaticShared, shared_limit_);
    CB_CHECK(rows <= 0x7fffffff, node.describe() << ": " << rows << " query rows are too many for one launch");
    CB_LAUNCH(attention_kernel, unsigned(rows), kAttentionThreads, shared, launch_.stream)(a);
    check_launch(node);
  }

 private:
  Launch launch_;
  static constexpr size_t kStaticShared = (32 + kAttentionThreads) * sizeof(float);
  // What a launch may use without opting in: 48 KiB, less the static buffers.
  size_t shared_limit_ = 48 * 1024 - kStaticShared;
};

// ---- codebook.grad.AttentionGrad (ir/ops/grad.h) ---------------------------
// Plainly correct as well, deterministic (no atomics), with no [T x S]
// buffer: kernel 1 takes a block per query row i, recomputes the row's
// probabilities p_j and dS_j = p_j (dP_j - D_i) (dP_j = dy_i . v_j, D_i =
// sum_j p_j dP_j, dS_j = 0 where p_j is 0) in shared memory, writes
// dQ[i, :] = scale sum_j dS_j K_j and the row's max, sum and D_i; kernel 2
// takes a block per key j, recomputes p_ij and dS_ij for every row i from
// those statistics, and writes dKt[:, j] = scale sum_i dS_ij Q_i and
// dV[j, :] = sum_i p_ij dy_i. dy and the gradients are read and written
// through the strides of their layouts (AttentionGradTensors: the layout
// attributes that training's fold-attention-layouts sets).

struct GradCall {
  AttentionCall a;
  AttentionGradTensors t;  // dy, dQ, dKt, dV: only their fields are used here
  float* stats;            // [B * H * T][3]: the row's max, sum of exp, D
};

// p = the probability of score s in a row of max `mx` and sum `sum` (0 for
// NaN under nan_to_zero).
__device__ inline float probability(const AttentionCall& a, float s, float mx, float sum) {
  float p = expf(s - mx) / sum;
  if (a.nan_to_zero && isnan(p)) p = 0;
  return p;
}

__global__ void attention_grad_rows_kernel(GradCall g) {
  CB_DYNAMIC_SHARED(float, shared);  // q (dh), dy (dv), p (S), dS (S)
  __shared__ float reduce[32];
  const AttentionCall& a = g.a;
  const AttentionDims d = a.d;
  const long long row = blockIdx.x;      // (b * H + h) * T + i
  const QueryRow r = query_row(a, row);  // no cached keys: AttentionGrad has none
  const float *q_row = r.q, *k_head = r.k_head, *v_head = r.v_head;
  const float* dy_row = g.t.dy + r.b * g.t.dy_b + r.h * g.t.dy_h + r.i * g.t.dy_t;
  float* q_s = shared;
  float* dy_s = q_s + d.dh;
  float* p = dy_s + d.dv;
  float* ds = p + d.S;
  for (long long e = threadIdx.x; e < d.dh; e += blockDim.x) q_s[e] = q_row[e];
  for (long long e = threadIdx.x; e < d.dv; e += blockDim.x) dy_s[e] = dy_row[e];
  __syncthreads();
  const float mx = block_max(row_scores(a, r, q_s, p), reduce);
  float sum = 0;
  for (long long j = threadIdx.x; j < d.S; j += blockDim.x) sum += expf(p[j] - mx);
  sum = block_sum(sum, reduce);
  float dot_p = 0;
  for (long long j = threadIdx.x; j < d.S; j += blockDim.x) {
    const float pj = probability(a, p[j], mx, sum);
    float dp = 0;
    if (pj != 0)
      for (long long e = 0; e < d.dv; ++e) dp += dy_s[e] * v_head[j * a.v_s + e];
    p[j] = pj;
    ds[j] = dp;
    if (pj != 0) dot_p += pj * dp;
  }
  dot_p = block_sum(dot_p, reduce);
  for (long long j = threadIdx.x; j < d.S; j += blockDim.x) ds[j] = p[j] != 0 ? p[j] * (ds[j] - dot_p) : 0.f;
  __syncthreads();
  for (long long e = threadIdx.x; e < d.dh; e += blockDim.x) {
    float acc = 0;
    for (long long j = 0; j < d.S; ++j)
      if (ds[j] != 0) acc += ds[j] * k_head[e * a.k_e + j * a.k_s];
    g.t.dq[r.b * g.t.dq_b + r.h * g.t.dq_h + r.i * g.t.dq_t + e] = a.scale * acc;
  }
  if (threadIdx.x == 0) {
    g.stats[row * 3] = mx;
    g.stats[row * 3 + 1] = sum;
    g.stats[row * 3 + 2] = dot_p;
  }
}

__global__ void attention_grad_keys_kernel(GradCall g) {
  CB_DYNAMIC_SHARED(float, shared);  // k_j (dh), v_j (dv), p (T), dS (T)
  const AttentionCall& a = g.a;
  const AttentionDims d = a.d;
  const long long key = blockIdx.x;  // (b * H + h) * S + j
  const long long j = key % d.S, bh = key / d.S, h = bh % d.H, b = bh / d.H;
  const float* q_head = a.q + b * a.q_b + h * a.q_h;
  const float* k_head = a.k + b * a.k_b + h * a.k_h;
  const float* v_row = a.v + b * a.v_b + h * a.v_h + j * a.v_s;
  float* k_s = shared;
  float* v_s = k_s + d.dh;
  float* p = v_s + d.dv;
  float* ds = p + d.T;
  for (long long e = threadIdx.x; e < d.dh; e += blockDim.x) k_s[e] = k_head[e * a.k_e + j * a.k_s];
  for (long long e = threadIdx.x; e < d.dv; e += blockDim.x) v_s[e] = v_row[e];
  __syncthreads();
  for (long long i = threadIdx.x; i < d.T; i += blockDim.x) {
    const float* q_row = q_head + i * a.q_t;
    const float* st = g.stats + (bh * d.T + i) * 3;
    float dot = 0;
    for (long long e = 0; e < d.dh; ++e) dot += q_row[e] * k_s[e];
    float s = a.scale * dot;
    if (a.mask) s += a.mask[b * a.m_b + h * a.m_h + i * a.m_i + j * a.m_j];
    const float pj = probability(a, s, st[0], st[1]);
    float dS = 0;
    if (pj != 0) {
      const float* dy_row = g.t.dy + b * g.t.dy_b + h * g.t.dy_h + i * g.t.dy_t;
      float dp = 0;
      for (long long e = 0; e < d.dv; ++e) dp += dy_row[e] * v_s[e];
      dS = pj * (dp - st[2]);
    }
    p[i] = pj;
    ds[i] = dS;
  }
  __syncthreads();
  for (long long e = threadIdx.x; e < d.dh; e += blockDim.x) {
    float acc = 0;
    for (long long i = 0; i < d.T; ++i)
      if (ds[i] != 0) acc += ds[i] * q_head[i * a.q_t + e];
    g.t.dk[b * g.t.dk_b + h * g.t.dk_h + e * g.t.dk_e + j * g.t.dk_s] = a.scale * acc;
  }
  for (long long e = threadIdx.x; e < d.dv; e += blockDim.x) {
    float acc = 0;
    for (long long i = 0; i < d.T; ++i)
      if (p[i] != 0) acc += p[i] * g.t.dy[b * g.t.dy_b + h * g.t.dy_h + i * g.t.dy_t + e];
    g.t.dv[b * g.t.dv_b + h * g.t.dv_h + j * g.t.dv_s + e] = acc;
  }
}

class AttentionGradKernel : public Kernel {
 public:
  AttentionGradKernel(const Node&, const Launch& l) : launch_(l) {}
  ~AttentionGradKernel() override {
    if (stats_) cudaFree(stats_);
  }
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    GradCall g{attention_call(ctx, 1), {}, nullptr};
    g.t = attention_grad_tensors(ctx, g.a);  // checks each tensor's dims in its layout
    const AttentionDims& d = g.a.d;
    const long long rows = d.B * d.H * d.T, keys = d.B * d.H * d.S;
    if (rows == 0 || keys == 0) return;
    CB_CHECK(rows <= 0x7fffffff && keys <= 0x7fffffff,
             node.describe() << ": " << rows << " query rows or " << keys << " keys are too many for one launch");
    const size_t stats_bytes = size_t(rows) * 3 * sizeof(float);
    if (stats_bytes > stats_bytes_) {
      if (stats_) cudaFree(stats_);
      stats_ = nullptr;
      check_cuda(node, cudaMalloc(&stats_, stats_bytes), "cudaMalloc");
      stats_bytes_ = stats_bytes;
    }
    g.stats = stats_;
    const size_t rows_shared = size_t(d.dh + d.dv + 2 * d.S) * sizeof(float);
    const size_t keys_shared = size_t(d.dh + d.dv + 2 * d.T) * sizeof(float);
    allow_shared_memory(node, attention_grad_rows_kernel, rows_shared, 32 * sizeof(float), rows_limit_);
    allow_shared_memory(node, attention_grad_keys_kernel, keys_shared, 32 * sizeof(float), keys_limit_);
    CB_LAUNCH(attention_grad_rows_kernel, unsigned(rows), kAttentionThreads, rows_shared, launch_.stream)(g);
    check_launch(node);
    CB_LAUNCH(attention_grad_keys_kernel, unsigned(keys), kAttentionThreads, keys_shared, launch_.stream)(g);
    check_launch(node);
  }

 private:
  Launch launch_;
  float* stats_ = nullptr;
  size_t stats_bytes_ = 0;
  size_t rows_limit_ = 48 * 1024 - 32 * sizeof(float), keys_limit_ = 48 * 1024;
};

bool rank4_f32(const Value* v) { return is_f32(v) && rank_is(v, 4); }

}  // namespace

bool attention_grad_supports(const Node& n) {
  if (n.inputs.size() < 4 || n.outputs.size() != 3) return false;
  for (size_t i = 0; i < 4; ++i)
    if (!rank4_f32(n.inputs[i])) return false;
  for (Value* o : n.outputs)
    if (!o || !rank4_f32(o)) return false;
  return n.inputs.size() < 5 || !n.inputs[4] || (is_f32(n.inputs[4]) && rank_at_most(n.inputs[4], 4));
}

std::unique_ptr<Kernel> make_attention_grad(const Node& n, const Launch& l) {
  return std::make_unique<AttentionGradKernel>(n, l);
}

bool attention_supports(const Node& n) {
  if (n.inputs.size() < 3 || n.outputs.size() != 1 || !rank4_f32(n.inputs[0]) || !rank4_f32(n.inputs[1]) ||
      !rank4_f32(n.inputs[2]) || !rank4_f32(n.outputs[0]))
    return false;
  if (n.inputs.size() > kAttentionPastValuesInput + 1) return false;
  if (n.inputs.size() > kAttentionPastKeysInput)  // cached keys and values (generation), both f32 rank 4
    for (size_t i : {kAttentionPastKeysInput, kAttentionPastValuesInput})
      if (i >= n.inputs.size() || !rank4_f32(n.inputs[i])) return false;
  return n.inputs.size() < 4 || !n.inputs[3] || (is_f32(n.inputs[3]) && rank_at_most(n.inputs[3], 4));
}

std::unique_ptr<Kernel> make_attention(const Node& n, const Launch& l) {
  return std::make_unique<AttentionKernel>(n, l);
}

}  // namespace cb::cuda
