#include "train/optimizer.h"

#include <cmath>

#include "ir/builder.h"
#include "ir/ops/optim.h"
#include "support/error.h"

namespace cb {

namespace {

// SGD's L2 weight decay: g + wd * p.
Value* grad_with_decay(Builder& b, Value* grad, Value* p, float wd) {
  if (wd == 0.f) return grad;
  return b.add(grad, b.mul(p, b.f32(wd, "optimizer.wd"), p->name + ".l2"), p->name + ".decayed_grad");
}

}  // namespace

OptimizerGraph append_optimizer(Graph& g, const std::vector<ParamGroup>& groups, const OptimizerConfig& cfg) {
  Builder b(g);
  OptimizerGraph out;
  out.step = g.add_input(kStepInput, TensorType{DType::f32, Shape::of({})});
  out.learning_rate = g.add_input(kLearningRateInput, TensorType{DType::f32, Shape::of({})});

  // Global gradient norm over every trainable parameter, and the clip scale.
  std::vector<Value*> squares;
  for (auto& grp : groups) {
    CB_CHECK(grp.params.size() == grp.grads.size(), "parameter group " << grp.name << ": " << grp.params.size()
                                                                       << " parameters but " << grp.grads.size()
                                                                       << " gradients");
    for (size_t i = 0; i < grp.params.size(); ++i) {
      Value* p = grp.params[i];
      CB_CHECK(p && p->type.dtype == DType::f32,
               "parameter " << (p ? p->name : "?") << " of group " << grp.name << " must be an f32 graph input");
      squares.push_back(b.named_op("ReduceSumSquare", {grp.grads[i]}, "optimizer.sq", {{"keepdims", int64_t(0)}}));
    }
  }
  CB_CHECK(!squares.empty(), "the optimizer has no parameters to train");
  Value* total = squares.size() == 1 ? squares[0] : b.named_op("Sum", squares, "optimizer.sq_total");
  out.grad_norm = b.named_op("Sqrt", {total}, kGradNormOutput);
  g.outputs.push_back(out.grad_norm);
  Value* clip = nullptr;
  if (cfg.max_grad_norm > 0) {
    Value* coef = b.div(b.f32(cfg.max_grad_norm, "optimizer.max_norm"),
                        b.add(out.grad_norm, b.f32(1e-6f, "optimizer.norm_eps"), "optimizer.norm_eps_add"),
                        "optimizer.clip_coef");
    clip = b.named_op("Min", {coef, b.f32(1.f, "optimizer.one")}, "optimizer.clip");
  }

  auto state = [&](Value* p, const char* suffix) {
    OptimizerSlot s;
    s.input = g.add_input(p->name + suffix, p->type);
    out.states.push_back(s);
    return out.states.size() - 1;
  };
  auto finish = [&](OptimizerSlot& s, Value* v) {
    Value* next = b.named_op("Identity", {v}, s.input->name + ".next");
    g.outputs.push_back(next);
    s.next = next;
  };

  for (auto& grp : groups) {
    Value* lr = grp.lr_factor == 1.f
                    ? out.learning_rate
                    : b.mul(out.learning_rate, b.f32(grp.lr_factor, "optimizer.lr_factor"), "optimizer.lr_" + grp.name);
    for (size_t i = 0; i < grp.params.size(); ++i) {
      Value* p = grp.params[i];
      Value* next_p = nullptr;
      if (cfg.kind == OptimizerKind::adamw) {
        // One fused node per parameter (ir/ops/optim.h): the same formula as
        // the elementwise form, one pass over memory.
        size_t mi = state(p, ".adam_m"), vi = state(p, ".adam_v");
        std::vector<Value*> in = {p, grp.grads[i], out.states[mi].input, out.states[vi].input, lr, out.step};
        if (clip) in.push_back(clip);
        Value* np = g.add_value(g.unique_name(p->name + ".updated"));
        Value* nm = g.add_value(g.unique_name(p->name + ".m"));
        Value* nv = g.add_value(g.unique_name(p->name + ".v"));
        b.create("AdamW", in, {np, nm, nv},
                 {{"beta1", cfg.beta1}, {"beta2", cfg.beta2}, {"epsilon", cfg.eps}, {"weight_decay", grp.weight_decay}},
                 np->name, kTrainDomain);
        next_p = np;
        finish(out.states[mi], nm);
        finish(out.states[vi], nv);
      } else {
        Value* grad = clip ? b.mul(grp.grads[i], clip, p->name + ".clipped_grad") : grp.grads[i];
        Value* gd = grad_with_decay(b, grad, p, grp.weight_decay);
        Value* direction = gd;
        if (cfg.momentum != 0.f) {
          size_t bi = state(p, ".momentum");
          // b = mu*b + g; the buffer starts at zero, which gives b = g at t = 1 as in PyTorch.
          direction = b.add(b.mul(out.states[bi].input, b.f32(cfg.momentum, "optimizer.momentum"), p->name + ".b_old"),
                            gd, p->name + ".b");
          finish(out.states[bi], direction);
        }
        next_p = b.sub(p, b.mul(lr, direction, p->name + ".update"), p->name + ".updated");
      }
      OptimizerSlot ps{p, nullptr};
      finish(ps, next_p);
      out.params.push_back(ps);
    }
  }
  return out;
}

float Schedule::at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return base_lr * float(step) / float(warmup_steps);
  if (kind == ScheduleKind::constant || total_steps <= warmup_steps) return base_lr;
  double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);
  progress = std::min(1.0, std::max(0.0, progress));
  if (kind == ScheduleKind::linear) return float(base_lr * (1.0 - progress));
  return float(base_lr * 0.5 * (1.0 + std::cos(M_PI * progress)));
}

ScheduleKind parse_schedule(const std::string& s) {
  if (s == "constant" || s == "constant_with_warmup") return ScheduleKind::constant;
  if (s == "linear") return ScheduleKind::linear;
  if (s == "cosine") return ScheduleKind::cosine;
  CB_FAIL("unknown learning-rate schedule '" << s << "' (expected constant, linear or cosine)");
}

}  // namespace cb
