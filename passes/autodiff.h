// Reverse-mode automatic differentiation over the IR. Given a scalar loss and
// the values to differentiate it by (parameters: constants or graph inputs;
// any float value works), append_backward appends ordinary IR nodes that
// compute d loss / d value, so the backward runs through the same runtime,
// backends and passes as the forward.
//
// Algorithm:
//   1. active values: float values that depend on a requested value (forward
//      sweep) and that the loss depends on (backward sweep). Only nodes with
//      an active input and an active output get gradient work, and a rule is
//      asked only for the gradients of active inputs, so frozen parameters
//      (not requested) cost nothing: no dW for a weight nobody asked for, no
//      backward through layers below the lowest requested parameter.
//   2. seed d loss / d loss = 1, then visit the active nodes in reverse
//      order; the gradient of each output is the sum (Add, or Sum for three
//      or more) of the contributions of its uses, and the node's rule
//      (passes/gradients/*.cpp, table in gradient_rule.h) emits the
//      gradients of its inputs. Broadcasting ops reduce their gradients back
//      to the input shapes (ReduceSum over broadcast axes).
//   3. a requested value the loss does not depend on gets zeros.
// Integer and bool values never carry gradients (indices, masks, shapes,
// codebook ids). Ops without a rule on an active path are an error naming the
// node. Codebook nodes: the rule makes the node's ids output exist and feeds
// it to codebook.grad.CodebookGrad (ir/ops/grad.h: the loss modes).
//
// The new nodes come after every forward node (names start with "grad/"),
// with types inferred. Make the gradients graph outputs before running
// canonicalize(), or dead-code elimination removes them.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "passes/pass.h"
#include "support/error.h"

namespace cb {

struct Backward {
  // d loss / d wrt[i], same dtype and shape as wrt[i], in the order asked.
  std::vector<Value*> gradients;
  // The gradient of every value a gradient reached (inputs of visited nodes
  // included), for inspection and tests.
  std::map<const Value*, Value*> value_gradients;
  // The appended nodes, in order.
  std::vector<Node*> nodes;
};

// Appends the backward of `loss` (float, one element) with respect to `wrt`
// to `g` (whose types are re-inferred first). Throws cb::Error naming the node
// when an op on a path from wrt to the loss has no gradient rule or its rule
// rejects the node (e.g. a codebook's scores output feeding the loss).
Backward append_backward(Graph& g, Value* loss, const std::vector<Value*>& wrt);

// append_backward as a pass ("autodiff"): the loss and the values to
// differentiate by are given as values of the graph it will run on, or by name
// (resolved when it runs). backward() holds the result once it ran.
struct AutodiffOptions {
  std::string loss;
  std::vector<std::string> wrt;
};

class AutodiffPass : public Pass {
 public:
  AutodiffPass(Value* loss, std::vector<Value*> wrt) : loss_(loss), wrt_(std::move(wrt)) {}
  explicit AutodiffPass(AutodiffOptions by_name) : by_name_(std::move(by_name)) {}
  std::string name() const override { return "autodiff"; }
  bool run(Graph& g) override;
  const Backward& backward() const { return backward_; }
  // d loss / d wrt[i], in the order asked.
  const std::vector<Value*>& gradients() const { return backward_.gradients; }

 private:
  Value* loss_ = nullptr;
  std::vector<Value*> wrt_;
  AutodiffOptions by_name_;
  Backward backward_;
};

inline bool AutodiffPass::run(Graph& g) {
  if (!loss_) {
    auto find = [&](const std::string& name) {
      Value* v = g.find_value(name);
      CB_CHECK(v, "autodiff: the graph has no value '" << name << "'");
      return v;
    };
    loss_ = find(by_name_.loss);
    for (const std::string& w : by_name_.wrt) wrt_.push_back(find(w));
  }
  backward_ = append_backward(g, loss_, wrt_);
  return !backward_.nodes.empty();
}

// The op types with a gradient rule ("Add", ..., "codebook.Codebook").
std::vector<std::string> differentiable_ops();

}  // namespace cb
