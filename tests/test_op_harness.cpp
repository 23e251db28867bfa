// The op test harness, in the spirit of ggml's test-backend-ops. Every op
// case (tests/op_cases/*.cpp, declared once; how to add one:
// tests/op_cases/README.md) runs as its own tests:
//   OpHarness/Backends.MatchReference/<case>: every backend other than the
//     reference (cpu with 1, 2 and 3 threads; cuda when built and a GPU is
//     present) against the reference backend on random inputs, bitwise or
//     within the case's tolerance; the cpu results must not depend on the
//     thread count;
//   OpHarness/Gradients.MatchFiniteDifferences/<case>: for cases with the
//     gradient check on, the gradients append_backward builds for a random
//     projection sum(out * R) of the outputs, against double-sided finite
//     differences on the reference backend (in f64, then the same backward
//     in f32 on every backend against the f64 gradients).
// Coverage tests list what is missing: an op without a reference kernel or
// without a case, a differentiable op without a gradient-checked case, an op
// with its own cpu kernel without a case.
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <sstream>

#include "backends/cpu/cpu_backend.h"
#include "backends/reference/reference_backend.h"
#include "ir/op_registry.h"
#include "passes/autodiff.h"
#include "tests/op_cases/op_case.h"

namespace cb::test {

std::vector<OpCase>& op_cases() {
  static std::vector<OpCase> cases;
  return cases;
}

namespace {

std::string op_key(const std::string& domain, const std::string& op) { return domain.empty() ? op : domain + "." + op; }

// A seed per case, from its name: a case's inputs do not depend on which
// other cases run.
std::mt19937 case_rng(const OpCase& c) { return std::mt19937(uint32_t(std::hash<std::string>()(c.name))); }

// The case's inputs as node inputs, float ones (random or given) in `float_type`
// when set; random values from `rng`.
std::vector<NodeInput> make_inputs(const OpCase& c, std::mt19937& rng, std::optional<DType> float_type = {}) {
  std::vector<NodeInput> v;
  for (const InputSpec& s : c.inputs) {
    if (s.omitted) {
      v.emplace_back(std::nullopt);
      continue;
    }
    Tensor t = s.fixed ? *s.fixed : s.make ? s.make(rng) : random_tensor(s.dtype, s.dims, s.values, rng);
    if (float_type && dtype_is_float(t.dtype())) t = converted(t, *float_type);
    v.emplace_back(std::move(t), s.constant);
  }
  return v;
}

std::string case_name(const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; }

// The backends this process can run (asked once: creating cuda's probes the device).
const std::vector<std::string>& backends() {
  static const std::vector<std::string> names = available_backends();
  return names;
}

class Backends : public ::testing::TestWithParam<OpCase> {};

TEST_P(Backends, MatchReference) {
  const OpCase& c = GetParam();
  std::mt19937 rng = case_rng(c);
  const std::vector<NodeInput> inputs = make_inputs(c, rng);
  SCOPED_TRACE(c.op + " " + describe_inputs(inputs));
  const std::vector<Tensor> want = run_node("reference", c.op, c.domain, inputs, c.attrs, c.outputs, 1);
  OneNode node = one_node_graph(c.op, c.domain, inputs, c.attrs, c.outputs);
  int compared = 0;
  for (const std::string& backend : backends()) {
    if (backend == "reference") continue;
    // A backend without a kernel for the op (cuda covers few) is not tested on it.
    if (!make_backend(backend)->create_kernel(*node.graph->nodes().front())) continue;
    const Tolerance tol = c.backend_tolerance.count(backend) ? c.backend_tolerance.at(backend) : c.tolerance;
    const std::vector<int> thread_counts = backend == "cpu" ? std::vector<int>{1, 2, 3} : std::vector<int>{1};
    std::vector<Tensor> first;
    for (int threads : thread_counts) {
      const std::vector<Tensor> got = run_node(backend, c.op, c.domain, inputs, c.attrs, c.outputs, threads);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        const std::string what =
            backend + " output " + std::to_string(i) + " on " + std::to_string(threads) + " threads";
        expect_matches(got[i], want[i], tol, what + " vs the reference");
        if (!first.empty() && c.same_for_any_thread_count)
          expect_bitwise_equal(got[i], first[i], what + " vs 1 thread");
      }
      if (first.empty()) first = got;
      ++compared;
    }
  }
  EXPECT_GT(compared, 0) << "no backend besides the reference ran";
}

INSTANTIATE_TEST_SUITE_P(OpHarness, Backends, ::testing::ValuesIn(op_cases()), case_name);

std::vector<OpCase> gradient_cases() {
  std::vector<OpCase> v;
  for (const OpCase& c : op_cases())
    if (c.grad) v.push_back(c);
  return v;
}

class Gradients : public ::testing::TestWithParam<OpCase> {};

TEST_P(Gradients, MatchFiniteDifferences) {
  const OpCase& c = GetParam();
  std::mt19937 rng = case_rng(c);
  const std::vector<NodeInput> inputs = make_inputs(c, rng, c.grad_dtype);
  SCOPED_TRACE(c.op + " " + describe_inputs(inputs));
  GradientCheck check;
  check.dtype = c.grad_dtype;
  check.fd_step = c.fd_step;
  check.fd_tolerance = c.fd_tolerance;
  check.f32_backends = backends();
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& s = c.inputs[i];
    if (!s.omitted && !s.constant && s.needs_grad && dtype_is_float(s.dtype))
      check.wrt.push_back("in" + std::to_string(i));
  }
  ASSERT_FALSE(check.wrt.empty()) << "no float input to differentiate by";
  const ForwardBuilder forward = [&](DType dt) {
    std::vector<NodeInput> in = inputs;
    for (NodeInput& x : in)
      if (x.tensor && dtype_is_float(x.tensor->dtype())) x.tensor = converted(*x.tensor, dt);
    std::shared_ptr<Graph> g = one_node_graph(c.op, c.domain, in, c.attrs, c.outputs).graph;
    if (!c.in_loss.empty()) {
      std::vector<Value*> outs;
      for (size_t i = 0; i < g->outputs.size(); ++i)
        if (c.in_loss.at(i)) outs.push_back(g->outputs[i]);
      g->outputs = outs;
    }
    return g;
  };
  check_gradients(forward, one_node_graph(c.op, c.domain, inputs, c.attrs, c.outputs).feeds, check, rng);
}

