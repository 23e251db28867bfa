// codebook.Codebook on CUDA (contract in ir/codebook.h), written to be exact
// and plain rather than fast: one block per (token, group member), all
// members in one launch, interventions applied in the kernel, and no
// [tokens x codes] matrix anywhere.
//
// A block takes the member's LayerNorm in double (as the reference does),
// then its threads score the codes in float, each keeping its own running
// top-L list (L = the ranks needed + kSlack), and the block merges the lists
// into L candidates. Their exact scores, in double, re-rank them. The result
// is the reference's whenever no code outside the candidates can beat the
// last rank needed: its float score is at most the L-th candidate's, and a
// float score is within a bound of the exact one (see float_error_bound).
// Where that does not hold (near-copies of a code crowd the window), the
// block scans the codes again in double, keeping exactly the ranks needed.
#include <climits>

#include "backends/cuda/cuda_common.h"
#include "ir/codebook.h"

namespace cb::cuda {

namespace {

constexpr int kCodebookThreads = 128;
constexpr int kMaxCandidates = 64;  // the longest running list a thread keeps
constexpr int kSlack = 8;           // candidates beyond the ranks needed

// One call, as the kernel reads it. Records are flattened int64 tuples on
// the device: ablate (g, p, code), disable_topk (g, p, m), force (g, p, slot, code).
struct CodebookCall {
  const float *x, *codes, *ln_scale, *ln_bias;
  const float* inv_norms;  // [G, K]: 1/|C_c| (0 for a zero code); inner product only
  float* y;
  int64_t* ids;   // [B, T, G, k] or null
  float* scores;  // [B, T, G, k] or null
  long long T, G, K, Dg;
  int k;
  float epsilon;
  bool euclidean, keep_k_codes;
  const int64_t *ablate, *disable, *force;
  int ablates, disables, forces;
};

// ir/codebook.h's group_matches and position_matches, on the device (kAll is INT64_MIN).
__device__ inline bool matches(int64_t record, long long value) { return record == INT64_MIN || record == value; }
__device__ inline bool position_matches_at(int64_t p, long long t, long long T) {
  return p == INT64_MIN || p == t || (p < 0 && p + T == t);
}

// The ranking order: a higher score first, ties to the lower code id.
template <typename S>
__device__ inline bool better(S s, int id, S than_s, int than_id) {
  return s > than_s || (s == than_s && id < than_id);
}

// The score of code `c` of member g: float (the scan) or double (exact, as
// the reference computes it). NaN ranks as -inf.
__device__ inline float score_f32(const CodebookCall& a, const float* u, const float* code, long long g, long long c) {
  float acc = 0;
  if (!a.euclidean) {
    for (long long i = 0; i < a.Dg; ++i) acc += u[i] * code[i];
    acc *= a.inv_norms[g * a.K + c];
  } else {
    for (long long i = 0; i < a.Dg; ++i) acc += (u[i] - code[i]) * (u[i] - code[i]);
    acc = -sqrtf(acc);
  }
  return isnan(acc) ? -INFINITY : acc;
}

__device__ inline double score_f64(const CodebookCall& a, const double* u, const float* code) {
  double s;
  if (!a.euclidean) {
    double dot = 0, norm2 = 0;
    for (long long i = 0; i < a.Dg; ++i) {
      dot += u[i] * code[i];
      norm2 += double(code[i]) * code[i];
    }
    s = norm2 == 0 ? 0.0 : dot / sqrt(norm2);
  } else {
    double dist2 = 0;
    for (long long i = 0; i < a.Dg; ++i) dist2 += (u[i] - code[i]) * (u[i] - code[i]);
    s = -sqrt(dist2);
  }
  return isnan(s) ? -INFINITY : s;
}

// A bound on |float score - exact score| for a member whose u has norm
// `u_norm`, at a float score `s`: each of the Dg products and sums rounds
// once (relative 2^-24), u itself was rounded to float, and the inner
// product's terms sum to at most |u| |C_c| (Cauchy-Schwarz) before the
// division by |C_c|; the Euclidean distance is at most |s| + |u| + |C_c|,
// and |C_c| <= |s| + |u|. Doubled, with room, for the norms' rounding.
__device__ inline double float_error_bound(long long Dg, double u_norm, double s) {
  return 2.2 * double(Dg + 8) * 5.96e-8 * (u_norm + fabs(s));
}

__device__ inline bool is_ablated(const unsigned* bits, long long c) { return bits[c / 32] >> (c % 32) & 1u; }

// The block's best (score, id) of each thread's offer; every thread gets it.
struct Ranked {
  double s;
  int id;
};
__device__ inline Ranked block_best(Ranked r, double* s_shared, int* id_shared) {
  for (int o = 16; o > 0; o >>= 1) {
    const double s = __shfl_xor_sync(0xffffffffu, r.s, o);
    const int id = __shfl_xor_sync(0xffffffffu, r.id, o);
    if (better(s, id, r.s, r.id)) r = {s, id};
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    s_shared[warp] = r.s;
    id_shared[warp] = r.id;
  }
  __syncthreads();
  if (warp == 0) {
    r = lane < int(blockDim.x / 32) ? Ranked{s_shared[lane], id_shared[lane]} : Ranked{-INFINITY, INT_MAX};
    for (int o = 16; o > 0; o >>= 1) {
      const double s = __shfl_xor_sync(0xffffffffu, r.s, o);
      const int id = __shfl_xor_sync(0xffffffffu, r.id, o);
      if (better(s, id, r.s, r.id)) r = {s, id};
    }
    if (lane == 0) {
      s_shared[0] = r.s;
      id_shared[0] = r.id;
    }
  }
  __syncthreads();
  r = {s_shared[0], id_shared[0]};
  __syncthreads();
  return r;
}

// The block's best `L` codes of member g in score type S: each thread scans
// codes threadIdx.x, + blockDim.x, ... into its own sorted list, then L
// rounds take the best list head. Writes the candidates, best first, to
// cand_s / cand_id and returns how many there are (min(L, K)).
template <typename S>
__device__ int best_codes(const CodebookCall& a, long long g, const float* u_f, const double* u_d,
                          const unsigned* ablated, int L, double* cand_s, int* cand_id, double* s_shared,
                          int* id_shared) {
  S list_s[kMaxCandidates];
  int list_id[kMaxCandidates];
  for (int j = 0; j < L; ++j) {
    list_s[j] = -INFINITY;
    list_id[j] = INT_MAX;  // empty: below every code, -inf ones included
  }
  const float* member = a.codes + g * a.K * a.Dg;
  for (long long c = threadIdx.x; c < a.K; c += blockDim.x) {
    S s;
    if constexpr (sizeof(S) == sizeof(float))
      s = score_f32(a, u_f, member + c * a.Dg, g, c);
    else
      s = score_f64(a, u_d, member + c * a.Dg);
    if (ablated && a.keep_k_codes && is_ablated(ablated, c)) s = -INFINITY;  // skip mode: ranked last
    if (!better(s, int(c), list_s[L - 1], list_id[L - 1])) continue;
    int j = L - 1;
    for (; j > 0 && better(s, int(c), list_s[j - 1], list_id[j - 1]); --j) {
      list_s[j] = list_s[j - 1];
      list_id[j] = list_id[j - 1];
    }
    list_s[j] = s;
    list_id[j] = int(c);
  }
  int head = 0, found = 0;
  for (int r = 0; r < L; ++r) {
    const Ranked offer = head < L ? Ranked{double(list_s[head]), list_id[head]} : Ranked{-INFINITY, INT_MAX};
    const Ranked best = block_best(offer, s_shared, id_shared);
    if (best.id == INT_MAX) break;  // every list is spent
    if (offer.id == best.id) ++head;
    if (threadIdx.x == 0) {
      cand_s[r] = best.s;
      cand_id[r] = best.id;
    }
    ++found;
  }
  __syncthreads();
  return found;
}

// Dynamic shared memory: u in double and float, the candidates, the ablated bitmap.
struct SharedLayout {
  size_t u_d, cand_s, u_f, cand_id, bits, bytes;
  __host__ __device__ SharedLayout(long long Dg, long long K) {
    u_d = 0;
    cand_s = u_d + size_t(Dg) * 8;
    u_f = cand_s + kMaxCandidates * 8;
    cand_id = u_f + size_t(Dg) * 4;
    bits = cand_id + kMaxCandidates * 4;
    bytes = bits + size_t((K + 31) / 32) * 4;
  }
};

__global__ void codebook_kernel(CodebookCall a) {
  CB_DYNAMIC_SHARED(double, shared);
  __shared__ double s_shared[32];
  __shared__ int id_shared[32];
  __shared__ double ln_mean, ln_inv, u_norm;
  __shared__ int m_shared, exact_shared;
  __shared__ int64_t ids_shared[kMaxCandidates];
  const SharedLayout layout(a.Dg, a.K);
  char* base = reinterpret_cast<char*>(shared);
  double* u_d = reinterpret_cast<double*>(base + layout.u_d);
  double* cand_s = reinterpret_cast<double*>(base + layout.cand_s);
  float* u_f = reinterpret_cast<float*>(base + layout.u_f);
  int* cand_id = reinterpret_cast<int*>(base + layout.cand_id);
  unsigned* bits = reinterpret_cast<unsigned*>(base + layout.bits);

  const long long token = blockIdx.x / a.G, g = blockIdx.x % a.G, t = token % a.T;
  const float* xg = a.x + (token * a.G + g) * a.Dg;

  // LayerNorm, in double and in the reference's order (one thread), and
  // what applies at (g, t): the largest disable_topk m.
  if (threadIdx.x == 0) {
    double mean = 0;
    for (long long i = 0; i < a.Dg; ++i) mean += xg[i];
    mean /= double(a.Dg);
    double var = 0;
    for (long long i = 0; i < a.Dg; ++i) var += (xg[i] - mean) * (xg[i] - mean);
    var /= double(a.Dg);
    ln_mean = mean;
    ln_inv = 1.0 / sqrt(var + double(a.epsilon));
    int m = 0;
    for (int r = 0; r < a.disables; ++r) {
      const int64_t* rec = a.disable + 3 * r;
      if (matches(rec[0], g) && position_matches_at(rec[1], t, a.T) && rec[2] > m) m = int(rec[2]);
    }
    m_shared = m;
  }
  const bool any_ablated = a.ablates > 0;
  if (any_ablated)
    for (long long w = threadIdx.x; w < (a.K + 31) / 32; w += blockDim.x) bits[w] = 0;
  __syncthreads();
  for (long long i = threadIdx.x; i < a.Dg; i += blockDim.x) {
    const double u = (xg[i] - ln_mean) * ln_inv * a.ln_scale[g * a.Dg + i] + a.ln_bias[g * a.Dg + i];
    u_d[i] = u;
    u_f[i] = float(u);
  }
  if (any_ablated)
    for (int r = threadIdx.x; r < a.ablates; r += blockDim.x) {
      const int64_t* rec = a.ablate + 3 * r;
      if (matches(rec[0], g) && position_matches_at(rec[1], t, a.T)) atomicOr(&bits[rec[2] / 32], 1u << (rec[2] % 32));
    }
  __syncthreads();
  if (threadIdx.x == 0) {
    double n2 = 0;
    for (long long i = 0; i < a.Dg; ++i) n2 += u_d[i] * u_d[i];
    u_norm = sqrt(n2);
  }
  const unsigned* ablated = any_ablated ? bits : nullptr;
  const int m = m_shared;
  const int need = a.keep_k_codes ? a.k + m : a.k;  // the ranks the selection reads
  const int L = min(need + kSlack, kMaxCandidates);

  // The float scan, then the candidates' exact scores, best first.
  int found = best_codes<float>(a, g, u_f, u_d, ablated, L, cand_s, cand_id, s_shared, id_shared);
  const double last_float = found > 0 ? cand_s[found - 1] : -INFINITY;
  const float* member = a.codes + g * a.K * a.Dg;
  for (int j = threadIdx.x; j < found; j += blockDim.x) {
    const int c = cand_id[j];
    cand_s[j] = ablated && a.keep_k_codes && is_ablated(ablated, c) ? -INFINITY : score_f64(a, u_d, member + c * a.Dg);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int j = 1; j < found; ++j)  // insertion sort: the float order is nearly right
      for (int i = j; i > 0 && better(cand_s[i], cand_id[i], cand_s[i - 1], cand_id[i - 1]); --i) {
        const double s = cand_s[i];
        const int id = cand_id[i];
        cand_s[i] = cand_s[i - 1];
        cand_id[i] = cand_id[i - 1];
        cand_s[i - 1] = s;
        cand_id[i - 1] = id;
      }
    // Exact when every code was a candidate, or when no code outside could
    // reach the last rank needed.
    const double last_needed = cand_s[min(need, found) - 1];
    exact_shared = found == a.K || last_float == -INFINITY ||
                   last_float + float_error_bound(a.Dg, u_norm, last_float) < last_needed;
  }
  __syncthreads();
  if (!exact_shared)  // a crowded window: the ranks needed, scanned in double
    found = best_codes<double>(a, g, u_f, u_d, ablated, need, cand_s, cand_id, s_shared, id_shared);

