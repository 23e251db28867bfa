// The element-wise update of the fused optimizer ops (ir/ops/optim.h), shared
// by the reference kernel (one thread) and the CPU backend's (threads over
// element ranges): each element is computed by the same code, so results do
// not depend on the thread count.
#pragma once
#include <math.h>

#include <cstdint>

#include "backends/backend.h"
#include "support/host_device.h"

namespace cb {

struct AdamWArgs {
  const float *p, *g, *m, *v;
  float *p_out, *m_out, *v_out;
  float lr, clip, beta1, beta2, eps, weight_decay;
  float bias_correction1, sqrt_bias_correction2;  // 1 - b1^t, sqrt(1 - b2^t)
};

// Reads the node's inputs and attributes and points at the output buffers.
AdamWArgs adamw_args(KernelContext& ctx);

// The bias corrections of optimizer step `step` (1-based).
CB_HOST_DEVICE inline void adamw_bias_corrections(AdamWArgs& a, float step) {
  a.bias_correction1 = 1.f - powf(a.beta1, step);
  a.sqrt_bias_correction2 = sqrtf(1.f - powf(a.beta2, step));
}

// The update of elements [begin, end). The FMAs are spelled out, so that
// every compiler computes the same bits and the CPU backend's vector kernel
// (backends/cpu/optim_kernels.cpp) can repeat them 8 lanes at a time; the
// CUDA kernel (backends/cuda/cuda_optim.cu) calls it per element.
CB_HOST_DEVICE inline void adamw_range(const AdamWArgs& a, int64_t begin, int64_t end) {
  const float keep = 1.f - a.lr * a.weight_decay;
  const float step_size = a.lr / a.bias_correction1;
  const float one_minus_b1 = 1.f - a.beta1, one_minus_b2 = 1.f - a.beta2;
  for (int64_t i = begin; i < end; ++i) {
    const float g = a.g[i] * a.clip;
    const float m = fmaf(a.m[i], a.beta1, g * one_minus_b1);
    const float v = fmaf(a.v[i], a.beta2, (g * g) * one_minus_b2);
    const float p = a.weight_decay != 0.f ? a.p[i] * keep : a.p[i];
    const float denom = sqrtf(v) / a.sqrt_bias_correction2 + a.eps;
    a.p_out[i] = fmaf(-step_size, m / denom, p);
    a.m_out[i] = m;
    a.v_out[i] = v;
  }
}

}  // namespace cb
