// Helpers shared by the test files: random tensors, tensor comparisons, and
// one-node graphs run on a backend. Header-only; each test file is its own
// executable.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "ir/graph.h"
#include "ir/verifier.h"
#include "passes/autodiff.h"
#include "runtime/executable.h"

namespace cb::test {

using Dims = std::vector<int64_t>;
using Attrs = std::map<std::string, AttrValue>;

// ------------------------------------------------------------ random tensors

// How random_tensor draws values.
//   floats: uniform in [lo, hi]; with random_sign that is the magnitude and
//     the sign is a fair coin (so never zero when lo > 0); with normal, a
//     Gaussian of mean lo and standard deviation hi.
//   integers: uniform whole numbers in [ceil(lo), floor(hi)] (or their own
//     range, ints()); the magnitude with random_sign; unsigned types clamp
//     lo to 0 and take no sign.
//   bool: fair coins.
// nonzero redraws zeros. The default, magnitudes in [0.5, 1.5] with random
// signs, is never zero and stays away from the kinks and poles of most ops.
struct Values {
  double lo = 0.5, hi = 1.5;
  bool random_sign = true;
  bool nonzero = false;
  bool normal = false;
  double int_lo = 0, int_hi = -1;  // integers' own range when int_lo <= int_hi

  // The same for floats; integers from [lo, hi] instead.
  Values ints(double lo_int, double hi_int) const {
    Values v = *this;
    v.int_lo = lo_int;
    v.int_hi = hi_int;
    return v;
  }
};
// Uniform in [lo, hi] (any signs the range has).
inline Values uniform(double lo, double hi, bool nonzero = false) { return {lo, hi, false, nonzero, false}; }
// Magnitudes in [lo, hi], random signs.
inline Values magnitudes(double lo, double hi) { return {lo, hi, true, false, false}; }
// Positive values in [lo, hi].
inline Values positive(double lo = 0.5, double hi = 1.5) { return {lo, hi, false, false, false}; }
inline Values normal(double mean, double stddev) { return {mean, stddev, false, false, true}; }

// The generator of tests that do not keep their own.
inline std::mt19937& default_rng() {
  static std::mt19937 r(20240611);
  return r;
}

// Stores v as element i of t, converted to t's dtype.
inline void set_value(Tensor& t, int64_t i, double v) {
  dtype_dispatch(t.dtype(), [&](auto tag) {
    using T = decltype(tag);
    t.data<T>()[i] = from_double<T>(v);
  });
}

inline double random_value(DType dt, const Values& v, std::mt19937& rng) {
  if (dt == DType::boolean) return double(rng() % 2);
  if (v.normal) return std::normal_distribution<double>(v.lo, v.hi)(rng);
  const bool is_unsigned = dtype_is_unsigned_int(dt);
  for (;;) {
    double x;
    if (dtype_is_float(dt)) {
      x = std::uniform_real_distribution<double>(v.lo, v.hi)(rng);
    } else {
      const bool own = v.int_lo <= v.int_hi;
      const double lo = std::max(own ? v.int_lo : v.lo, is_unsigned ? 0.0 : -INFINITY), hi = own ? v.int_hi : v.hi;
      x = double(std::uniform_int_distribution<int64_t>(int64_t(std::ceil(lo)), int64_t(std::floor(hi)))(rng));
    }
    if (v.random_sign && !is_unsigned && rng() % 2) x = -x;
    if (!v.nonzero || x != 0) return x;
  }
}

inline Tensor random_tensor(DType dt, const Dims& dims, const Values& v, std::mt19937& rng) {
  Tensor t = Tensor::empty(dt, dims);
  for (int64_t i = 0; i < t.numel(); ++i) set_value(t, i, random_value(dt, v, rng));
  return t;
}
inline Tensor random_tensor(DType dt, const Dims& dims, const Values& v = {}) {
  return random_tensor(dt, dims, v, default_rng());
}

// A copy of t in dtype dt (values converted one by one).
inline Tensor converted(const Tensor& t, DType dt) {
  if (t.dtype() == dt) return t.clone();
  Tensor r = Tensor::empty(dt, t.dims());
  for (int64_t i = 0; i < t.numel(); ++i) set_value(r, i, t.get_double(i));
  return r;
}

inline Tensor i64s(const std::vector<int64_t>& v) { return Tensor::from_vector<int64_t>(v, {int64_t(v.size())}); }

// ---------------------------------------------------------------- comparisons

// Max |a - b|; infinity when the dtypes or shapes differ or any difference
// is NaN (a NaN anywhere must fail a comparison against a finite bound).
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype() || a.dims() != b.dims()) return INFINITY;
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::fabs(a.get_double(i) - b.get_double(i));
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}
inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::fabs(t.get_double(i)));
  return m;
}

