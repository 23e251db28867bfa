// Tests of reverse-mode autodiff (passes/autodiff.h) and the backward ops
// (ir/ops/grad.h):
//   - graphs of several nodes (symbolic shapes, values used several times,
//     the attention block, round trips): in f64 with loss = sum(random
//     weights * output), the gradients checked against double-sided finite
//     differences on the reference backend, then the same graph in f32 on the
//     reference and cpu backends against the f64 gradients (the one-node
//     checks of every differentiable op are cases of the op harness,
//     tests/op_cases/*.cpp);
//   - the codebook op in all four loss modes (group codebooks, zero-mode and
//     forced slots): dcodes against the T / R formulas of ir/ops/grad.h,
//     dx / dln_scale / dln_bias against finite differences of the surrogate
//     losses (ids held fixed);
//   - whole models (tests/models): a cross-entropy loss on the logits, the
//     gradients of every weight, finite differences of a few entries in f64;
//   - pruning: frozen parameters get no gradient nodes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "frontend/onnx_import.h"
#include "ir/codebook.h"
#include "ir/ops/grad.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/autodiff.h"
#include "passes/canonicalize.h"
#include "passes/insert_codebooks.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::add_weighted_sum_loss;
using cb::test::converted;
using cb::test::max_abs;
using cb::test::run_graph;
using cb::test::set_value;

namespace {

std::mt19937& rng() {
  static std::mt19937 r(20240907);
  return r;
}

// Magnitudes in [0.5, 1.5], random sign unless positive: never zero, and
// away from the kinks and poles of the ops under test.
cb::test::Values values(bool positive) { return positive ? cb::test::positive() : cb::test::Values{}; }

// Every element of `got` within rel * max|want| of `want`.
void expect_all_near(const Tensor& got, const Tensor& want, double rel, const std::string& what) {
  ASSERT_EQ(got.dims(), want.dims()) << what;
  double tol = rel * max_abs(want);
  for (int64_t i = 0; i < want.numel(); ++i)
    ASSERT_NEAR(got.get_double(i), want.get_double(i), tol) << what << "[" << i << "]";
}

// ------------------------------------------------------------ per-op checks

struct OpCase {
  std::string text;                                       // the forward graph, in f64
  std::vector<std::string> wrt;                           // inputs to differentiate by
  std::map<std::string, Tensor> fixed = {};               // inputs given (indices, masks)
  std::map<std::string, std::vector<int64_t>> dims = {};  // run-time dims of symbolic inputs
  std::set<std::string> positive = {};                    // inputs drawn > 0
  double fd_step = 1e-6, fd_tolerance = 1e-6;             // central differences: step, relative tolerance
};

std::string with_dtype(std::string text, const std::string& dt) {
  for (size_t p = text.find("f64"); p != std::string::npos; p = text.find("f64", p + dt.size())) text.replace(p, 3, dt);
  return text;
}

// The case's graph against finite differences (tests/test_util.h's
// check_gradients), in f64 and then in f32 on both backends.
void check_op_gradients(const OpCase& c) {
  SCOPED_TRACE(c.text);
  std::shared_ptr<Graph> fwd = parse_graph(c.text);
  infer_types(*fwd);
  std::map<std::string, Tensor> inputs;
  for (Value* in : fwd->inputs) {
    auto f = c.fixed.find(in->name);
    if (f != c.fixed.end()) {
      inputs[in->name] = f->second;
      continue;
    }
    auto d = c.dims.find(in->name);
    std::vector<int64_t> dims = d != c.dims.end() ? d->second : in->type.shape.sizes();
    inputs[in->name] = cb::test::random_tensor(in->type.dtype, dims, values(c.positive.count(in->name) != 0), rng());
  }
  cb::test::GradientCheck check;
  check.wrt = c.wrt;
  check.fd_step = c.fd_step;
  check.fd_tolerance = c.fd_tolerance;
  check.f32_backends = {"reference", "cpu"};
  cb::test::check_gradients([&](DType dt) { return parse_graph(with_dtype(c.text, std::string(dtype_name(dt)))); },
                            inputs, check, rng());
}

Tensor i64s(const std::vector<int64_t>& v, std::vector<int64_t> dims) { return Tensor::from_vector<int64_t>(v, dims); }

// f64 -> f32 -> f64: the gradient is cast twice. (The loss is piecewise
// constant at f32 resolution: a larger step.)
TEST(AutodiffOps, CastRoundTrip) {
  OpCase round_trip{R"(graph g(%x: f64[2,3]) -> (%z) {
    %y = Cast(%x) {to = 1}
    %z = Cast(%y) {to = 11}
  })",
                    {"x"}};
  round_trip.fd_step = 1e-2;
  round_trip.fd_tolerance = 1e-5;
  check_op_gradients(round_trip);
}

TEST(AutodiffOps, UnsqueezeSqueezeRoundTrip) {
  check_op_gradients({R"(graph g(%x: f64[2,3]) -> (%z) {
    %a: i64[2] = const {0, 2}
    %y = Unsqueeze(%x, %a)
    %z = Squeeze(%y, %a)
  })",
                      {"x"}});
}

