#include "ir/graph_clone.h"

#include "support/error.h"

namespace cb {

std::shared_ptr<Graph> clone_graph(const Graph& g, std::map<const Value*, Value*>* mapping) {
  auto out = std::make_shared<Graph>();
  out->name = g.name;
  out->opsets = g.opsets;
  out->metadata = g.metadata;
  out->ir_version = g.ir_version;
  out->producer = g.producer;
  std::map<const Value*, Value*> to;
  for (const auto& v : g.values()) {
    Value* c = out->add_value(v->name, v->type);
    CB_CHECK(v->name.empty() || c->name == v->name, "clone_graph: value name '" << v->name << "' is not unique");
    c->constant = v->constant;
    to[v.get()] = c;
  }
  auto map = [&](Value* v) -> Value* { return v ? to.at(v) : nullptr; };
  for (const auto& n : g.nodes()) {
    for (const auto& [k, a] : n->attrs)
      CB_CHECK(!std::holds_alternative<std::shared_ptr<Graph>>(a),
               "clone_graph: " << n->describe() << " has a subgraph attribute '" << k << "'; not supported");
    std::vector<Value*> ins, outs;
    for (Value* v : n->inputs) ins.push_back(map(v));
    for (Value* v : n->outputs) outs.push_back(map(v));
    out->add_node(n->op_type, std::move(ins), std::move(outs), n->attrs, n->name, n->domain);
  }
  for (Value* v : g.inputs) out->inputs.push_back(map(v));
  for (Value* v : g.outputs) out->outputs.push_back(map(v));
  if (mapping) *mapping = std::move(to);
  return out;
}

}  // namespace cb