INSTANTIATE_TEST_SUITE_P(OpHarness, Gradients, ::testing::ValuesIn(gradient_cases()), case_name);

// ------------------------------------------------------------------ coverage

// Ops that cannot have a harness case, and why.
const std::set<std::string> kNoCase = {
    "If",    // control flow: subgraph attributes (tests/test_control_flow.cpp)
    "Loop",  // control flow: subgraph attributes (tests/test_control_flow.cpp)
};

// Differentiable ops whose gradient the finite-difference check cannot test.
const std::set<std::string> kNoGradientCheck = {
    // Its gradient is the surrogate of spec §2 (straight-through, ids held
    // fixed), not the derivative of the piecewise-constant forward; checked
    // by tests/test_autodiff.cpp's AutodiffCodebook tests.
    "codebook.Codebook",
};

std::set<std::string> ops_with_cases(bool with_gradient) {
  std::set<std::string> s;
  for (const OpCase& c : op_cases())
    if (!with_gradient || c.grad) s.insert(op_key(c.domain, c.op));
  return s;
}

std::string join(const std::vector<std::string>& v) {
  std::ostringstream o;
  for (const std::string& s : v) o << "\n  " << s;
  return o.str();
}

TEST(OpHarnessCoverage, CaseNamesAreUnique) {
  std::set<std::string> seen;
  std::vector<std::string> repeated;
  for (const OpCase& c : op_cases())
    if (!seen.insert(c.name).second) repeated.push_back(c.name);
  EXPECT_TRUE(repeated.empty()) << "case names used more than once:" << join(repeated);
}

// Ops the runtime runs itself (runtime/control_flow.cpp), on any backend.
const std::set<std::string> kRunByTheRuntime = {"If", "Loop"};

TEST(OpHarnessCoverage, EveryOpHasAReferenceKernel) {
  std::vector<std::string> missing;
  for (const OpSchema* s : OpRegistry::global().all())
    if (!reference_kernels().find(s->domain, s->name) && !kRunByTheRuntime.count(op_key(s->domain, s->name)))
      missing.push_back(op_key(s->domain, s->name));
  EXPECT_TRUE(missing.empty()) << "ops without a reference kernel:" << join(missing);
}

TEST(OpHarnessCoverage, EveryOpHasACase) {
  const std::set<std::string> covered = ops_with_cases(false);
  std::vector<std::string> missing, stale;
  for (const OpSchema* s : OpRegistry::global().all()) {
    const std::string key = op_key(s->domain, s->name);
    if (!covered.count(key) && !kNoCase.count(key)) missing.push_back(key);
    if (covered.count(key) && kNoCase.count(key)) stale.push_back(key);
  }
  EXPECT_TRUE(missing.empty()) << "ops without a case in tests/op_cases:" << join(missing);
  EXPECT_TRUE(stale.empty()) << "ops with a case that are still in kNoCase:" << join(stale);
}

TEST(OpHarnessCoverage, EveryDifferentiableOpHasAGradientCheckedCase) {
  const std::set<std::string> checked = ops_with_cases(true);
  std::vector<std::string> missing;
  for (const std::string& op : differentiable_ops())
    if (!checked.count(op) && !kNoGradientCheck.count(op)) missing.push_back(op);
  EXPECT_TRUE(missing.empty()) << "differentiable ops without a case with .gradient():" << join(missing);
}

// The cpu backend's own kernels (the others run the reference kernel).
TEST(OpHarnessCoverage, EveryOpWithItsOwnCpuKernelHasACase) {
  const std::set<std::string> covered = ops_with_cases(false);
  std::vector<std::string> missing;
  for (const std::string& op : cpu_kernels().op_names())
    if (!covered.count(op)) missing.push_back(op);
  EXPECT_TRUE(missing.empty()) << "ops with their own cpu kernel but no case:" << join(missing);
}

}  // namespace
}  // namespace cb::test