// Max |a - b| / (|b| + floor): relative to the reference b, with `floor` for
// elements near zero; infinity when the shapes differ or on NaN.
inline double max_rel_diff(const Tensor& a, const Tensor& b, double floor = 1e-12) {
  if (a.dims() != b.dims()) return INFINITY;
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::fabs(a.get_double(i) - b.get_double(i)) / (std::fabs(b.get_double(i)) + floor);
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

// Bitwise equality (NaNs compare by bits too); reports the first element
// that differs.
inline void expect_bitwise_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  ASSERT_EQ(got.dims(), want.dims()) << what;
  if (got.bitwise_equal(want)) return;
  const size_t size = dtype_size(got.dtype());
  const auto* g = static_cast<const uint8_t*>(got.raw());
  const auto* w = static_cast<const uint8_t*>(want.raw());
  for (int64_t i = 0; i < got.numel(); ++i)
    if (std::memcmp(g + size_t(i) * size, w + size_t(i) * size, size) != 0) {
      ADD_FAILURE() << what << ": element " << i << " is " << got.get_double(i) << ", want " << want.get_double(i);
      return;
    }
}

// How close a result must be to the reference, element by element:
// |got - want| <= atol + rtol * (|want| + (relative_to_rms ? rms(want) : 0)).
// The rms floor makes the bound relative to the tensor's scale for elements
// that cancel to near zero. All zero: bitwise equal.
struct Tolerance {
  double rtol = 0, atol = 0;
  bool relative_to_rms = false;
  bool exact() const { return rtol == 0 && atol == 0; }
};
// rtol relative to |want| + rms(want).
inline Tolerance near_rms(double rtol) { return {rtol, 0, true}; }
inline Tolerance abs_rel(double atol, double rtol) { return {rtol, atol, false}; }

// Every element within `tol` of the reference (NaN must meet NaN); reports
// the first few elements that are not.
inline void expect_tensors_near(const Tensor& got, const Tensor& want, const Tolerance& tol, const std::string& what) {
  ASSERT_EQ(got.dims(), want.dims()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  double rms = 0;
  if (tol.relative_to_rms) {
    double sq = 0;
    for (int64_t i = 0; i < want.numel(); ++i) sq += want.get_double(i) * want.get_double(i);
    rms = want.numel() ? std::sqrt(sq / double(want.numel())) : 0.0;
  }
  int bad = 0;
  for (int64_t i = 0; i < want.numel() && bad < 5; ++i) {
    const double x = got.get_double(i), y = want.get_double(i);
    const bool ok =
        std::isnan(y) ? std::isnan(x) : (x == y || std::fabs(x - y) <= tol.atol + tol.rtol * (std::fabs(y) + rms));
    if (!ok) {
      ADD_FAILURE() << what << ": element " << i << " is " << x << ", want " << y << " (rms " << rms << ")";
      ++bad;
    }
  }
}

// Bitwise equal when tol is exact, else expect_tensors_near.
inline void expect_matches(const Tensor& got, const Tensor& want, const Tolerance& tol, const std::string& what) {
  if (tol.exact())
    expect_bitwise_equal(got, want, what);
  else
    expect_tensors_near(got, want, tol, what);
}

// ------------------------------------------------------------ one-node graphs

// An input of a one-node graph: fed at run time, a graph constant (so shape
// inference sees its value), or omitted (nullopt tensor).
struct NodeInput {
  std::optional<Tensor> tensor;
  bool constant = false;
  NodeInput() = default;
  NodeInput(Tensor t, bool is_constant = false) : tensor(std::move(t)), constant(is_constant) {}
  NodeInput(std::optional<Tensor> t) : tensor(std::move(t)) {}
};
inline NodeInput constant_input(Tensor t) { return NodeInput(std::move(t), true); }

struct OneNode {
  std::shared_ptr<Graph> graph;
  std::map<std::string, Tensor> feeds;
};

// A graph of one `op` node named "node" over `inputs` (graph inputs "in<i>"),
// with output i present where outputs[i] (the present ones become the graph's
// outputs, in order); types inferred.
inline OneNode one_node_graph(const std::string& op, const std::string& domain, const std::vector<NodeInput>& inputs,
                              const Attrs& attrs, const std::vector<bool>& outputs = {true}) {
  OneNode r{std::make_shared<Graph>(), {}};
  Graph& g = *r.graph;
  std::vector<Value*> ins;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i].tensor) {
      ins.push_back(nullptr);
      continue;
    }
    const Tensor& t = *inputs[i].tensor;
    const std::string name = std::string("in").append(std::to_string(i));
    if (inputs[i].constant) {
      ins.push_back(g.add_constant(name, t));
    } else {
      ins.push_back(g.add_input(name, {t.dtype(), Shape::of(t.dims())}));
      r.feeds[name] = t;
    }
  }
  std::vector<Value*> outs;
  for (size_t i = 0; i < outputs.size(); ++i) {
    outs.push_back(outputs[i] ? g.add_value(std::string("out").append(std::to_string(i))) : nullptr);
    if (outputs[i]) g.outputs.push_back(outs.back());
  }
  g.add_node(op, ins, outs, attrs, "node", domain);
  infer_types(g);
  return r;
}

