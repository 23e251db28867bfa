// Optimizers as IR (train/optimizer.h): three steps of AdamW and SGD with
// momentum, weight decay and clipping against the PyTorch formulas computed
// here in double precision; the learning-rate schedules. (The fused AdamW
// node on the cpu backend against the reference: the op harness,
// tests/op_cases/optim.cpp.)
#include <gtest/gtest.h>

#include <cmath>

#include "backends/backend.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "train/optimizer.h"

using namespace cb;

namespace {

struct StepResults {
  std::vector<std::vector<float>> params;  // per step, parameter values after it
  std::vector<float> norms;
};

// p (4 values) and its gradient are graph inputs; the gradient for step t is grads[t].
StepResults run_optimizer(const OptimizerConfig& cfg, float lr_factor, float wd, const std::vector<float>& p0,
                          const std::vector<std::vector<float>>& grads, float lr) {
  auto g = std::make_shared<Graph>();
  Value* p = g->add_input("w", TensorType{DType::f32, Shape::of({4})});
  Value* dp = g->add_input("dw", TensorType{DType::f32, Shape::of({4})});
  ParamGroup grp;
  grp.name = "model";
  grp.params = {p};
  grp.grads = {dp};
  grp.lr_factor = lr_factor;
  grp.weight_decay = wd;
  OptimizerGraph og = append_optimizer(*g, {grp}, cfg);
  auto backend = make_backend("reference");
  auto exe = Executable::compile(g, *backend);
  std::map<std::string, Tensor> in;
  in["w"] = Tensor::from_vector(p0, {4});
  for (auto& s : og.states) in[s.input->name] = Tensor::zeros(DType::f32, {4});
  StepResults r;
  for (size_t t = 0; t < grads.size(); ++t) {
    in["dw"] = Tensor::from_vector(grads[t], {4});
    in[kStepInput] = Tensor::scalar<float>(float(t + 1));
    in[kLearningRateInput] = Tensor::scalar<float>(lr);
    std::vector<Tensor> outs = exe->run(in);
    auto names = exe->output_names();
    for (size_t i = 0; i < outs.size(); ++i) {
      if (names[i] == kGradNormOutput) r.norms.push_back(outs[i].data<float>()[0]);
      for (auto& s : og.states)
        if (names[i] == s.next->name) in[s.input->name] = outs[i].clone();
      if (names[i] == og.params[0].next->name) {
        in["w"] = outs[i].clone();
        r.params.emplace_back(outs[i].data<float>(), outs[i].data<float>() + 4);
      }
    }
  }
  return r;
}

const std::vector<float> kP0 = {0.5f, -1.25f, 2.f, 0.1f};
const std::vector<std::vector<float>> kGrads = {
    {0.3f, -0.2f, 1.5f, -0.01f}, {-0.1f, 0.4f, 0.2f, 0.05f}, {2.f, -3.f, 0.5f, 0.7f}};

TEST(Optimizer, AdamWMatchesPyTorchsFormula) {
  OptimizerConfig cfg;
  cfg.max_grad_norm = 1.0f;  // clips the first and last steps
  const double lr = 1e-2, factor = 0.5, wd = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  StepResults r = run_optimizer(cfg, float(factor), float(wd), kP0, kGrads, float(lr));
  std::vector<double> p(kP0.begin(), kP0.end()), m(4, 0), v(4, 0);
  for (size_t t = 1; t <= kGrads.size(); ++t) {
    double norm = 0;
    for (float x : kGrads[t - 1]) norm += double(x) * x;
    norm = std::sqrt(norm);
    EXPECT_NEAR(r.norms[t - 1], norm, 1e-5);
    double clip = std::min(1.0, 1.0 / (norm + 1e-6));
    double glr = lr * factor;
    for (int i = 0; i < 4; ++i) {
      double gi = kGrads[t - 1][size_t(i)] * clip;
      p[i] *= 1 - glr * wd;
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, double(t))) + eps;
      p[i] -= glr / (1 - std::pow(b1, double(t))) * m[i] / denom;
      EXPECT_NEAR(r.params[t - 1][size_t(i)], p[i], 2e-6) << "step " << t << " element " << i;
    }
  }
}

TEST(Optimizer, SgdWithMomentumAndL2MatchesPyTorchsFormula) {
  OptimizerConfig cfg;
  cfg.kind = OptimizerKind::sgd;
  cfg.momentum = 0.9f;
  const double lr = 0.1, wd = 0.01;
  StepResults r = run_optimizer(cfg, 1.f, float(wd), kP0, kGrads, float(lr));
  std::vector<double> p(kP0.begin(), kP0.end()), buf(4, 0);
  for (size_t t = 1; t <= kGrads.size(); ++t)
    for (int i = 0; i < 4; ++i) {
      double gi = kGrads[t - 1][size_t(i)] + wd * p[i];
      buf[i] = t == 1 ? gi : 0.9 * buf[i] + gi;
      p[i] -= lr * buf[i];
      EXPECT_NEAR(r.params[t - 1][size_t(i)], p[i], 1e-5) << "step " << t << " element " << i;
    }
}

TEST(Optimizer, RejectsNonFloatParameters) {
  Graph g;
  Value* p = g.add_input("ids", TensorType{DType::i64, Shape::of({4})});
  ParamGroup grp{"model", {p}, {p}};
  EXPECT_THROW(append_optimizer(g, {grp}, OptimizerConfig{}), Error);
  EXPECT_THROW(append_optimizer(g, {}, OptimizerConfig{}), Error);
}

TEST(Schedule, WarmupLinearCosine) {
  Schedule s{ScheduleKind::constant, 1.f, 0, 100};
  EXPECT_FLOAT_EQ(s.at(0), 1.f);
  EXPECT_FLOAT_EQ(s.at(99), 1.f);
  s = {ScheduleKind::linear, 2.f, 10, 110};
  EXPECT_FLOAT_EQ(s.at(0), 0.f);
  EXPECT_FLOAT_EQ(s.at(5), 1.f);
  EXPECT_FLOAT_EQ(s.at(10), 2.f);
  EXPECT_FLOAT_EQ(s.at(60), 1.f);
  EXPECT_FLOAT_EQ(s.at(110), 0.f);
  s = {ScheduleKind::cosine, 2.f, 0, 100};
  EXPECT_FLOAT_EQ(s.at(50), 1.f);
  EXPECT_NEAR(s.at(100), 0.f, 1e-7);
  EXPECT_EQ(parse_schedule("cosine"), ScheduleKind::cosine);
  EXPECT_THROW(parse_schedule("exponential"), Error);
}

}  // namespace