// Symbolic dims: gradients whose shapes come from Shape nodes at run time.
TEST(AutodiffOps, SymbolicShapes) {
  std::map<std::string, std::vector<int64_t>> dims = {{"x", {2, 3, 4}}};
  check_op_gradients({R"(graph g(%x: f64[batch,seq,4], %b: f64[4]) -> (%y) {
    %s: i64[2] = const {-1, 4}
    %r = Reshape(%x, %s)
    %y = Add(%r, %b)
  })",
                      {"x", "b"},
                      {},
                      dims});
  check_op_gradients({R"(graph g(%x: f64[batch,seq,4]) -> (%y) {
    %st: i64[1] = const {1}
    %en: i64[1] = const {9223372036854775807}
    %ax: i64[1] = const {1}
    %y = Slice(%x, %st, %en, %ax)
  })",
                      {"x"},
                      {},
                      dims});
  check_op_gradients({R"(graph g(%x: f64[batch,seq,4], %z: f64[batch,seq2,4]) -> (%y) {
    %y = Concat(%x, %z) {axis = 1}
  })",
                      {"x", "z"},
                      {},
                      {{"x", {2, 3, 4}}, {"z", {2, 2, 4}}}});
  check_op_gradients({R"(graph g(%x: f64[batch,seq,4]) -> (%y) {
    %a: i64[1] = const {1}
    %y = ReduceMean(%x, %a) {keepdims = 1}
  })",
                      {"x"},
                      {},
                      dims});
  check_op_gradients({R"(graph g(%t: f64[5,4], %ids: i64[batch,seq]) -> (%y) {
    %y = Gather(%t, %ids) {axis = 0}
  })",
                      {"t"},
                      {{"ids", i64s({1, 1, 0, 4, 2, 1}, {2, 3})}}});
  check_op_gradients({R"(graph g(%x: f64[batch,seq,4]) -> (%y) {
    %a, %b = Split(%x) {axis = 1, num_outputs = 2}
    %y = Mul(%a, %b)
  })",
                      {"x"},
                      {},
                      {{"x", {2, 4, 4}}}});
}

// A value used several times: the contributions are summed.
TEST(AutodiffOps, MultipleUsesAreSummed) {
  check_op_gradients({R"(graph g(%x: f64[2,3], %w: f64[3,3]) -> (%y, %z) {
    %sq = Mul(%x, %x)
    %t = Tanh(%x)
    %s = Add(%sq, %t)
    %y = MatMul(%s, %w)
    %z = MatMul(%x, %w)
  })",
                      {"x", "w"}});
}

// The GPT-2 attention block as exported: Split of qkv, heads, masked softmax.
TEST(AutodiffOps, AttentionBlock) {
  check_op_gradients({R"(graph g(%x: f64[2,3,8], %w: f64[8,24], %bias: f64[24], %mask: f64[1,1,3,3]) -> (%out) {
    %flat_shape: i64[2] = const {-1, 8}
    %qkv_shape: i64[3] = const {2, 3, 24}
    %sizes: i64[3] = const {8, 8, 8}
    %head_shape: i64[4] = const {2, 3, 2, 4}
    %scale: f64[] = const {0.5}
    %merged: i64[3] = const {2, 3, 8}
    %xf = Reshape(%x, %flat_shape)
    %p = Gemm(%xf, %w, %bias)
    %qkv = Reshape(%p, %qkv_shape)
    %q, %k, %v = Split(%qkv, %sizes) {axis = 2}
    %qh = Reshape(%q, %head_shape)
    %kh = Reshape(%k, %head_shape)
    %vh = Reshape(%v, %head_shape)
    %qt = Transpose(%qh) {perm = [0, 2, 1, 3]}
    %kt = Transpose(%kh) {perm = [0, 2, 3, 1]}
    %vt = Transpose(%vh) {perm = [0, 2, 1, 3]}
    %s = MatMul(%qt, %kt)
    %ss = Mul(%s, %scale)
    %sm = Add(%ss, %mask)
    %a = Softmax(%sm) {axis = -1}
    %o = MatMul(%a, %vt)
    %ot = Transpose(%o) {perm = [0, 2, 1, 3]}
    %out = Reshape(%ot, %merged)
  })",
                      {"x", "w", "bias"},
                      {{"mask", Tensor::from_vector<double>({0, -1e9, -1e9, 0, 0, -1e9, 0, 0, 0}, {1, 1, 3, 3})}}});
}

// Only what is asked is computed: a frozen weight gets no gradient node.
TEST(AutodiffPruning, FrozenWeightGetsNoGradient) {
  std::shared_ptr<Graph> g = parse_graph(R"(graph g(%x: f32[2,5,3], %w: f32[3,4], %v: f32[4,2]) -> (%y) {
    %h = MatMul(%x, %w)
    %t = Tanh(%h)
    %y = MatMul(%t, %v)
  })");
  infer_types(*g);
  Value* loss = add_weighted_sum_loss(*g, {g->outputs[0]}, {cb::test::random_tensor(DType::f32, {2, 5, 2}, {}, rng())});
  Backward bw = append_backward(*g, loss, {g->find_value("v")});
  EXPECT_EQ(bw.value_gradients.count(g->find_value("w")), 0u);
  EXPECT_EQ(bw.value_gradients.count(g->find_value("x")), 0u);
  EXPECT_EQ(bw.value_gradients.count(g->find_value("h")), 0u);  // no backward below v's use
  for (Node* n : bw.nodes) EXPECT_NE(n->op_type, "Tanh") << "no backward through Tanh is needed";
  // Asking for the activations' gradient instead: no dV product.
  std::shared_ptr<Graph> g2 = parse_graph(R"(graph g(%x: f32[2,5,3], %w: f32[3,4], %v: f32[4,2]) -> (%y) {
    %h = MatMul(%x, %w)
    %y = MatMul(%h, %v)
  })");
  infer_types(*g2);
  Value* loss2 =
      add_weighted_sum_loss(*g2, {g2->outputs[0]}, {cb::test::random_tensor(DType::f32, {2, 5, 2}, {}, rng())});
  Backward bw2 = append_backward(*g2, loss2, {g2->find_value("x")});
  for (Node* n : bw2.nodes) EXPECT_FALSE(n->op_type == "Gemm" && n->attr_int("transA", 0) == 1) << "a dW product";
  EXPECT_EQ(bw2.value_gradients.count(g2->find_value("v")), 0u);
  EXPECT_EQ(bw2.value_gradients.count(g2->find_value("w")), 0u);
}

