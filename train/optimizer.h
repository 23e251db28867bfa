// Optimizers as IR: the parameter update of one training step is a set of
// ordinary graph nodes appended after the backward pass, so it runs on any
// backend, inside the same executable as the forward and backward.
//
// For every trainable parameter p (a graph input) with gradient value dp:
//   global grad-norm clipping (optional): s = min(1, max_norm / (|g|_2 + 1e-6))
//     over the gradients of all parameters together (PyTorch clip_grad_norm_);
//   AdamW (PyTorch's formula; decoupled weight decay applied first):
//     p <- p * (1 - lr*wd);  m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
//     p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   SGD (PyTorch's formula; L2 weight decay, momentum without dampening):
//     g <- g + wd*p;  b <- mu b + g (b = g at t = 1);  p <- p - lr b
// The step t (1-based) and the scheduled learning rate are graph inputs
// (kStepInput, kLearningRateInput), so a schedule is just the value fed each
// step; each group scales it by its lr_factor. The new parameter and state
// values are graph outputs named "<name>.next"; the trainer feeds them back.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

inline constexpr const char* kStepInput = "optimizer.step";
inline constexpr const char* kLearningRateInput = "optimizer.lr";
inline constexpr const char* kGradNormOutput = "optimizer.grad_norm";

enum class OptimizerKind { adamw, sgd };

struct ParamGroup {
  std::string name;            // for logs: "codebooks", "model"
  std::vector<Value*> params;  // graph inputs holding the parameters
  std::vector<Value*> grads;   // their gradients, same order
  float lr_factor = 1.f;       // lr of this group = scheduled lr * lr_factor
  float weight_decay = 0.f;
};

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::adamw;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;  // AdamW
  float momentum = 0.f;                             // SGD
  float max_grad_norm = 0.f;                        // <= 0: no clipping
};

// One optimizer state tensor: a graph input that the trainer initialises
// (zeros) and replaces by the output of the same name + ".next" after a step.
struct OptimizerSlot {
  Value* input = nullptr;
  Value* next = nullptr;
};

struct OptimizerGraph {
  std::vector<OptimizerSlot> params;  // parameter -> updated parameter
  std::vector<OptimizerSlot> states;  // m and v (AdamW) or momentum buffers (SGD)
  Value* step = nullptr;              // f32 scalar input, 1-based
  Value* learning_rate = nullptr;     // f32 scalar input
  Value* grad_norm = nullptr;         // f32 scalar output (before clipping)
};

// Appends the update nodes for `groups` to `g`. Parameters must be f32 graph
// inputs; throws cb::Error naming a parameter that is not.
OptimizerGraph append_optimizer(Graph& g, const std::vector<ParamGroup>& groups, const OptimizerConfig& cfg);

// Learning-rate schedules (computed on the host: the value of kLearningRateInput).
enum class ScheduleKind { constant, linear, cosine };
struct Schedule {
  ScheduleKind kind = ScheduleKind::constant;
  float base_lr = 1e-3f;
  int64_t warmup_steps = 0;  // linear warm-up from 0
  int64_t total_steps = 0;   // linear / cosine decay to 0 at total_steps
  // lr at 0-based step `step` (the HF trainer's convention).
  float at(int64_t step) const;
};
ScheduleKind parse_schedule(const std::string& s);  // constant | linear | cosine

}  // namespace cb