// Runs a one-node graph on `backend` with `threads` threads; returns the
// present outputs in order.
inline std::vector<Tensor> run_node(const std::string& backend, const std::string& op, const std::string& domain,
                                    const std::vector<NodeInput>& inputs, const Attrs& attrs = {},
                                    const std::vector<bool>& outputs = {true}, int threads = 1) {
  OneNode n = one_node_graph(op, domain, inputs, attrs, outputs);
  CompileOptions opts;
  opts.num_threads = threads;
  return Executable::compile(n.graph, *make_backend(backend), opts)->run(n.feeds);
}

// Runs a graph on `backend` (a fresh backend and executable each call).
inline std::vector<Tensor> run_graph(std::shared_ptr<Graph> g, const std::string& backend,
                                     const std::map<std::string, Tensor>& inputs, int threads = 1) {
  CompileOptions opts;
  opts.num_threads = threads;
  return Executable::compile(std::move(g), *make_backend(backend), opts)->run(inputs);
}

// A short description of a node's inputs for failure messages: "f32[2,3] i64[4]".
inline std::string describe_inputs(const std::vector<NodeInput>& inputs) {
  std::string s;
  for (const NodeInput& in : inputs) {
    if (!s.empty()) s += ' ';
    if (!in.tensor) {
      s += "(omitted)";
      continue;
    }
    s += dtype_name(in.tensor->dtype());
    s += dims_str(in.tensor->dims());
  }
  return s;
}

// ------------------------------------------------- finite-difference gradients

// loss = sum_i ReduceSum(weights[i] * outputs[i]), appended to g: a random
// projection of the outputs, so every output element reaches the gradient.
inline Value* add_weighted_sum_loss(Graph& g, const std::vector<Value*>& outputs, const std::vector<Tensor>& weights) {
  Value* loss = nullptr;
  for (size_t i = 0; i < outputs.size(); ++i) {
    Value* w = g.add_constant("loss_weight", weights[i]);
    Value* m = g.add_value("loss_product");
    g.add_node("Mul", {outputs[i], w}, {m});
    Value* s = g.add_value("loss_sum");
    g.add_node("ReduceSum", {m}, {s}, {{"keepdims", int64_t(0)}});
    if (!loss) {
      loss = s;
    } else {
      Value* a = g.add_value("loss_total");
      g.add_node("Add", {loss, s}, {a});
      loss = a;
    }
  }
  infer_types(g);
  return loss;
}

// Up to `n` distinct element indices of a tensor with `numel` elements.
inline std::vector<int64_t> sample_indices(int64_t numel, size_t n, std::mt19937& rng) {
  std::vector<int64_t> all(static_cast<size_t>(numel));
  for (int64_t i = 0; i < numel; ++i) all[size_t(i)] = i;
  std::shuffle(all.begin(), all.end(), rng);
  if (all.size() > n) all.resize(n);
  return all;
}

// The forward graph with its float values in the given dtype; its float
// outputs enter the loss.
using ForwardBuilder = std::function<std::shared_ptr<Graph>(DType)>;

struct GradientCheck {
  std::vector<std::string> wrt;                // graph inputs to differentiate by
  double fd_step = 1e-6, fd_tolerance = 1e-6;  // central differences: step, relative tolerance
  DType dtype = DType::f64;                    // of the finite-difference check
  // After the check in f64: the same backward in f32 on these backends
  // against the f64 gradients.
  std::vector<std::string> f32_backends;
};