TEST(AutodiffErrors, BadRequestsAreNamed) {
  std::shared_ptr<Graph> g = parse_graph(R"(graph g(%x: f32[2,3], %i: i64[2]) -> (%y) {
    %f = Floor(%x)
    %y = Mul(%f, %x)
  })");
  infer_types(*g);
  Value* loss = add_weighted_sum_loss(*g, {g->outputs[0]}, {cb::test::random_tensor(DType::f32, {2, 3}, {}, rng())});
  try {
    append_backward(*g, loss, {g->find_value("x")});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no gradient rule for Floor"), std::string::npos) << e.what();
  }
  EXPECT_THROW(append_backward(*g, g->find_value("y"), {g->find_value("x")}), Error);  // not a scalar
  EXPECT_THROW(append_backward(*g, loss, {g->find_value("i")}), Error);                // not float
}

// The rule table covers every op that carries gradients in our models (the
// model tests below run them) and the codebook op.
TEST(AutodiffOps, RuleTableCoversTheModelOps) {
  std::vector<std::string> ops = differentiable_ops();
  for (const char* op : {"MatMul",
                         "Gemm",
                         "Add",
                         "Sub",
                         "Mul",
                         "Div",
                         "Pow",
                         "Neg",
                         "Sqrt",
                         "Tanh",
                         "Erf",
                         "Gelu",
                         "Softmax",
                         "LogSoftmax",
                         "LayerNormalization",
                         "Gather",
                         "GatherElements",
                         "Reshape",
                         "Flatten",
                         "Transpose",
                         "Split",
                         "Slice",
                         "Concat",
                         "Unsqueeze",
                         "Squeeze",
                         "Where",
                         "Cast",
                         "ReduceMean",
                         "ReduceSum",
                         "Expand",
                         "Sin",
                         "Cos",
                         "codebook.Codebook"})
    EXPECT_NE(std::find(ops.begin(), ops.end(), op), ops.end()) << op;
}

// The backward is ordinary IR: its text form (codebook.grad ops included)
// reads back to the same graph.
TEST(AutodiffOps, BackwardGraphRoundTripsThroughText) {
  std::shared_ptr<Graph> g =
      parse_graph(R"(graph g(%x: f32[batch,3,4], %t: f32[5,4], %ids: i64[batch,3], %s: f32[4]) -> (%y) {
    %e = Gather(%t, %ids) {axis = 0}
    %a = Add(%x, %e)
    %n = LayerNormalization(%a, %s) {axis = -1}
    %y = Softmax(%n) {axis = -1}
  })");
  infer_types(*g);
  Value* w = g->add_constant("w", cb::test::random_tensor(DType::f32, {4}, {}, rng()));
  Value* m = g->add_value("m");
  g->add_node("Mul", {g->outputs[0], w}, {m});
  Value* loss = g->add_value("loss");
  g->add_node("ReduceSum", {m}, {loss}, {{"keepdims", int64_t(0)}});
  Backward bw = append_backward(*g, loss, {g->find_value("x"), g->find_value("t"), g->find_value("s")});
  g->outputs = bw.gradients;
  std::string text = print_graph(*g);
  for (const char* op :
       {"codebook.grad.GatherGrad", "codebook.grad.LayerNormalizationGrad", "codebook.grad.SoftmaxGrad"})
    EXPECT_NE(text.find(op), std::string::npos) << op << " in\n" << text;
  std::shared_ptr<Graph> back = parse_graph(text);
  infer_types(*back);
  EXPECT_EQ(print_graph(*back), text);
  std::map<std::string, Tensor> in = {{"x", cb::test::random_tensor(DType::f32, {2, 3, 4}, {}, rng())},
                                      {"t", cb::test::random_tensor(DType::f32, {5, 4}, {}, rng())},
                                      {"ids", i64s({0, 4, 4, 1, 2, 0}, {2, 3})},
                                      {"s", cb::test::random_tensor(DType::f32, {4}, {}, rng())}};
  std::vector<Tensor> a = run_graph(g, "reference", in), b = run_graph(back, "cpu", in);
  for (size_t i = 0; i < a.size(); ++i) expect_all_near(b[i], a[i], 1e-5, "gradient " + std::to_string(i));
}

// A requested value the loss does not depend on gets zeros.
TEST(AutodiffOps, UnusedParameterGetsZeros) {
  std::shared_ptr<Graph> g = parse_graph(R"(graph g(%x: f32[2,3], %unused: f32[4]) -> (%y) {
    %y = Tanh(%x)
  })");
  infer_types(*g);
  Value* loss = add_weighted_sum_loss(*g, {g->outputs[0]}, {cb::test::random_tensor(DType::f32, {2, 3}, {}, rng())});
  Backward bw = append_backward(*g, loss, {g->find_value("unused")});
  g->outputs = {bw.gradients[0]};
  auto r = run_graph(g, "reference",
                     {{"x", cb::test::random_tensor(DType::f32, {2, 3}, {}, rng())},
                      {"unused", cb::test::random_tensor(DType::f32, {4}, {}, rng())}});
  ASSERT_EQ(r[0].dims(), std::vector<int64_t>({4}));
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(r[0].get_double(i), 0.0);
}

// ---------------------------------------------------------------- codebook

struct CodebookCase {
  int64_t B = 2, T = 3, G = 1, K = 6, Dg = 4, k = 2;
  std::string loss;  // "" = attribute absent (aeloss)
  std::map<std::string, AttrValue> attrs = {};
};

