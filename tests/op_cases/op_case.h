// One op test case of the harness (tests/test_op_harness.cpp), declared once
// in the op family's file here (elementwise.cpp, tensor.cpp, ...). See
// README.md in this folder for how to add one.
#pragma once
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace cb::test {

// One input of the case's node.
struct InputSpec {
  DType dtype = DType::f32;
  Dims dims;
  Values values;                              // how random values are drawn
  std::optional<Tensor> fixed;                // this value instead of a random one (indices, shapes, masks)
  std::function<Tensor(std::mt19937&)> make;  // or values drawn this way (dtype and dims must agree)
  bool constant = false;                      // a graph constant: shape inference sees its value
  bool omitted = false;                       // an omitted optional input
  bool needs_grad = true;                     // differentiated by the gradient check (float, not constant)
};

struct OpCase {
  std::string name;  // test name: letters, digits and '_', unique
  std::string op, domain;
  Attrs attrs;
  std::vector<InputSpec> inputs;
  std::vector<bool> outputs = {true};  // false: output omitted

  // Other backends against the reference: bitwise equal unless a tolerance
  // is given (test_util.h's Tolerance).
  Tolerance tolerance;
  std::map<std::string, Tolerance> backend_tolerance;  // a backend's own
  // The cpu results with 1, 2 and 3 threads equal each other bit for bit.
  bool same_for_any_thread_count = true;

  // The finite-difference check of the gradient (the op must have a rule).
  bool grad = false;
  DType grad_dtype = DType::f64;  // float inputs are converted to it
  std::vector<bool> in_loss;      // the outputs the loss projects (empty: every float output)
  double fd_step = 1e-6, fd_tolerance = 1e-6;

  // Declaration helpers (chainable).
  OpCase(std::string case_name, std::string op_type, std::string op_domain = "")
      : name(std::move(case_name)), op(std::move(op_type)), domain(std::move(op_domain)) {}
  OpCase& attr(const std::string& key, AttrValue v) {
    attrs[key] = std::move(v);
    return *this;
  }
  // A random input.
  OpCase& in(DType dt, Dims dims, Values v = {}) {
    InputSpec s;
    s.dtype = dt;
    s.dims = std::move(dims);
    s.values = v;
    inputs.push_back(std::move(s));
    return *this;
  }
  OpCase& in(Dims dims, Values v = {}) { return in(DType::f32, std::move(dims), v); }
  // A random input drawn by `make` (values that depend on each other).
  OpCase& in_made(DType dt, Dims dims, std::function<Tensor(std::mt19937&)> make) {
    in(dt, std::move(dims));
    inputs.back().make = std::move(make);
    return *this;
  }
  // A given input: fed at run time, or a graph constant.
  OpCase& given(Tensor t) {
    InputSpec s;
    s.dtype = t.dtype();
    s.dims = t.dims();
    s.fixed = std::move(t);
    s.needs_grad = false;
    inputs.push_back(std::move(s));
    return *this;
  }
  OpCase& constant(Tensor t) {
    given(std::move(t));
    inputs.back().constant = true;
    return *this;
  }
  // A random graph constant.
  OpCase& constant_in(DType dt, Dims dims, Values v = {}) {
    in(dt, std::move(dims), v);
    inputs.back().constant = true;
    return *this;
  }
  OpCase& omitted() {
    InputSpec s;
    s.omitted = true;
    inputs.push_back(std::move(s));
    return *this;
  }
  // The last input is not differentiated by the gradient check.
  OpCase& no_grad() {
    inputs.back().needs_grad = false;
    return *this;
  }
  OpCase& outs(std::vector<bool> present) {
    outputs = std::move(present);
    return *this;
  }
  OpCase& tol(Tolerance t) {
    tolerance = t;
    return *this;
  }
  OpCase& tol(const std::string& backend, Tolerance t) {
    backend_tolerance[backend] = t;
    return *this;
  }
  OpCase& threads_may_differ() {
    same_for_any_thread_count = false;
    return *this;
  }
  OpCase& gradient(double step = 1e-6, double tolerance = 1e-6) {
    grad = true;
    fd_step = step;
    fd_tolerance = tolerance;
    return *this;
  }
  // Only these outputs enter the gradient check's loss (the others get no gradient).
  OpCase& loss_from(std::vector<bool> outputs_in_loss) {
    in_loss = std::move(outputs_in_loss);
    return *this;
  }
  OpCase& gradient_in(DType dt, double step, double tolerance) {
    gradient(step, tolerance);
    grad_dtype = dt;
    return *this;
  }
};

// gtest prints a case by its name.
inline void PrintTo(const OpCase& c, std::ostream* os) { *os << c.name; }

// "3x5x7" ("s" for a scalar, "0x5" for an empty tensor): for case names.
inline std::string dims_name(const Dims& dims) {
  if (dims.empty()) return "s";
  std::string s;
  for (int64_t d : dims) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

// Every case, in registration order (function-local: filled during static
// initialisation, read by gtest after it).
std::vector<OpCase>& op_cases();

struct RegisterOpCases {
  explicit RegisterOpCases(std::vector<OpCase> cases) {
    for (OpCase& c : cases) op_cases().push_back(std::move(c));
  }
};

}  // namespace cb::test