// The forward in dt plus the weighted-sum loss and append_backward; the
// graph's outputs become {loss, gradients...}.
inline std::shared_ptr<Graph> build_backward(const ForwardBuilder& forward, DType dt,
                                             const std::vector<Tensor>& weights, const std::vector<std::string>& wrt) {
  std::shared_ptr<Graph> g = forward(dt);
  infer_types(*g);
  std::vector<Value*> outs;
  for (Value* v : g->outputs)
    if (dtype_is_float(v->type.dtype)) outs.push_back(v);
  std::vector<Tensor> w;
  for (size_t i = 0; i < outs.size(); ++i) w.push_back(converted(weights[i], outs[i]->type.dtype));
  Value* loss = add_weighted_sum_loss(*g, outs, w);
  std::vector<Value*> params;
  for (const std::string& n : wrt) {
    Value* x = g->find_value(n);
    EXPECT_TRUE(x) << "no value '" << n << "'";
    params.push_back(x);
  }
  Backward bw = append_backward(*g, loss, params);
  g->outputs = {loss};
  for (Value* v : bw.gradients) g->outputs.push_back(v);
  verify_graph(*g);
  return g;
}

// Checks the gradients append_backward builds for a random projection of the
// forward's float outputs against double-sided finite differences (24
// sampled elements of each input in `check.wrt`) on the reference backend.
// `inputs` are the feeds in check.dtype (float ones are converted for f32).
inline void check_gradients(const ForwardBuilder& forward, const std::map<std::string, Tensor>& inputs,
                            const GradientCheck& check, std::mt19937& rng) {
  // Loss weights shaped like the float outputs of a forward run.
  std::vector<Tensor> outs = run_graph(forward(check.dtype), "reference", inputs);
  std::vector<Tensor> weights;
  for (size_t i = 0; i < outs.size(); ++i)
    if (dtype_is_float(outs[i].dtype())) weights.push_back(random_tensor(DType::f64, outs[i].dims(), {}, rng));

  std::shared_ptr<Graph> g = build_backward(forward, check.dtype, weights, check.wrt);
  auto exe = Executable::compile(g, *make_backend("reference"));
  std::vector<Tensor> res = exe->run(inputs);
  for (size_t w = 0; w < check.wrt.size(); ++w) {
    const Tensor& grad = res[1 + w];
    const Tensor& x = inputs.at(check.wrt[w]);
    ASSERT_EQ(grad.dims(), x.dims()) << "gradient of " << check.wrt[w];
    for (int64_t i : sample_indices(x.numel(), 24, rng)) {
      const double x0 = x.get_double(i), h = check.fd_step;
      std::map<std::string, Tensor> in = inputs;
      Tensor xp = x.clone();
      set_value(xp, i, x0 + h);
      in[check.wrt[w]] = xp;
      const double lp = exe->run(in)[0].get_double(0);
      Tensor xm = x.clone();
      set_value(xm, i, x0 - h);
      in[check.wrt[w]] = xm;
      const double lm = exe->run(in)[0].get_double(0);
      const double fd = (lp - lm) / (2 * h), an = grad.get_double(i);
      EXPECT_NEAR(an, fd, check.fd_tolerance * (1 + std::fabs(fd))) << "d loss / d " << check.wrt[w] << "[" << i << "]";
    }
  }
  if (check.f32_backends.empty() || check.dtype != DType::f64) return;

  // The backward in f32 against the f64 gradients.
  std::shared_ptr<Graph> g32 = build_backward(forward, DType::f32, weights, check.wrt);
  std::map<std::string, Tensor> inputs32;
  for (auto& [name, t] : inputs) inputs32[name] = dtype_is_float(t.dtype()) ? converted(t, DType::f32) : t;
  for (const std::string& backend : check.f32_backends) {
    std::vector<Tensor> r32 = run_graph(g32, backend, inputs32);
    for (size_t w = 0; w < check.wrt.size(); ++w) {
      const Tensor& g64 = res[1 + w];
      const Tensor& gf = r32[1 + w];
      ASSERT_EQ(gf.dims(), g64.dims());
      const double tol = 1e-4 * (max_abs(g64) + 1e-3);
      for (int64_t i = 0; i < g64.numel(); ++i)
        ASSERT_NEAR(gf.get_double(i), g64.get_double(i), tol)
            << backend << ": f32 gradient of " << check.wrt[w] << "[" << i << "]";
    }
  }
}

// The backends this build has and this machine can run ("cuda" without a
// device is left out).
inline std::vector<std::string> available_backends() {
  std::vector<std::string> v;
  for (const std::string& name : backend_names()) {
    try {
      if (make_backend(name)) v.push_back(name);
    } catch (const std::exception&) {
    }
  }
  return v;
}

}  // namespace cb::test
