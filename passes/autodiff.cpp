// Reverse-mode automatic differentiation; the algorithm is described in
// passes/autodiff.h, the per-op rules live in passes/gradients/.
#include "passes/autodiff.h"

#include <functional>
#include <set>

#include "ir/verifier.h"
#include "passes/gradients/gradient_rule.h"
#include "support/error.h"

namespace cb {
namespace {

bool is_float_value(const Value* v) { return v && dtype_is_float(v->type.dtype); }

// Static shapes that contradict each other (a rule's bug, reported clearly).
bool shapes_conflict(const Shape& a, const Shape& b) {
  if (!a.rank_known || !b.rank_known) return false;
  if (a.rank() != b.rank()) return true;
  for (size_t i = 0; i < a.rank(); ++i)
    if (a[i].is_static() && b[i].is_static() && a[i].value != b[i].value) return true;
  return false;
}

// Contributions to each value's gradient, summed on first read.
class GradientSums {
 public:
  explicit GradientSums(GradBuilder& b) : b_(b) {}

  void add(const Value* v, Value* grad) { parts_[v].push_back(grad); }
  bool has(const Value* v) const { return parts_.count(v) != 0; }

  Value* total(const Value* v) {
    auto it = parts_.find(v);
    if (it == parts_.end()) return nullptr;
    std::vector<Value*>& p = it->second;
    if (p.size() == 2)
      p = {b_.add(p[0], p[1])};
    else if (p.size() > 2)
      p = {b_.op("Sum", p)};
    return p[0];
  }

 private:
  GradBuilder& b_;
  std::map<const Value*, std::vector<Value*>> parts_;
};

// Visits the nodes in reverse order; every node with an active input and a
// gradient reaching an output gets its rule's gradients emitted.
void reverse_sweep(const std::vector<Node*>& order, const std::function<bool(const Value*)>& active, GradBuilder& b,
                   GradientSums& sums, const Value& loss) {
  const GradientTable& rules = gradient_rules();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node& n = **it;
    std::vector<bool> wants(n.inputs.size(), false);
    bool any_in = false;
    for (size_t i = 0; i < n.inputs.size(); ++i) any_in |= (wants[i] = active(n.inputs[i]));
    if (!any_in) continue;
    b.set_scope_for(n);
    std::vector<Value*> dy(n.outputs.size(), nullptr);
    bool any_out = false;
    for (size_t i = 0; i < n.outputs.size(); ++i)
      if (active(n.outputs[i]) && sums.has(n.outputs[i])) {
        dy[i] = sums.total(n.outputs[i]);
        any_out = true;
      }
    if (!any_out) continue;
    const GradientRule rule = rules.find(n.domain, n.op_type);
    CB_CHECK(rule, "autodiff: no gradient rule for "
                       << n.describe() << ", which lies between a differentiated value and the loss '" << loss.name
                       << "'");
    GradientContext ctx{b, n, dy, wants};
    std::vector<Value*> dx = rule(ctx);
    CB_CHECK(dx.size() == n.inputs.size(), "autodiff: the gradient rule of " << n.describe() << " returned "
                                                                             << dx.size() << " gradients for "
                                                                             << n.inputs.size() << " inputs");
    for (size_t i = 0; i < dx.size(); ++i) {
      if (!dx[i] || !wants[i]) continue;
      const Value* in = n.inputs[i];
      CB_CHECK(dx[i]->type.dtype == in->type.dtype && !shapes_conflict(dx[i]->type.shape, in->type.shape),
               "autodiff: the gradient rule of " << n.describe() << " gave " << dx[i]->type.str() << " for input " << i
                                                 << " '" << in->name << "' of type " << in->type.str());
      sums.add(in, dx[i]);
    }
  }
}

}  // namespace

Backward append_backward(Graph& g, Value* loss, const std::vector<Value*>& wrt) {
  CB_CHECK(loss, "autodiff: no loss value");
  infer_types(g);
  CB_CHECK(is_float_value(loss),
           "autodiff: the loss '" << loss->name << "' is " << loss->type.str() << ", not a float value");
  const Shape& ls = loss->type.shape;
  bool one_element = ls.is_static();
  for (size_t i = 0; one_element && i < ls.rank(); ++i) one_element = ls[i].value == 1;
  CB_CHECK(one_element,
           "autodiff: the loss '" << loss->name << "' is " << loss->type.str() << ", not a scalar (one element)");
  for (const Value* w : wrt) {
    CB_CHECK(w, "autodiff: a value to differentiate by is null");
    CB_CHECK(is_float_value(w), "autodiff: cannot differentiate by '" << w->name << "' of type " << w->type.str()
                                                                      << " (not a float value)");
  }

  // 1. Active values: depend on wrt and reach the loss.
  std::vector<Node*> order;
  for (auto& n : g.nodes()) order.push_back(n.get());
  std::set<const Value*> depends(wrt.begin(), wrt.end());
  for (Node* n : order) {
    bool any = false;
    for (Value* in : n->inputs) any |= in && depends.count(in);
    if (!any) continue;
    for (Value* out : n->outputs)
      if (is_float_value(out)) depends.insert(out);
  }
  std::set<const Value*> reaches{loss};
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    bool any = false;
    for (Value* out : (*it)->outputs) any |= out && reaches.count(out);
    if (!any) continue;
    for (Value* in : (*it)->inputs)
      if (in) reaches.insert(in);
  }
  auto active = [&](const Value* v) { return v && depends.count(v) && reaches.count(v) && is_float_value(v); };

  // 2. Reverse sweep; on an error the nodes appended so far are removed again.
  GradBuilder b(g);
  GradientSums sums(b);
  sums.add(loss, b.filled(loss->type.dtype, ls.sizes(), 1.0));
  try {
    reverse_sweep(order, active, b, sums, *loss);
  } catch (const Error&) {
    std::set<const Node*> added(b.created_nodes().begin(), b.created_nodes().end());
    g.remove_nodes_if([&](const Node& n) { return added.count(&n) != 0; });
    g.remove_unused_values();
    throw;
  }

  // 3. Results.
  Backward r;
  for (Value* w : wrt) {
    Value* grad = sums.total(w);
    if (!grad) grad = b.zeros_like(w);
    r.gradients.push_back(grad);
    r.value_gradients[w] = grad;
  }
  for (Node* n : order)
    for (Value* in : n->inputs)
      if (in && sums.has(in)) r.value_gradients[in] = sums.total(in);
  r.nodes = b.created_nodes();
  return r;
}

std::vector<std::string> differentiable_ops() { return gradient_rules().op_names(); }

}  // namespace cb