  // Selection (Mode A: ranks m .. m+k-1; Mode B: top k, ablated codes and
  // ranks below m blocked), then the forced codes, in record order.
  if (threadIdx.x == 0) {
    for (int j = 0; j < a.k; ++j) {
      if (a.keep_k_codes) {
        ids_shared[j] = m + j < found ? cand_id[m + j] : -1;
      } else {
        const int c = j < found ? cand_id[j] : -1;
        ids_shared[j] = c < 0 || j < m || (ablated && is_ablated(ablated, c)) ? -1 : c;
      }
    }
    for (int r = 0; r < a.forces; ++r) {
      const int64_t* rec = a.force + 4 * r;
      if (matches(rec[0], g) && position_matches_at(rec[1], t, a.T))
        ids_shared[rec[2] < 0 ? rec[2] + a.k : rec[2]] = rec[3];
    }
  }
  __syncthreads();

  const long long slot0 = (token * a.G + g) * a.k;
  for (int j = threadIdx.x; j < a.k; j += blockDim.x) {
    const int64_t c = ids_shared[j];
    if (a.ids) a.ids[slot0 + j] = c;
    if (a.scores) a.scores[slot0 + j] = c < 0 ? -INFINITY : float(score_f64(a, u_d, member + c * a.Dg));
  }
  float* yg = a.y + (token * a.G + g) * a.Dg;
  for (long long i = threadIdx.x; i < a.Dg; i += blockDim.x) {
    double sum = 0;
    for (int j = 0; j < a.k; ++j)
      if (ids_shared[j] >= 0) sum += member[ids_shared[j] * a.Dg + i];
    yg[i] = float(sum / double(a.k));
  }
}

// inv_norms[c] = 1/|C_c| over all G * K codes (0 for a zero code).
__global__ void code_inverse_norms_kernel(const float* codes, float* inv_norms, long long codes_count, long long Dg) {
  for (long long c = blockIdx.x * (long long)blockDim.x + threadIdx.x; c < codes_count;
       c += (long long)gridDim.x * blockDim.x) {
    double n2 = 0;
    for (long long i = 0; i < Dg; ++i) n2 += double(codes[c * Dg + i]) * codes[c * Dg + i];
    inv_norms[c] = n2 == 0 ? 0.f : float(1.0 / sqrt(n2));
  }
}

class CodebookKernel : public Kernel {
 public:
  CodebookKernel(const Node& n, const Launch& l) : launch_(l), attrs_(CodebookAttrs::from_node(n)) {
    for (const CodebookAblation& r : attrs_.ablate)
      flat_ablate_.insert(flat_ablate_.end(), {r.group, r.position, r.code});
    for (const CodebookTopkBlock& r : attrs_.disable_topk)
      flat_disable_.insert(flat_disable_.end(), {r.group, r.position, r.m});
    for (const CodebookForce& r : attrs_.force)
      flat_force_.insert(flat_force_.end(), {r.group, r.position, r.slot, r.code});
  }

  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor &x = ctx.in(0), &codes = ctx.in(1), &ln_scale = ctx.in(2), &ln_bias = ctx.in(3);
    CB_CHECK(x.rank() == 3 && codes.rank() == 3, node.describe() << ": x " << dims_str(x.dims()) << " and codes "
                                                                 << dims_str(codes.dims()) << " must have rank 3");
    const long long B = x.dim(0), T = x.dim(1), D = x.dim(2), G = codes.dim(0), K = codes.dim(1), Dg = codes.dim(2);
    CB_CHECK(G * Dg == D && ln_scale.numel() == D && ln_bias.numel() == D,
             node.describe() << ": x " << dims_str(x.dims()) << ", codes " << dims_str(codes.dims())
                             << " and the LayerNorm's " << dims_str(ln_scale.dims()) << " do not agree on [G, D/G]");
    CodebookAttrs::from_node(node, G, K);  // the records against G and K: a clear error, not a fault
    CB_CHECK(K <= INT_MAX && B * T * G <= INT_MAX, node.describe() << ": too many codes or tokens for one launch");
    if (B * T == 0) return;
    CB_CHECK(K > 0, node.describe() << ": a codebook of no codes");
    if (!uploaded_) upload(node);
    CodebookCall a{};
    a.x = x.data<float>();
    a.codes = codes.data<float>();
    a.ln_scale = ln_scale.data<float>();
    a.ln_bias = ln_bias.data<float>();
    a.y = ctx.out(0).data<float>();
    a.ids = ctx.outputs.size() > 1 && ctx.outputs[1] ? ctx.outputs[1]->data<int64_t>() : nullptr;
    a.scores = ctx.outputs.size() > 2 && ctx.outputs[2] ? ctx.outputs[2]->data<float>() : nullptr;
    a.T = T;
    a.G = G;
    a.K = K;
    a.Dg = Dg;
    a.k = int(attrs_.k);
    a.epsilon = attrs_.epsilon;
    a.euclidean = attrs_.metric == CodebookMetric::euclidean;
    a.keep_k_codes = attrs_.keep_k_codes;
    a.ablate = ablate_.data();
    a.disable = disable_.data();
    a.force = force_.data();
    a.ablates = int(attrs_.ablate.size());
    a.disables = int(attrs_.disable_topk.size());
    a.forces = int(attrs_.force.size());
    if (!a.euclidean) {
      // The codes may change between runs (training): their norms each call.
      a.inv_norms = inv_norms_.reserve(node, size_t(G * K));
      CB_LAUNCH(code_inverse_norms_kernel, grid_for(G * K), kThreads, 0, launch_.stream)
      (a.codes, inv_norms_.data(), G * K, Dg);
      check_launch(node);
    }
    const size_t shared = SharedLayout(Dg, K).bytes;
    allow_shared_memory(node, codebook_kernel, shared, kStaticShared, shared_limit_);
    CB_LAUNCH(codebook_kernel, unsigned(B * T * G), kCodebookThreads, shared, launch_.stream)(a);
    check_launch(node);
  }

