// The canonicalisation pipeline, the two small passes that have no file of
// their own (Identity elimination, type inference) and the helpers the passes
// share.
//
// Identity elimination: an Identity x -> y is removed by making every user of
// y read x. When y is a graph output its name is part of the model's
// interface, so instead x's producer is made to produce y directly (and x's
// users read y); when x has no producer (a graph input) the Identity stays,
// since a value cannot be both an input and a differently named output; when x
// is a constant, y becomes a constant with the same tensor.
#include "passes/canonicalize.h"

#include <algorithm>
#include <set>

#include "ir/verifier.h"

namespace cb {

namespace pass_util {

void replace_all_uses_deep(Graph& g, Value* from, Value* to) {
  g.replace_all_uses(from, to);
  for (auto& n : g.nodes())
    for (auto& [k, a] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
        if (*sg) replace_all_uses_deep(**sg, from, to);
}

bool is_graph_output(const Graph& g, const Value* v) {
  return std::find(g.outputs.begin(), g.outputs.end(), v) != g.outputs.end();
}

bool is_graph_input(const Graph& g, const Value* v) {
  return std::find(g.inputs.begin(), g.inputs.end(), v) != g.inputs.end();
}

const Tensor* constant_value(const Graph& g, const Value* v) {
  if (!v || !v->constant || is_graph_input(g, v)) return nullptr;
  return &*v->constant;
}

std::optional<double> constant_f32_scalar(const Graph& g, const Value* v, size_t max_rank) {
  const Tensor* t = constant_value(g, v);
  if (!t || t->dtype() != DType::f32 || t->numel() != 1 || t->rank() > max_rank) return std::nullopt;
  return t->get_double(0);
}

bool is_deterministic(const Graph& g, const Node& n) {
  static const std::set<std::string> kRandom = {"RandomNormal",      "RandomUniform", "RandomNormalLike",
                                                "RandomUniformLike", "Multinomial",   "Bernoulli"};
  if (!n.domain.empty()) return true;
  if (kRandom.count(n.op_type)) return false;
  if (n.op_type == "Dropout" && n.input(2)) {
    const Tensor* training = constant_value(g, n.input(2));
    return training && training->numel() == 1 && training->get_int(0) == 0;
  }
  return true;
}

bool has_subgraph(const Node& n) {
  for (auto& [k, a] : n.attrs)
    if (std::holds_alternative<std::shared_ptr<Graph>>(a)) return true;
  return false;
}

std::set<const Value*> externally_read_values(const Graph& g) {
  std::set<const Value*> out(g.outputs.begin(), g.outputs.end());
  for (auto& n : g.nodes())
    if (has_subgraph(*n))
      for (auto& [k, a] : n->attrs)
        if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
          if (*sg)
            for (Value* v : graph_captures(**sg)) out.insert(v);
  return out;
}

void reinfer_types_from(Graph& g, const std::vector<const Value*>& roots) {
  std::set<const Value*> changed(roots.begin(), roots.end());
  for (auto& n : g.nodes()) {
    bool reads = false;
    for (const Value* v : n->inputs) reads |= v && changed.count(v);
    if (!reads) continue;
    for (Value* o : n->outputs)
      if (o) {
        changed.insert(o);
        o->type.shape = Shape::unknown_rank();
      }
  }
  infer_types(g);
}

}  // namespace pass_util

namespace {

using namespace pass_util;

class IdentityElimination : public Pass {
 public:
  std::string name() const override { return "identity-elimination"; }
  bool run(Graph& g) override {
    std::set<const Node*> removed;
    for (auto& node : g.nodes()) {
      Node* n = node.get();
      if (n->op_type != "Identity" || !n->domain.empty() || n->inputs.size() != 1 || n->outputs.size() != 1 ||
          !n->inputs[0] || !n->outputs[0])
        continue;
      Value* x = n->inputs[0];
      Value* y = n->outputs[0];
      if (!is_graph_output(g, y)) {
        replace_all_uses_deep(g, y, x);
      } else if (x->constant && !is_graph_input(g, x)) {
        y->constant = *x->constant;
        y->type = x->type;
      } else if (x->producer && !is_graph_output(g, x) && x->producer_output >= 0) {
        // The producer now writes y; x's readers read y instead.
        Node* p = x->producer;
        replace_all_uses_deep(g, x, y);
        n->inputs[0] = x;  // keep this node consistent until it is removed
        p->outputs[size_t(x->producer_output)] = y;
        y->producer = p;
        y->producer_output = x->producer_output;
        x->producer = nullptr;
        if (y->type.dtype == DType::undefined && !y->type.shape.rank_known) y->type = x->type;
      } else {
        continue;  // graph input (or output) passed through under another name
      }
      removed.insert(n);
    }
    if (removed.empty()) return false;
    // (remove_nodes_if leaves alone the producer of a y re-assigned above.)
    g.remove_nodes_if([&](const Node& n) { return removed.count(&n) != 0; });
    g.remove_unused_values();
    return true;
  }
};

class TypeInference : public Pass {
 public:
  std::string name() const override { return "type-inference"; }
  bool run(Graph& g) override {
    infer_types(g);
    return false;
  }
};

}  // namespace

std::unique_ptr<Pass> make_identity_elimination_pass() { return std::make_unique<IdentityElimination>(); }
std::unique_ptr<Pass> make_type_inference_pass() { return std::make_unique<TypeInference>(); }

void canonicalize(Graph& g) {
  PassManager pm;
  pm.add(make_type_inference_pass());
  pm.add(make_constant_folding_pass());
  pm.add(make_shape_folding_pass());
  pm.add(make_identity_elimination_pass());
  pm.add(make_common_subexpression_elimination_pass());
  pm.add(make_dead_code_elimination_pass());
  pm.run_to_fixed_point(g, 16);
  infer_types(g);
}

}  // namespace cb
