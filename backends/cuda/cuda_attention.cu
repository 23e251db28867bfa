// codebook.Attention on CUDA (contract in ir/attention.h), written to be
// plainly correct rather than fast: one block per (batch, head, query row).
// The block keeps the row's S scores in shared memory, takes their max and
// sum as the reference Softmax does (a row of -inf gives NaN; nan_to_zero
// turns NaN probabilities into 0), then sums p_j V[j, :] with the threads
// split over output columns and groups of keys. A key whose probability is 0
// adds nothing, even where its V row is inf or NaN.
#include "backends/cuda/cuda_common.h"
#include "ir/attention.h"

namespace cb::cuda {

namespace {

constexpr int kAttentionThreads = 128;

// Element strides of the [B, H] dims and the [T, S] mask dims; 0 where broadcast.
struct AttentionArgs {
  long long B, H, T, S, dh, dv;
  long long q_b, q_h, kt_b, kt_h, v_b, v_h;
  long long m_b, m_h, m_i, m_j;
  float scale;
  bool nan_to_zero;
};

__global__ void attention_kernel(const float* q, const float* kt, const float* v, const float* mask, float* out,
                                 AttentionArgs a) {
  extern __shared__ float shared[];  // dh query values, then S scores
  __shared__ float reduce[32];
  __shared__ float partial[kAttentionThreads];
  const long long row = blockIdx.x;  // (b * H + h) * T + i
  const long long i = row % a.T, bh = row / a.T, h = bh % a.H, b = bh / a.H;
  const float* q_row = q + b * a.q_b + h * a.q_h + i * a.dh;
  const float* k_head = kt + b * a.kt_b + h * a.kt_h;
  const float* v_head = v + b * a.v_b + h * a.v_h;
  const float* m_row = mask ? mask + b * a.m_b + h * a.m_h + i * a.m_i : nullptr;
  float* q_s = shared;
  float* p = shared + a.dh;
  for (long long e = threadIdx.x; e < a.dh; e += blockDim.x) q_s[e] = q_row[e];
  __syncthreads();

  // Scores as the unfused graph has them: f32 scale * dot, plus the mask.
  float mx = -INFINITY;
  for (long long j = threadIdx.x; j < a.S; j += blockDim.x) {
    float dot = 0;
    for (long long e = 0; e < a.dh; ++e) dot += q_s[e] * k_head[e * a.S + j];
    float s = a.scale * dot;
    if (m_row) s += m_row[j * a.m_j];
    p[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_max(mx, reduce);
  float sum = 0;
  for (long long j = threadIdx.x; j < a.S; j += blockDim.x) {
    const float e = expf(p[j] - mx);  // NaN for a row of -inf (mx = -inf) or a NaN score
    p[j] = e;
    sum += e;
  }
  sum = block_sum(sum, reduce);
  for (long long j = threadIdx.x; j < a.S; j += blockDim.x) {
    float pj = p[j] / sum;
    if (a.nan_to_zero && isnan(pj)) pj = 0;
    p[j] = pj;
  }
  __syncthreads();

  float* out_row = out + row * a.dv;
  const long long groups = a.dv >= blockDim.x ? 1 : blockDim.x / a.dv;
  if (groups == 1) {
    for (long long e = threadIdx.x; e < a.dv; e += blockDim.x) {
      float acc = 0;
      for (long long j = 0; j < a.S; ++j)
        if (p[j] != 0) acc += p[j] * v_head[j * a.dv + e];
      out_row[e] = acc;
    }
    return;
  }
  // Thread (g, e) sums keys g, g + groups, ... of column e; then column sums.
  const long long e = threadIdx.x % a.dv, g = threadIdx.x / a.dv;
  float acc = 0;
  if (g < groups)
    for (long long j = g; j < a.S; j += groups)
      if (p[j] != 0) acc += p[j] * v_head[j * a.dv + e];
  partial[threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.x < a.dv) {
    float total = 0;
    for (long long k = 0; k < groups; ++k) total += partial[k * a.dv + threadIdx.x];
    out_row[threadIdx.x] = total;
  }
}

class AttentionKernel : public Kernel {
 public:
  AttentionKernel(const Node& n, const Launch& l)
      : launch_(l), scale_(n.attr_float("scale", 1.f)), nan_to_zero_(n.attr_int("nan_to_zero", 0) != 0) {}
  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &q = ctx.in(0), &kt = ctx.in(1), &v = ctx.in(2);
    const Tensor* mask = ctx.inputs.size() > 3 && ctx.inputs[3] && ctx.inputs[3]->defined() ? ctx.inputs[3] : nullptr;
    Tensor& out = ctx.out(0);
    AttentionArgs a{};
    a.B = out.dim(0);
    a.H = out.dim(1);
    a.T = q.dim(2);
    a.dh = q.dim(3);
    a.S = kt.dim(3);
    a.dv = v.dim(3);
    CB_CHECK(kt.dim(2) == a.dh && v.dim(2) == a.S, node.describe()
                                                       << ": Q " << dims_str(q.dims()) << ", Kt " << dims_str(kt.dims())
                                                       << " and V " << dims_str(v.dims()) << " do not fit together");
    auto lead = [](const Tensor& t, long long inner, long long& sb, long long& sh) {
      sh = t.dim(1) == 1 ? 0 : inner;
      sb = t.dim(0) == 1 ? 0 : t.dim(1) * inner;
    };
    lead(q, a.T * a.dh, a.q_b, a.q_h);
    lead(kt, a.dh * a.S, a.kt_b, a.kt_h);
    lead(v, a.S * a.dv, a.v_b, a.v_h);
    if (mask) {
      CB_CHECK(mask->rank() <= 4, node.describe() << ": the mask has rank " << mask->rank() << ", over 4");
      long long dims[4] = {1, 1, 1, 1}, strides[4];
      const size_t r = mask->rank();
      for (size_t d = 0; d < r; ++d) dims[4 - r + d] = mask->dim(d);
      long long stride = 1;
      for (int d = 3; d >= 0; --d) {
        strides[d] = dims[d] == 1 ? 0 : stride;
        stride *= dims[d];
      }
      a.m_b = strides[0];
      a.m_h = strides[1];
      a.m_i = strides[2];
      a.m_j = strides[3];
    }
    a.scale = scale_;
    a.nan_to_zero = nan_to_zero_;
    const long long rows = a.B * a.H * a.T;
    if (rows == 0 || a.dv == 0) return;
    const size_t shared = size_t(a.dh + a.S) * sizeof(float);
    if (shared > shared_limit_) {
      int device = 0, most = 0;
      cudaGetDevice(&device);
      cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
      // The statically allocated reduce and partial buffers share the block's memory.
      const size_t room = size_t(most) - (32 + kAttentionThreads) * sizeof(float);
      CB_CHECK(shared <= room, node.describe() << ": " << a.S << " keys need " << shared
                                               << " bytes of shared memory, over the " << room << " a block has");
      check_cuda(node, cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)),
                 "cudaFuncSetAttribute");
      shared_limit_ = shared;
    }
    CB_CHECK(rows <= 0x7fffffff, node.describe() << ": " << rows << " query rows are too many for one launch");
    attention_kernel<<<unsigned(rows), kAttentionThreads, shared, launch_.stream>>>(
        q.data<float>(), kt.data<float>(), v.data<float>(), mask ? mask->data<float>() : nullptr, out.data<float>(), a);
    check_launch(node);
  }

 private:
  Launch launch_;
  float scale_;
  bool nan_to_zero_;
  // What a launch may use without opting in: 48 KiB, less the static buffers.
  size_t shared_limit_ = 48 * 1024 - (32 + kAttentionThreads) * sizeof(float);
};

bool rank4_f32(const Value* v) { return is_f32(v) && rank_is(v, 4); }

}  // namespace

bool attention_supports(const Node& n) {
  if (n.inputs.size() < 3 || n.outputs.size() != 1 || !rank4_f32(n.inputs[0]) || !rank4_f32(n.inputs[1]) ||
      !rank4_f32(n.inputs[2]) || !rank4_f32(n.outputs[0]))
    return false;
  return n.inputs.size() < 4 || !n.inputs[3] || (is_f32(n.inputs[3]) && rank_at_most(n.inputs[3], 4));
}

std::unique_ptr<Kernel> make_attention(const Node& n, const Launch& l) {
  return std::make_unique<AttentionKernel>(n, l);
}

}  // namespace cb::cuda
