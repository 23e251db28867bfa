// The CUDA kernels' one dispatch table (cuda_kernel_supports /
// make_cuda_kernel), the helpers the kernel files share, and the row kernels
// (Softmax, LayerNormalization over the last axis). The other kernels live
// one concern per file: cuda_elementwise.cu, cuda_matmul.cu,
// cuda_attention.cu, cuda_layout.cu.
#include <algorithm>
#include <cmath>
#include <string>

#include "backends/cuda/cuda_common.h"
#include "backends/cuda/cuda_kernels.h"
#include "ir/attention.h"
#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "ir/ops/grad.h"
#include "ir/ops/optim.h"
#include "ir/placement.h"
#include "support/error.h"

namespace cb {

namespace cuda {

bool all_f32(const Node& n) {
  for (const Value* v : n.inputs)
    if (v && !is_f32(v)) return false;
  for (const Value* v : n.outputs)
    if (v && !is_f32(v)) return false;
  return !n.outputs.empty() && n.outputs[0];
}

const Tensor* constant_input(const Node& n, size_t i) {
  const Value* v = n.input(i);
  if (v && v->producer && is_copy_to_device(*v->producer)) v = v->producer->inputs[0];
  return v && v->is_constant() ? &*v->constant : nullptr;
}

void broadcast_strides(const Tensor& in, const std::vector<int64_t>& out, long long* strides) {
  const size_t r = out.size(), ri = in.rank();
  long long s = 1;
  for (size_t d = r; d-- > 0;) {
    if (d + ri < r) {
      strides[d] = 0;
      continue;
    }
    const size_t k = d + ri - r;  // the input's dim aligned to output dim d
    strides[d] = in.dim(k) == 1 ? 0 : s;
    s *= in.dim(k);
  }
}

BroadcastIndex broadcast_index(const Node& n, const std::vector<const Tensor*>& ins, const Tensor& out) {
  CB_CHECK(out.rank() <= size_t(kMaxRank), n.describe() << ": rank " << out.rank() << " is over " << kMaxRank);
  BroadcastIndex ix{};
  ix.rank = int(out.rank());
  for (size_t d = 0; d < out.rank(); ++d) ix.dims[d] = out.dim(d);
  for (size_t k = 0; k < ins.size() && k < 3; ++k) {
    CB_CHECK(ins[k]->rank() <= out.rank(), n.describe() << ": input " << k << " has a higher rank than the output");
    broadcast_strides(*ins[k], out.dims(), ix.strides[k]);
  }
  return ix;
}

namespace {

// ---- row kernels: one block per row of the last axis ----

__global__ void layer_norm_kernel(const float* x, const float* gamma, const float* beta, float* y, long long cols,
                                  float epsilon) {
  __shared__ float shared[32];
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float s = 0;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += row[c];
  const float mean = block_sum(s, shared) / float(cols);
  float q = 0;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) q += (row[c] - mean) * (row[c] - mean);
  const float inv = rsqrtf(block_sum(q, shared) / float(cols) + epsilon);
  for (long long c = threadIdx.x; c < cols; c += blockDim.x)
    out[c] = (row[c] - mean) * inv * gamma[c] + (beta ? beta[c] : 0.f);
}

// Softmax, or LogSoftmax (log): x - max - log(sum exp(x - max)).
__global__ void softmax_kernel(const float* x, float* y, long long cols, bool log) {
  __shared__ float shared[32];
  const float* row = x + blockIdx.x * cols;
  float* out = y + blockIdx.x * cols;
  float m = -INFINITY;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, row[c]);
  m = block_max(m, shared);
  float s = 0;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) s += expf(row[c] - m);
  s = block_sum(s, shared);
  const float inv = 1.f / s, log_sum = logf(s);
  for (long long c = threadIdx.x; c < cols; c += blockDim.x)
    out[c] = log ? row[c] - m - log_sum : expf(row[c] - m) * inv;
}

enum class Row { layer_norm, softmax, log_softmax };

class RowKernel : public Kernel {
 public:
  RowKernel(Row op, float epsilon, cudaStream_t s) : op_(op), epsilon_(epsilon), stream_(s) {}
  void run(KernelContext& ctx) override {
    const Tensor& x = ctx.in(0);
    Tensor& y = ctx.out(0);
    if (x.numel() == 0) return;
    const long long cols = x.dim(x.rank() - 1), rows = x.numel() / cols;
    CB_CHECK(rows <= 0x7fffffff, ctx.node.describe() << ": " << rows << " rows are too many for one launch");
    if (op_ == Row::layer_norm) {
      const Tensor& gamma = ctx.in(1);
      const Tensor* beta = ctx.inputs.size() > 2 ? ctx.inputs[2] : nullptr;  // optional
      CB_CHECK(gamma.numel() == cols && (!beta || beta->numel() == cols),
               ctx.node.describe() << ": scale and bias must have the last axis' " << cols << " elements");
      CB_LAUNCH(layer_norm_kernel, unsigned(rows), kThreads, 0, stream_)
      (x.data<float>(), gamma.data<float>(), beta ? beta->data<float>() : nullptr, y.data<float>(), cols, epsilon_);
    } else {
      CB_LAUNCH(softmax_kernel, unsigned(rows), kThreads, 0, stream_)
      (x.data<float>(), y.data<float>(), cols, op_ == Row::log_softmax);
    }
    check_launch(ctx.node);
  }

 private:
  Row op_;
  float epsilon_;
  cudaStream_t stream_;
};

}  // namespace