struct CodebookRun {
  Tensor x, codes, scale, bias, w, ids;
  Tensor dx, dcodes, dscale, dbias;
};

CodebookRun run_codebook(const CodebookCase& c, const std::string& backend, const CodebookRun* same_inputs = nullptr) {
  const int64_t D = c.G * c.Dg;
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape::of({c.B, c.T, D})});
  Value* codes = g->add_input("codes", {DType::f32, Shape::of({c.G, c.K, c.Dg})});
  Value* scale = g->add_input("ln_scale", {DType::f32, Shape::of({c.G, c.Dg})});
  Value* bias = g->add_input("ln_bias", {DType::f32, Shape::of({c.G, c.Dg})});
  Value* y = g->add_value("y");
  std::map<std::string, AttrValue> attrs = c.attrs;
  attrs["k"] = c.k;
  if (!c.loss.empty()) attrs["loss"] = c.loss;
  Node* node = g->add_node(kCodebookOp, {x, codes, scale, bias}, {y}, attrs, "cb", kCodebookDomain);
  infer_types(*g);
  CodebookRun r;
  if (same_inputs) {
    r = *same_inputs;
  } else {
    r.x = cb::test::random_tensor(DType::f32, {c.B, c.T, D}, {}, rng());
    r.codes = cb::test::random_tensor(DType::f32, {c.G, c.K, c.Dg}, {}, rng());
    r.scale = cb::test::random_tensor(DType::f32, {c.G, c.Dg}, cb::test::positive(), rng());
    r.bias = cb::test::random_tensor(DType::f32, {c.G, c.Dg}, {}, rng());
    r.w = cb::test::random_tensor(DType::f32, {c.B, c.T, D}, {}, rng());
  }
  Value* loss = add_weighted_sum_loss(*g, {y}, {r.w});
  Backward bw = append_backward(*g, loss, {x, codes, scale, bias});
  EXPECT_TRUE(node->outputs.size() > 1 && node->outputs[1]) << "the ids output was not created";
  g->outputs = {bw.gradients[0], bw.gradients[1], bw.gradients[2], bw.gradients[3], node->outputs[1]};
  verify_graph(*g);
  auto out = run_graph(g, backend, {{"x", r.x}, {"codes", r.codes}, {"ln_scale", r.scale}, {"ln_bias", r.bias}});
  r.dx = out[0];
  r.dcodes = out[1];
  r.dscale = out[2];
  r.dbias = out[3];
  r.ids = out[4];
  return r;
}

// u = LN(x chunk) * scale + bias for token t, member g (double).
std::vector<double> layer_norm_member(const std::vector<double>& x, const std::vector<double>& scale,
                                      const std::vector<double>& bias, int64_t t, int64_t g, int64_t G, int64_t Dg) {
  const double* xg = x.data() + (t * G + g) * Dg;
  double mean = 0, var = 0;
  for (int64_t i = 0; i < Dg; ++i) mean += xg[i];
  mean /= double(Dg);
  for (int64_t i = 0; i < Dg; ++i) var += (xg[i] - mean) * (xg[i] - mean);
  var /= double(Dg);
  std::vector<double> u(static_cast<size_t>(Dg));
  for (int64_t i = 0; i < Dg; ++i)
    u[size_t(i)] = (xg[i] - mean) / std::sqrt(var + 1e-5) * scale[size_t(g * Dg + i)] + bias[size_t(g * Dg + i)];
  return u;
}

std::vector<double> doubles(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.get_double(int64_t(i));
  return v;
}

// The surrogate losses of the loss modes (ir/ops/grad.h) with the ids held fixed:
//   network side  S_u = sum_t g_t . u_t (+ beta sum_t |u_t - sg(y_t)|^2)
//   codebook side S_C = (task) sum_t g_t . y_t(C) (+ recon (1/N) sum_t |y_t(C) - sg(u_t)|^2)
struct Surrogate {
  const CodebookCase& c;
  const CodebookLoss mode;
  std::vector<double> ids, w;

  std::vector<double> y_of(const std::vector<double>& codes, int64_t t, int64_t g) const {
    std::vector<double> y(static_cast<size_t>(c.Dg), 0.0);
    for (int64_t j = 0; j < c.k; ++j) {
      int64_t id = int64_t(ids[size_t((t * c.G + g) * c.k + j)]);
      if (id == -1) continue;
      for (int64_t i = 0; i < c.Dg; ++i) y[size_t(i)] += codes[size_t((g * c.K + id) * c.Dg + i)] / double(c.k);
    }
    return y;
  }

  double network_side(const std::vector<double>& x, const std::vector<double>& scale, const std::vector<double>& bias,
                      const std::vector<double>& codes) const {
    double s = 0;
    for (int64_t t = 0; t < c.B * c.T; ++t)
      for (int64_t g = 0; g < c.G; ++g) {
        std::vector<double> u = layer_norm_member(x, scale, bias, t, g, c.G, c.Dg);
        std::vector<double> y = y_of(codes, t, g);
        for (int64_t i = 0; i < c.Dg; ++i) {
          s += w[size_t((t * c.G + g) * c.Dg + i)] * u[size_t(i)];
          if (mode.commitment()) s += mode.beta * (u[size_t(i)] - y[size_t(i)]) * (u[size_t(i)] - y[size_t(i)]);
        }
      }
    return s;
  }

