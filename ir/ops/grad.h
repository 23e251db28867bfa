// The ops of the backward pass (domain "codebook.grad"), which passes/autodiff
// emits where standard ONNX ops would be slow or awkward, and the codebook
// loss modes the CodebookGrad op implements. Schemas in ir/ops/grad.cpp,
// reference kernels in backends/reference/grad.cpp.
//
//   SoftmaxGrad(dy, y) {axis, log}                  -> dx
//       log = 0: y = Softmax(x),    dx = y * (dy - sum(dy * y, axis))
//       log = 1: y = LogSoftmax(x), dx = dy - exp(y) * sum(dy, axis)
//   GeluGrad(dy, x) {approximate}                   -> dx = dy * Gelu'(x)
//       approximate = "none": Gelu'(x) = Phi(x) + x phi(x) (the normal cdf
//       and density); "tanh": with u = sqrt(2/pi) (x + 0.044715 x^3),
//       Gelu'(x) = (1 + tanh u) / 2 + x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2.
//   LayerNormalizationGrad(dy, x, scale) {axis, epsilon} -> (dx?, dscale?, dbias?)
//       x normalised over dims [axis, rank) (mean and variance recomputed,
//       biased variance); dscale and dbias have the normalised dims' shape
//       (the rule reduces them further when scale/bias were broadcast).
//   GatherGrad(dy, indices, shape) {axis}           -> zeros(shape) with every
//       slice dy[..., i, ...] added at data index indices[i] along `axis`
//       (repeated indices add up; negative ones count from the end).
//   SliceGrad(dy, shape, starts, ends, axes?, steps?) -> zeros(shape) with dy
//       written where Slice(zeros(shape), starts, ends, axes, steps) reads.
//   AttentionGrad(dy, Q, Kt, V, mask?) {scale, nan_to_zero, q_perm, k_perm,
//       v_perm, out_perm} -> (dQ, dKt, dV)
//       the backward of codebook.Attention (ir/attention.h) without cached
//       keys or head offsets, with the forward's perms: Q, Kt and V as the
//       forward reads them, dy in its output's layout (out_perm), and each
//       gradient in its input's layout (q_perm, k_perm, v_perm) with the
//       broadcast [B, H] of Q, Kt and V (the rule sums it back to a
//       broadcast input's shape); in the default layout dQ [B, H, T, dh],
//       dKt [B, H, dh, S], dV [B, H, S, dv]. With P the
//       forward's probabilities (0 where nan_to_zero drops a NaN) and
//       dP = dy V^T, dS = P * (dP - rowsum(P * dP)) (0 where P is 0):
//       dQ = scale dS K, dKt = scale (dS^T Q)^T, dV = P^T dy. The
//       probabilities are recomputed, never stored.
//   CodebookGrad(dy, x, codes, ln_scale, ln_bias, ids) {k, epsilon, loss}
//       -> (dx?, dcodes?, dln_scale?, dln_bias?)
//       the backward of codebook.Codebook (ir/codebook.h) with the ids its
//       forward selected, per loss mode below.
//
// Codebook loss modes, the original library's (attribute "loss" of the
// Codebook node, default "aeloss"; docs/original.md#codebook-loss-modes-backward).
// Per group member, with u = LN(x), y the output, g = dy, N = B*T tokens of
// the call, sums over slots (t, j) with ids = c:
//   T_c = (1/k) sum g_t          R_c = (2/(N k)) sum (y_t - u_t)
//   mode            dcodes    du
//   base            T         g
//   aeloss          T + R     g
//   fullaeloss[-b]  T + R     g + 2b(u - y)     (b default 0.25)
//   vqvae[-b]       R         g + 2b(u - y)
// The commitment term is per token (a sum), R the gradient of a mean, as in
// the original. Blocked slots (-1) add nothing; du then flows through the
// LayerNorm backward into dx, dln_scale and dln_bias.
#pragma once
#include <string>

#include "ir/graph.h"

namespace cb {

class OpRegistry;

inline constexpr const char* kGradDomain = "codebook.grad";
inline constexpr const char* kAttentionGradOp = "AttentionGrad";

enum class CodebookLossKind { base, aeloss, fullaeloss, vqvae };

struct CodebookLoss {
  CodebookLossKind kind = CodebookLossKind::aeloss;
  float beta = 0.25f;  // fullaeloss and vqvae only

  bool task_to_codes() const { return kind != CodebookLossKind::vqvae; }           // T
  bool reconstruction_to_codes() const { return kind != CodebookLossKind::base; }  // R
  bool commitment() const { return kind == CodebookLossKind::fullaeloss || kind == CodebookLossKind::vqvae; }
};

// Parses "base", "aeloss", "fullaeloss[-beta]", "vqvae[-beta]"; anything else
// (including "aeloss-0.5" and "base-1", which the original accepted and then
// failed on at the first backward) throws cb::Error.
CodebookLoss parse_codebook_loss(const std::string& s);
// The "loss" attribute of a Codebook or CodebookGrad node (default "aeloss");
// errors name the node.
CodebookLoss codebook_loss_of(const Node& n);

void register_grad_ops(OpRegistry& r);

}  // namespace cb
