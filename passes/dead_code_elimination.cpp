// Dead code elimination. Algorithm: mark the graph outputs live, then walk the
// nodes in reverse topological order; a node is live when any of its outputs
// is live, and then all of its inputs become live, as do the outer values its
// subgraph attributes read. Nodes that are not live are removed (no op in the
// IR has side effects), and finally values that nothing produces, reads or
// exports any more are dropped (Graph::remove_unused_values), which removes
// constants that folding or CSE left unused.
#include <functional>
#include <set>

#include "passes/canonicalize.h"

namespace cb {

namespace {

// Marks every value read anywhere inside `g` (a subgraph): reads of values
// defined in an enclosing graph keep those values alive.
void mark_subgraph_reads(const Graph& g, std::set<const Value*>& live) {
  for (auto& n : g.nodes()) {
    for (Value* v : n->inputs)
      if (v) live.insert(v);
    for (auto& [k, a] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
        if (*sg) mark_subgraph_reads(**sg, live);
  }
  for (Value* v : g.outputs) live.insert(v);
}

class DeadCodeElimination : public Pass {
 public:
  std::string name() const override { return "dead-code-elimination"; }

  bool run(Graph& g) override {
    std::set<const Value*> live(g.outputs.begin(), g.outputs.end());
    std::set<const Node*> dead;
    const auto& nodes = g.nodes();
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
      const Node& n = **it;
      bool needed = false;
      for (Value* o : n.outputs) needed |= o && live.count(o);
      if (!needed) {
        dead.insert(&n);
        continue;
      }
      for (Value* v : n.inputs)
        if (v) live.insert(v);
      for (auto& [k, a] : n.attrs)
        if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
          if (*sg) mark_subgraph_reads(**sg, live);
    }
    size_t values_before = g.values().size();
    if (!dead.empty()) g.remove_nodes_if([&](const Node& n) { return dead.count(&n) != 0; });
    g.remove_unused_values();
    return !dead.empty() || g.values().size() != values_before;
  }
};

}  // namespace

std::unique_ptr<Pass> make_dead_code_elimination_pass() { return std::make_unique<DeadCodeElimination>(); }

}  // namespace cb