  double codebook_side(const std::vector<double>& x, const std::vector<double>& scale, const std::vector<double>& bias,
                       const std::vector<double>& codes) const {
    double s = 0;
    const double N = double(c.B * c.T);
    for (int64_t t = 0; t < c.B * c.T; ++t)
      for (int64_t g = 0; g < c.G; ++g) {
        std::vector<double> u = layer_norm_member(x, scale, bias, t, g, c.G, c.Dg);
        std::vector<double> y = y_of(codes, t, g);
        for (int64_t i = 0; i < c.Dg; ++i) {
          if (mode.task_to_codes()) s += w[size_t((t * c.G + g) * c.Dg + i)] * y[size_t(i)];
          if (mode.reconstruction_to_codes()) s += (y[size_t(i)] - u[size_t(i)]) * (y[size_t(i)] - u[size_t(i)]) / N;
        }
      }
    return s;
  }
};

// Central differences of f over every element of v.
template <typename F>
std::vector<double> finite_differences(std::vector<double> v, F&& f) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double v0 = v[i], h = 1e-5;
    v[i] = v0 + h;
    double p = f(v);
    v[i] = v0 - h;
    double m = f(v);
    v[i] = v0;
    d[i] = (p - m) / (2 * h);
  }
  return d;
}

void expect_close(const Tensor& got, const std::vector<double>& want, double tol, const std::string& what) {
  ASSERT_EQ(size_t(got.numel()), want.size()) << what;
  double scale = 0;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(got.get_double(int64_t(i)), want[i], tol * (1 + scale)) << what << "[" << i << "]";
}

void check_codebook_gradients(const CodebookCase& c) {
  SCOPED_TRACE("codebook loss '" + c.loss + "', G = " + std::to_string(c.G) + ", k = " + std::to_string(c.k));
  CodebookRun ref = run_codebook(c, "reference");
  CodebookRun cpu = run_codebook(c, "cpu", &ref);
  ASSERT_TRUE(cpu.ids.bitwise_equal(ref.ids)) << "the backends selected different codes";
  expect_all_near(cpu.dx, ref.dx, 1e-5, "cpu dx");
  expect_all_near(cpu.dcodes, ref.dcodes, 1e-5, "cpu dcodes");
  expect_all_near(cpu.dscale, ref.dscale, 1e-5, "cpu dln_scale");
  expect_all_near(cpu.dbias, ref.dbias, 1e-5, "cpu dln_bias");

  const CodebookLoss mode = parse_codebook_loss(c.loss.empty() ? "aeloss" : c.loss);
  Surrogate s{c, mode, doubles(ref.ids), doubles(ref.w)};
  std::vector<double> x = doubles(ref.x), codes = doubles(ref.codes), scale = doubles(ref.scale),
                      bias = doubles(ref.bias);

  // dcodes: T and R straight from the formulas of ir/ops/grad.h.
  const double N = double(c.B * c.T);
  std::vector<double> T(codes.size(), 0.0), R(codes.size(), 0.0);
  for (int64_t t = 0; t < c.B * c.T; ++t)
    for (int64_t g = 0; g < c.G; ++g) {
      std::vector<double> u = layer_norm_member(x, scale, bias, t, g, c.G, c.Dg);
      std::vector<double> y = s.y_of(codes, t, g);
      for (int64_t j = 0; j < c.k; ++j) {
        int64_t id = int64_t(s.ids[size_t((t * c.G + g) * c.k + j)]);
        if (id == -1) continue;
        for (int64_t i = 0; i < c.Dg; ++i) {
          size_t e = size_t((g * c.K + id) * c.Dg + i);
          T[e] += s.w[size_t((t * c.G + g) * c.Dg + i)] / double(c.k);
          R[e] += 2.0 / (N * double(c.k)) * (y[size_t(i)] - u[size_t(i)]);
        }
      }
    }
  std::vector<double> want_codes(codes.size(), 0.0);
  for (size_t e = 0; e < codes.size(); ++e)
    want_codes[e] = (mode.task_to_codes() ? T[e] : 0.0) + (mode.reconstruction_to_codes() ? R[e] : 0.0);
  expect_close(ref.dcodes, want_codes, 1e-5, "dcodes vs T/R");
  // ... which is also the gradient of the codebook-side surrogate.
  expect_close(
      ref.dcodes,
      finite_differences(codes, [&](const std::vector<double>& v) { return s.codebook_side(x, scale, bias, v); }), 1e-4,
      "dcodes vs FD of the surrogate");

  // dx, dln_scale, dln_bias: finite differences of the network-side surrogate.
  expect_close(
      ref.dx,
      finite_differences(x, [&](const std::vector<double>& v) { return s.network_side(v, scale, bias, codes); }), 1e-4,
      "dx");
  expect_close(
      ref.dscale,
      finite_differences(scale, [&](const std::vector<double>& v) { return s.network_side(x, v, bias, codes); }), 1e-4,
      "dln_scale");
  expect_close(
      ref.dbias,
      finite_differences(bias, [&](const std::vector<double>& v) { return s.network_side(x, scale, v, codes); }), 1e-4,
      "dln_bias");
}

TEST(AutodiffCodebook, LossModes) {
  for (const char* loss : {"", "base", "aeloss", "fullaeloss", "fullaeloss-0.5", "vqvae", "vqvae-0.1"}) {
    CodebookCase c;
    c.loss = loss;
    check_codebook_gradients(c);
  }
}

TEST(AutodiffCodebook, LossModeScalingIsAsSpecified) {
  // vqvae sends only R to the codes: another upstream gradient g leaves
  // dcodes exactly as it was.
  CodebookCase c;
  c.loss = "vqvae";
  CodebookRun a = run_codebook(c, "reference");
  CodebookRun b0 = a;
  b0.w = cb::test::random_tensor(DType::f32, a.w.dims(), {}, rng());
  CodebookRun b = run_codebook(c, "reference", &b0);
  ASSERT_TRUE(a.ids.bitwise_equal(b.ids));
  EXPECT_TRUE(a.dcodes.bitwise_equal(b.dcodes)) << "vqvae: the task gradient reached the codes";
}

