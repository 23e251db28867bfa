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

// `a` is the call the reference and CPU kernels read (backends/reference/
// attention.h: device pointers, the strides of the broadcast [B, H] dims and
// of the mask); only its fields are used here, not its host-side methods.
__global__ void attention_kernel(AttentionCall a) {
  extern __shared__ float shared[];  // dh query values, then S scores
  __shared__ float reduce[32];
  __shared__ float partial[kAttentionThreads];
  const AttentionDims d = a.d;
  const long long row = blockIdx.x;  // (b * H + h) * T + i
  const long long i = row % d.T, bh = row / d.T, h = bh % d.H, b = bh / d.H;
  const float* q_row = a.q + b * a.q_b + h * a.q_h + i * a.q_t;
  const float* k_head = a.k + b * a.k_b + h * a.k_h;
  const float* v_head = a.v + b * a.v_b + h * a.v_h;
  const float* m_row = a.mask ? a.mask + b * a.m_b + h * a.m_h + i * a.m_i : nullptr;
  float* q_s = shared;
  float* p = shared + d.dh;
  for (long long e = threadIdx.x; e < d.dh; e += blockDim.x) q_s[e] = q_row[e];
  __syncthreads();

  // Scores as the unfused graph has them: f32 scale * dot, plus the mask.
  float mx = -INFINITY;
  for (long long j = threadIdx.x; j < d.S; j += blockDim.x) {
    float dot = 0;
    for (long long e = 0; e < d.dh; ++e) dot += q_s[e] * k_head[e * a.k_e + j * a.k_s];
    float s = a.scale * dot;
    if (m_row) s += m_row[j * a.m_j];
    p[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = block_max(mx, reduce);
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

  float* out_row = a.out + b * a.o_b + h * a.o_h + i * a.o_t;
  const long long groups = d.dv >= blockDim.x ? 1 : blockDim.x / d.dv;
  if (groups == 1) {
    for (long long e = threadIdx.x; e < d.dv; e += blockDim.x) {
      float acc = 0;
      for (long long j = 0; j < d.S; ++j)
        if (p[j] != 0) acc += p[j] * v_head[j * a.v_s + e];
      out_row[e] = acc;
    }
    return;
  }
  // Thread (g, e) sums keys g, g + groups, ... of column e; then column sums.
  const long long e = threadIdx.x % d.dv, g = threadIdx.x / d.dv;
  float acc = 0;
  if (g < groups)
    for (long long j = g; j < d.S; j += groups)
      if (p[j] != 0) acc += p[j] * v_head[j * a.v_s + e];
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
    if (shared > shared_limit_) {
      int device = 0, most = 0;
      cudaGetDevice(&device);
      cudaDeviceGetAttribute(&most, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
      // The statically allocated reduce and partial buffers share the block's memory.
      const size_t room = size_t(most) - (32 + kAttentionThreads) * sizeof(float);
      CB_CHECK(shared <= room, node.describe() << ": " << a.d.S << " keys need " << shared
                                               << " bytes of shared memory, over the " << room << " a block has");
      check_cuda(node, cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)),
                 "cudaFuncSetAttribute");
      shared_limit_ = shared;
    }
    CB_CHECK(rows <= 0x7fffffff, node.describe() << ": " << rows << " query rows are too many for one launch");
    attention_kernel<<<unsigned(rows), kAttentionThreads, shared, launch_.stream>>>(a);
    check_launch(node);
  }

 private:
  Launch launch_;
  // What a launch may use without opting in: 48 KiB, less the static buffers.
  size_t shared_limit_ = 48 * 1024 - (32 + kAttentionThreads) * sizeof(float);
};

bool rank4_f32(const Value* v) { return is_f32(v) && rank_is(v, 4); }

}  // namespace

bool attention_supports(const Node& n) {
  if (n.inputs.size() < 3 || n.outputs.size() != 1 || !rank4_f32(n.inputs[0]) || !rank4_f32(n.inputs[1]) ||
      !rank4_f32(n.inputs[2]) || !rank4_f32(n.outputs[0]))
    return false;
  if (n.inputs.size() > kAttentionPastKeysInput) return false;  // cached keys: the CPU kernel's (not written here)
  return n.inputs.size() < 4 || !n.inputs[3] || (is_f32(n.inputs[3]) && rank_at_most(n.inputs[3], 4));
}

std::unique_ptr<Kernel> make_attention(const Node& n, const Launch& l) {
  return std::make_unique<AttentionKernel>(n, l);
}

}  // namespace cb::cuda