bool is_last_axis(const Node& n, size_t input) {
  const Value* x = n.input(input);
  const int64_t axis = n.attr_int("axis", -1);
  return x && (axis == -1 || (x->type.shape.rank_known && axis == int64_t(x->type.shape.rank()) - 1));
}

bool softmax_supports(const Node& n) { return n.inputs.size() == 1 && all_f32(n) && is_last_axis(n, 0); }

std::unique_ptr<Kernel> make_softmax(const Node& n, const Launch& l) {
  return std::make_unique<RowKernel>(n.op_type == "LogSoftmax" ? Row::log_softmax : Row::softmax, 0.f, l.stream);
}

bool layer_norm_supports(const Node& n) {
  for (size_t i = 1; i < n.outputs.size(); ++i)
    if (n.outputs[i]) return false;  // mean / inverse std outputs: not yet
  return all_f32(n) && n.inputs.size() >= 2 && n.inputs[1] && is_last_axis(n, 0) && n.attr_int("stash_type", 1) == 1;
}

std::unique_ptr<Kernel> make_layer_norm(const Node& n, const Launch& l) {
  return std::make_unique<RowKernel>(Row::layer_norm, n.attr_float("epsilon", 1e-5f), l.stream);
}

namespace {

struct CudaOp {
  const char* domain;  // "" for ai.onnx
  const char* op;
  SupportsFn supports;
  MakeFn make;
};

const CudaOp kOps[] = {
    {"", "Add", binary_supports, make_binary},
    {"", "Sub", binary_supports, make_binary},
    {"", "Mul", binary_supports, make_binary},
    {"", "Div", binary_supports, make_binary},
    {"", "Pow", binary_supports, make_binary},
    {"", "Neg", unary_supports, make_unary},
    {"", "Abs", unary_supports, make_unary},
    {"", "Relu", unary_supports, make_unary},
    {"", "Exp", unary_supports, make_unary},
    {"", "Log", unary_supports, make_unary},
    {"", "Sqrt", unary_supports, make_unary},
    {"", "Reciprocal", unary_supports, make_unary},
    {"", "Sin", unary_supports, make_unary},
    {"", "Cos", unary_supports, make_unary},
    {"", "Tanh", unary_supports, make_unary},
    {"", "Sigmoid", unary_supports, make_unary},
    {"", "Erf", unary_supports, make_unary},
    {"", "Gelu", unary_supports, make_unary},
    {"", "Where", where_supports, make_where},
    {"", "Softmax", softmax_supports, make_softmax},
    {"", "LogSoftmax", softmax_supports, make_softmax},
    {"", "ReduceSum", reduce_supports, make_reduce},
    {"", "ReduceSumSquare", reduce_supports, make_reduce},
    {"", "ReduceMean", reduce_supports, make_reduce},
    {"", "Sum", sum_supports, make_sum},
    {kGradDomain, "GeluGrad", gelu_grad_supports, make_gelu_grad},
    {kGradDomain, "SoftmaxGrad", softmax_grad_supports, make_softmax_grad},
    {kGradDomain, "LayerNormalizationGrad", layer_norm_grad_supports, make_layer_norm_grad},
    {"", "LayerNormalization", layer_norm_supports, make_layer_norm},
    {"", "MatMul", matmul_supports, make_matmul},
    {"", "Gemm", gemm_supports, make_gemm},
    {kCodebookDomain, kFusedMatMulOp, fused_matmul_supports, make_fused_matmul},
    {kCodebookDomain, kAttentionOp, attention_supports, make_attention},
    {kGradDomain, kAttentionGradOp, attention_grad_supports, make_attention_grad},
    {kCodebookDomain, kCodebookOp, codebook_supports, make_codebook},
    {kGradDomain, "CodebookGrad", codebook_grad_supports, make_codebook_grad},
    {kTrainDomain, "AdamW", adamw_supports, make_adamw},
    {"", "Transpose", transpose_supports, make_transpose},
    {"", "Concat", concat_supports, make_concat},
    {"", "Split", split_supports, make_split},
    {"", "Slice", slice_supports, make_slice},
    {kGradDomain, "SliceGrad", slice_grad_supports, make_slice_grad},
    {"", "Reshape", view_supports, make_view},
    {"", "Unsqueeze", view_supports, make_view},
    {"", "Squeeze", view_supports, make_view},
    {"", "Flatten", view_supports, make_view},
    {"", "Identity", view_supports, make_view},
    {"", "Expand", expand_supports, make_expand},
    {"", "ConstantOfShape", constant_of_shape_supports, make_constant_of_shape},
    {"", "Gather", gather_supports, make_gather},
    {"", "Cast", cast_supports, make_cast},
    {"", "GatherElements", elements_supports, make_elements},
    {"", "ScatterElements", elements_supports, make_elements},
    {kGradDomain, "GatherGrad", gather_grad_supports, make_gather_grad},
    {"", "ArgMax", arg_max_supports, make_arg_max},
};

const CudaOp* find_op(const Node& n) {
  for (const CudaOp& op : kOps)
    if (n.domain == op.domain && n.op_type == op.op) return &op;
  return nullptr;
}

}  // namespace

}  // namespace cuda

bool cuda_kernel_supports(const Node& n) {
  const cuda::CudaOp* op = cuda::find_op(n);
  return op && !n.outputs.empty() && op->supports(n);
}

std::unique_ptr<Kernel> make_cuda_kernel(const Node& n, cudaStream_t stream, cublasHandle_t cublas) {
  if (!cuda_kernel_supports(n)) return nullptr;
  return cuda::find_op(n)->make(n, cuda::Launch{stream, cublas});
}

}  // namespace cb