 private:
  // The intervention records, once, on the device.
  void upload(const Node& node) {
    auto put = [&](DeviceArray<int64_t>& to, const std::vector<int64_t>& from) {
      int64_t* p = to.reserve(node, from.size());
      if (!from.empty())
        check_cuda(
            node,
            cudaMemcpyAsync(p, from.data(), from.size() * sizeof(int64_t), cudaMemcpyHostToDevice, launch_.stream),
            "cudaMemcpyAsync");
    };
    put(ablate_, flat_ablate_);
    put(disable_, flat_disable_);
    put(force_, flat_force_);
    check_cuda(node, cudaStreamSynchronize(launch_.stream),
               "cudaStreamSynchronize");  // the host vectors stay, but pageable
    uploaded_ = true;
  }

  Launch launch_;
  CodebookAttrs attrs_;
  std::vector<int64_t> flat_ablate_, flat_disable_, flat_force_;
  DeviceArray<int64_t> ablate_, disable_, force_;
  DeviceArray<float> inv_norms_;
  bool uploaded_ = false;
  static constexpr size_t kStaticShared = 32 * 8 + 32 * 4 + 3 * 8 + 2 * 4 + kMaxCandidates * 8;
  size_t shared_limit_ = 48 * 1024 - kStaticShared;
};

}  // namespace

bool codebook_supports(const Node& n) {
  if (!is_codebook_node(n) || n.inputs.size() != 4 || n.outputs.empty() || n.outputs.size() > 3) return false;
  for (const Value* v : n.inputs)
    if (!is_f32(v)) return false;
  if (!rank_is(n.inputs[0], 3) || !rank_is(n.inputs[1], 3) || !is_f32(n.outputs[0])) return false;
  if (n.outputs.size() > 1 && n.outputs[1] && !is_dtype(n.outputs[1], DType::i64)) return false;
  if (n.outputs.size() > 2 && n.outputs[2] && !is_f32(n.outputs[2])) return false;
  try {
    const CodebookAttrs a = CodebookAttrs::from_node(n);
    const int64_t need = a.keep_k_codes ? a.k + a.max_disable_topk() : a.k;
    return need + kSlack <= kMaxCandidates;  // longer lists: the CPU kernel's
  } catch (const Error&) {
    return false;
  }
}

std::unique_ptr<Kernel> make_codebook(const Node& n, const Launch& l) { return std::make_unique<CodebookKernel>(n, l); }

}  // namespace cb::cuda