TEST(AutodiffCodebook, GroupCodebooks) {
  for (const char* loss : {"aeloss", "fullaeloss-0.3", "vqvae", "base"}) {
    CodebookCase c;
    c.G = 3;
    c.K = 5;
    c.Dg = 3;
    c.k = 2;
    c.loss = loss;
    check_codebook_gradients(c);
  }
}

TEST(AutodiffCodebook, ZeroModeAndForcedSlots) {
  // Mode B: ablated codes and the best rank become -1 (they add nothing);
  // forced slots are just other ids, a forced -1 blocks the slot.
  for (const char* loss : {"aeloss", "fullaeloss", "vqvae-0.5", "base"}) {
    CodebookCase c;
    c.G = 2;
    c.K = 6;
    c.Dg = 4;
    c.k = 3;
    c.loss = loss;
    c.attrs = {{"keep_k_codes", int64_t(0)},
               {"ablate", std::vector<int64_t>{kAll, kAll, 0, 1, 0, 3}},
               {"disable_topk", std::vector<int64_t>{0, 1, 1}},
               {"force", std::vector<int64_t>{0, kAll, 2, 5, 1, -1, 0, 4, 1, 0, 1, -1}}};
    check_codebook_gradients(c);
    CodebookRun r = run_codebook(c, "reference");
    bool any_blocked = false;
    for (int64_t i = 0; i < r.ids.numel(); ++i) any_blocked |= r.ids.get_int(i) == -1;
    EXPECT_TRUE(any_blocked);
    // Forced: member 0, every position, slot 2 = code 5.
    for (int64_t t = 0; t < c.B * c.T; ++t) EXPECT_EQ(r.ids.get_int((t * c.G + 0) * c.k + 2), 5);
  }
  // Mode A (skip and take the next best) with a group and euclidean ranking.
  CodebookCase a;
  a.G = 2;
  a.K = 7;
  a.k = 2;
  a.loss = "fullaeloss";
  a.attrs = {{"metric", std::string("euclidean")},
             {"ablate", std::vector<int64_t>{kAll, kAll, 2}},
             {"disable_topk", std::vector<int64_t>{1, kAll, 1}}};
  check_codebook_gradients(a);
}

TEST(AutodiffCodebook, BadModesAndScoresAreErrors) {
  for (const char* bad : {"aeloss-0.5", "base-1", "vq", "fullaeloss-x"}) {
    auto g = std::make_shared<Graph>();
    Value* x = g->add_input("x", {DType::f32, Shape::of({1, 2, 4})});
    Value* codes = g->add_input("codes", {DType::f32, Shape::of({1, 3, 4})});
    Value* s = g->add_input("s", {DType::f32, Shape::of({1, 4})});
    Value* b = g->add_input("b", {DType::f32, Shape::of({1, 4})});
    Value* y = g->add_value("y");
    g->add_node(kCodebookOp, {x, codes, s, b}, {y}, {{"k", int64_t(1)}, {"loss", std::string(bad)}}, "site_cb",
                kCodebookDomain);
    infer_types(*g);
    Value* loss = add_weighted_sum_loss(*g, {y}, {cb::test::random_tensor(DType::f32, {1, 2, 4}, {}, rng())});
    try {
      append_backward(*g, loss, {codes});
      FAIL() << "loss '" << bad << "' was accepted";
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("site_cb"), std::string::npos) << m;
      EXPECT_NE(m.find(bad), std::string::npos) << m;
    }
  }
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, Shape::of({1, 2, 4})});
  Value* codes = g->add_input("codes", {DType::f32, Shape::of({1, 3, 4})});
  Value* s = g->add_input("s", {DType::f32, Shape::of({1, 4})});
  Value* b = g->add_input("b", {DType::f32, Shape::of({1, 4})});
  Value* y = g->add_value("y");
  Value* ids = g->add_value("ids");
  Value* scores = g->add_value("scores");
  g->add_node(kCodebookOp, {x, codes, s, b}, {y, ids, scores}, {{"k", int64_t(1)}}, "site_cb", kCodebookDomain);
  infer_types(*g);
  Value* loss = add_weighted_sum_loss(*g, {scores}, {cb::test::random_tensor(DType::f32, {1, 2, 1, 1}, {}, rng())});
  try {
    append_backward(*g, loss, {codes});
    FAIL() << "a loss on the scores was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("scores"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------- whole models

std::string model_path(const std::string& name) {
  return std::string(CB_SOURCE_DIR) + "/tests/models/" + name + "/model.onnx";
}

// The model in f64: f32 constants, attribute tensors, Cast targets and input
// types converted, every other type re-inferred.
void convert_to_f64(Graph& g) {
  for (auto& v : g.values())
    if (v->constant && v->constant->dtype() == DType::f32) {
      v->constant = converted(*v->constant, DType::f64);
      v->type.dtype = DType::f64;
    }
  for (auto& n : g.nodes()) {
    if (n->op_type == "Cast" && n->attr_int("to", 0) == int64_t(dtype_to_onnx(DType::f32)))
      n->attrs["to"] = int64_t(dtype_to_onnx(DType::f64));
    for (auto& [name, a] : n->attrs)
      if (Tensor* t = std::get_if<Tensor>(&a); t && t->dtype() == DType::f32) *t = converted(*t, DType::f64);
    for (Value* o : n->outputs)
      if (o) o->type = TensorType{};
  }
  for (Value* in : g.inputs)
    if (in->type.dtype == DType::f32) in->type.dtype = DType::f64;
  infer_types(g);
}

struct ModelSetup {
  std::shared_ptr<Graph> g;
  Value* loss = nullptr;
  std::vector<Value*> params;  // every weight matrix and vector
};

constexpr int64_t kBatch = 2, kSeq = 5;

// The model with loss = mean over tokens of -log softmax(logits)[target].
ModelSetup model_with_loss(const std::string& name, bool f64, const Tensor& targets) {
  ModelSetup s;
  s.g = import_onnx(model_path(name));
  if (f64) convert_to_f64(*s.g);
  Graph& g = *s.g;
  Value* logits = g.outputs.at(0);
  Value* logp = g.add_value("loss/logp");
  g.add_node("LogSoftmax", {logits}, {logp}, {{"axis", int64_t(-1)}});
  Value* picked = g.add_value("loss/picked");
  g.add_node("GatherElements", {logp, g.add_constant("loss/targets", targets)}, {picked}, {{"axis", int64_t(-1)}});
  Value* mean = g.add_value("loss/mean");
  g.add_node("ReduceMean", {picked}, {mean}, {{"keepdims", int64_t(0)}});
  s.loss = g.add_value("loss");
  g.add_node("Neg", {mean}, {s.loss});
  g.outputs = {s.loss};
  infer_types(g);
  for (auto& v : g.values())
    if (v->constant && dtype_is_float(v->constant->dtype()) && v->constant->numel() >= 64 &&
        v->name.rfind("loss/", 0) != 0)
      s.params.push_back(v.get());
  return s;
}

std::map<std::string, Tensor> model_inputs(const Graph& g) {
  std::map<std::string, Tensor> in;
  std::uniform_int_distribution<int64_t> tok(0, 499);
  for (Value* v : g.inputs) {
    std::vector<int64_t> data(size_t(kBatch * kSeq));
    if (v->name.find("input_ids") != std::string::npos) {
      for (auto& d : data) d = tok(rng());
    } else if (v->name.find("attention_mask") != std::string::npos) {
      std::fill(data.begin(), data.end(), 1);
      // The second row is right-padded by one (left padding would leave a
      // query with every key masked, whose softmax is uniform in floating
      // point: finite differences see 0 there, the chain rule does not).
      data[size_t(2 * kSeq - 1)] = 0;
    } else if (v->name.find("position_ids") != std::string::npos) {
      for (int64_t i = 0; i < kBatch * kSeq; ++i) data[size_t(i)] = i % kSeq;
    } else {
      ADD_FAILURE() << "unexpected model input " << v->name;
    }
    in[v->name] = Tensor::from_vector<int64_t>(data, {kBatch, kSeq});
  }
  return in;
}

class AutodiffModels : public ::testing::TestWithParam<const char*> {};

TEST_P(AutodiffModels, CrossEntropyGradientsMatchFiniteDifferences) {
  const std::string name = GetParam();
  std::uniform_int_distribution<int64_t> tok(0, 499);
  std::vector<int64_t> t(size_t(kBatch * kSeq));
  for (auto& v : t) v = tok(rng());
  Tensor targets = Tensor::from_vector<int64_t>(t, {kBatch, kSeq, 1});

  // f64: analytic gradients of every weight.
  ModelSetup m = model_with_loss(name, true, targets);
  ASSERT_GE(m.params.size(), 20u);
  std::map<std::string, Tensor> inputs = model_inputs(*m.g);
  Backward bw = append_backward(*m.g, m.loss, m.params);
  m.g->outputs = {m.loss};
  for (Value* v : bw.gradients) m.g->outputs.push_back(v);
  verify_graph(*m.g);
  std::vector<Tensor> an = run_graph(m.g, "reference", inputs);
  const double loss0 = an[0].get_double(0);
  EXPECT_GT(loss0, 4.0);  // about log(500) for an untrained model

  // Central differences on a few entries of a few weights: the forward graph
  // with one constant changed, recompiled per evaluation.
  ModelSetup f = model_with_loss(name, true, targets);
  ASSERT_EQ(f.params.size(), m.params.size());
  std::vector<size_t> chosen = {
      0, 1, m.params.size() / 3, m.params.size() / 2, m.params.size() - 2, m.params.size() - 1};
  auto backend = make_backend("reference");
  for (size_t p : chosen) {
    Value* param = f.params[p];
    const Tensor original = *param->constant;
    const Tensor& grad = an[1 + p];
    ASSERT_EQ(grad.dims(), original.dims()) << param->name;
    // Entries with a gradient (an embedding row of an unseen token has none).
    std::vector<int64_t> nonzero;
    for (int64_t i = 0; i < grad.numel(); ++i)
      if (grad.get_double(i) != 0) nonzero.push_back(i);
    ASSERT_FALSE(nonzero.empty()) << param->name;
    std::shuffle(nonzero.begin(), nonzero.end(), rng());
    for (size_t s = 0; s < 3 && s < nonzero.size(); ++s) {
      const int64_t i = nonzero[s];
      const double h = 1e-5;
      double l[2];
      for (int side = 0; side < 2; ++side) {
        Tensor changed = original.clone();
        set_value(changed, i, original.get_double(i) + (side ? -h : h));
        param->constant = changed;
        l[side] = Executable::compile(f.g, *backend)->run(inputs)[0].get_double(0);
      }
      param->constant = original;
      double fd = (l[0] - l[1]) / (2 * h);
      EXPECT_NEAR(grad.get_double(i), fd, 1e-7 + 1e-5 * std::fabs(fd))
          << name << ": " << param->name << "[" << i << "]";
    }
  }

  // f32 on both backends against the f64 gradients, after the standard
  // pipeline (folding, CSE, DCE) has run over forward and backward together.
  ModelSetup m32 = model_with_loss(name, false, targets);
  Backward bw32 = append_backward(*m32.g, m32.loss, m32.params);
  m32.g->outputs = {m32.loss};
  for (Value* v : bw32.gradients) m32.g->outputs.push_back(v);
  canonicalize(*m32.g);
  for (const char* b : {"reference", "cpu"}) {
    std::vector<Tensor> r = run_graph(m32.g, b, inputs);
    EXPECT_NEAR(r[0].get_double(0), loss0, 1e-4 * loss0) << b;
    for (size_t p = 0; p < m32.params.size(); ++p) {
      double scale = max_abs(an[1 + p]), err = 0;
      for (int64_t i = 0; i < r[1 + p].numel(); ++i)
        err = std::max(err, std::fabs(r[1 + p].get_double(i) - an[1 + p].get_double(i)));
      EXPECT_LE(err, 1e-4 * scale + 1e-7) << b << ": f32 gradient of " << m32.params[p]->name;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(TinyModels, AutodiffModels,
                         ::testing::Values("gpt2", "gpt-neox", "gpt-neox-sequential", "gpt-neo", "gpt2-dynamo",
                                           "gpt2-optimum"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Codebooks in a model: asking only for the codes' gradients emits no weight
// gradient, no backward below the codebook and only the codes' output of
// CodebookGrad; the backward runs on both backends.
TEST(AutodiffPruning, CodebookOnlyGradientsInModel) {
  for (const char* name : {"gpt2", "gpt-neox"}) {
    SCOPED_TRACE(name);
    std::uniform_int_distribution<int64_t> tok(0, 499);
    std::vector<int64_t> t(size_t(kBatch * kSeq));
    for (auto& v : t) v = tok(rng());
    ModelSetup m = model_with_loss(name, false, Tensor::from_vector<int64_t>(t, {kBatch, kSeq, 1}));
    CodebookConfig cfg;
    cfg.placements = {{Placement::mlp, 16, 2, 1}, {Placement::attn_preproj, 8, 1, kGroupsPerHead}};
    cfg.layers = {1};
    std::vector<InsertedCodebook> cbs = insert_codebooks(*m.g, cfg);
    ASSERT_EQ(cbs.size(), 2u);
    std::vector<Value*> wrt;
    for (auto& c : cbs) wrt.push_back(c.node->inputs[1]);
    Backward bw = append_backward(*m.g, m.loss, wrt);

    std::set<const Value*> codes(wrt.begin(), wrt.end());
    for (Value* p : m.params)
      EXPECT_EQ(bw.value_gradients.count(p), 0u) << "a gradient reached the frozen weight " << p->name;
    int codebook_grads = 0;
    for (Node* n : bw.nodes) {
      EXPECT_FALSE(n->op_type == "Gemm" && n->attr_int("transA", 0) == 1) << "a weight-gradient product " << n->name;
      EXPECT_NE(n->op_type, "GatherGrad") << "an embedding gradient";
      if (n->op_type == "CodebookGrad") {
        // Only the codes' gradient, and dx only where the other codebook's
        // codes lie below: GPT-2's mlp reads the attention output; NeoX's
        // parallel-residual mlp does not.
        ++codebook_grads;
        ASSERT_EQ(n->outputs.size(), 2u) << "LayerNorm gradients computed for " << n->name;
        EXPECT_NE(n->outputs[1], nullptr);
        bool needs_dx = std::string(name) == "gpt2" && n->name.find("layer1.mlp") != std::string::npos;
        EXPECT_EQ(n->outputs[0] != nullptr, needs_dx) << n->name;
      }
      // Nothing of layer 0 is differentiated.
      for (Value* in : n->inputs) {
        bool layer0 = in && in->producer &&
                      (in->producer->name.find("/h.0/") != std::string::npos ||
                       in->producer->name.find("/layers.0/") != std::string::npos);
        if (layer0) {
          EXPECT_EQ(bw.value_gradients.count(in), 0u) << in->name;
        }
      }
    }
    EXPECT_EQ(codebook_grads, 2);

    // The full backward (codes and every weight) is much larger.
    ModelSetup full = model_with_loss(name, false, Tensor::from_vector<int64_t>(t, {kBatch, kSeq, 1}));
    std::vector<InsertedCodebook> cbs2 = insert_codebooks(*full.g, cfg);
    std::vector<Value*> all = full.params;
    for (auto& c : cbs2) all.push_back(c.node->inputs[1]);
    Backward bw_full = append_backward(*full.g, full.loss, all);
    EXPECT_GT(bw_full.nodes.size(), 2 * bw.nodes.size());

    // Both backends give the same codes' gradients (same ids, same kernels).
    m.g->outputs = bw.gradients;
    full.g->outputs = bw_full.gradients;
    std::map<std::string, Tensor> inputs = model_inputs(*m.g);
    std::vector<Tensor> ref = run_graph(m.g, "reference", inputs);
    std::vector<Tensor> cpu = run_graph(m.g, "cpu", inputs);
    std::vector<Tensor> ref_full = run_graph(full.g, "reference", inputs);
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_GT(max_abs(ref[i]), 0.0);
      double scale = max_abs(ref[i]);
      const Tensor& from_full = ref_full[full.params.size() + i];
      for (int64_t e = 0; e < ref[i].numel(); ++e) {
        ASSERT_NEAR(cpu[i].get_double(e), ref[i].get_double(e), 1e-4 * scale) << "codes " << i << "[" << e << "]";
        ASSERT_EQ(from_full.get_double(e), ref[i].get_double(e)) << "pruning changed the codes' gradient";
      }
    }
  }
}

}  // namespace
