#include "ir/graph.h"

#include <algorithm>
#include <set>

#include "support/error.h"

namespace cb {

template <typename T>
static const T* get_attr(const Node& n, const std::string& k) {
  auto it = n.attrs.find(k);
  if (it == n.attrs.end()) return nullptr;
  const T* v = std::get_if<T>(&it->second);
  CB_CHECK(v, n.describe() << ": attribute '" << k << "' has the wrong type");
  return v;
}

int64_t Node::attr_int(const std::string& k, int64_t dflt) const {
  auto v = get_attr<int64_t>(*this, k);
  return v ? *v : dflt;
}
float Node::attr_float(const std::string& k, float dflt) const {
  auto it = attrs.find(k);
  if (it == attrs.end()) return dflt;
  if (auto i = std::get_if<int64_t>(&it->second)) return float(*i);
  auto v = get_attr<float>(*this, k);
  return *v;
}
std::string Node::attr_string(const std::string& k, const std::string& dflt) const {
  auto v = get_attr<std::string>(*this, k);
  return v ? *v : dflt;
}
std::vector<int64_t> Node::attr_ints(const std::string& k, const std::vector<int64_t>& dflt) const {
  auto v = get_attr<std::vector<int64_t>>(*this, k);
  return v ? *v : dflt;
}
std::vector<float> Node::attr_floats(const std::string& k, const std::vector<float>& dflt) const {
  auto v = get_attr<std::vector<float>>(*this, k);
  return v ? *v : dflt;
}
const Tensor* Node::attr_tensor(const std::string& k) const { return get_attr<Tensor>(*this, k); }
std::shared_ptr<Graph> Node::attr_graph(const std::string& k) const {
  auto v = get_attr<std::shared_ptr<Graph>>(*this, k);
  return v ? *v : nullptr;
}
std::string Node::describe() const {
  std::string d = domain.empty() ? op_type : domain + "." + op_type;
  return d + " '" + name + "'";
}

std::string Graph::unique_name(const std::string& base) {
  std::string b = base.empty() ? "v" : base;
  if (!by_name_.count(b)) return b;
  for (;;) {
    std::string n = b + "_" + std::to_string(++name_counter_);
    if (!by_name_.count(n)) return n;
  }
}

Value* Graph::add_value(const std::string& name, TensorType type) {
  auto v = std::make_unique<Value>();
  v->name = unique_name(name);
  v->type = std::move(type);
  Value* p = v.get();
  by_name_[p->name] = p;
  values_.push_back(std::move(v));
  return p;
}

Value* Graph::add_input(const std::string& name, TensorType type) {
  Value* v = add_value(name, std::move(type));
  inputs.push_back(v);
  return v;
}

Value* Graph::add_constant(const std::string& name, Tensor t) {
  TensorType ty{t.dtype(), Shape::of(t.dims())};
  Value* v = add_value(name, ty);
  v->constant = std::move(t);
  return v;
}

Value* Graph::find_value(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Node* Graph::add_node(const std::string& op_type, std::vector<Value*> ins, std::vector<Value*> outs,
                      std::map<std::string, AttrValue> attrs, const std::string& name, const std::string& domain) {
  auto n = std::make_unique<Node>();
  n->op_type = op_type;
  n->domain = domain;
  n->name = name.empty() ? op_type + "_" + std::to_string(nodes_.size()) : name;
  n->inputs = std::move(ins);
  n->outputs = std::move(outs);
  n->attrs = std::move(attrs);
  for (size_t i = 0; i < n->outputs.size(); ++i) {
    if (!n->outputs[i]) continue;
    n->outputs[i]->producer = n.get();
    n->outputs[i]->producer_output = int(i);
  }
  nodes_.push_back(std::move(n));
  return nodes_.back().get();
}

Node* Graph::insert_node_before(Node* pos, std::unique_ptr<Node> n) {
  for (size_t i = 0; i < n->outputs.size(); ++i) {
    if (!n->outputs[i]) continue;
    n->outputs[i]->producer = n.get();
    n->outputs[i]->producer_output = int(i);
  }
  auto it = std::find_if(nodes_.begin(), nodes_.end(), [&](auto& p) { return p.get() == pos; });
  Node* raw = n.get();
  nodes_.insert(it, std::move(n));
  return raw;
}

void Graph::replace_all_uses(Value* from, Value* to) {
  for (auto& n : nodes_)
    for (auto& in : n->inputs)
      if (in == from) in = to;
  for (auto& o : outputs)
    if (o == from) o = to;
}

void Graph::remove_nodes_if(const std::function<bool(const Node&)>& pred) {
  std::vector<std::unique_ptr<Node>> kept;
  for (auto& n : nodes_) {
    if (pred(*n)) {
      for (Value* o : n->outputs)
        if (o && o->producer == n.get()) o->producer = nullptr;
    } else {
      kept.push_back(std::move(n));
    }
  }
  nodes_ = std::move(kept);
}

void Graph::remove_unused_values() {
  std::set<const Value*> live(inputs.begin(), inputs.end());
  live.insert(outputs.begin(), outputs.end());
  for (auto& n : nodes_) {
    for (Value* v : n->inputs) live.insert(v);
    for (Value* v : n->outputs) live.insert(v);
  }
  // Subgraphs may capture outer values by pointer.
  std::function<void(const Graph&)> scan = [&](const Graph& g) {
    live.insert(g.outputs.begin(), g.outputs.end());  // a body may return an outer value
    for (auto& n : g.nodes_) {
      for (Value* v : n->inputs) live.insert(v);
      for (auto& [k, a] : n->attrs)
        if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a)) scan(**sg);
    }
  };
  scan(*this);
  std::vector<std::unique_ptr<Value>> kept;
  for (auto& v : values_) {
    if (live.count(v.get())) {
      kept.push_back(std::move(v));
    } else {
      by_name_.erase(v->name);
    }
  }
  values_ = std::move(kept);
}

void Graph::toposort() {
  std::map<const Node*, size_t> index;
  for (size_t i = 0; i < nodes_.size(); ++i) index[nodes_[i].get()] = i;
  std::vector<int> state(nodes_.size(), 0);  // 0 new, 1 visiting, 2 done
  std::vector<std::unique_ptr<Node>> order;
  order.reserve(nodes_.size());
  std::function<void(size_t)> visit = [&](size_t i) {
    if (state[i] == 2) return;
    CB_CHECK(state[i] != 1, "graph has a cycle through " << nodes_[i]->describe());
    state[i] = 1;
    for (Value* in : nodes_[i]->inputs) {
      if (!in || !in->producer) continue;
      auto it = index.find(in->producer);
      if (it != index.end()) visit(it->second);
    }
    state[i] = 2;
    order.push_back(std::move(nodes_[i]));
  };
  for (size_t i = 0; i < nodes_.size(); ++i) visit(i);
  nodes_ = std::move(order);
}

std::map<const Value*, std::vector<Node*>> Graph::users() const {
  std::map<const Value*, std::vector<Node*>> u;
  for (auto& n : nodes_)
    for (Value* v : n->inputs)
      if (v) u[v].push_back(n.get());
  return u;
}

int64_t Graph::num_constant_elements() const {
  int64_t n = 0;
  for (auto& v : values_)
    if (v->constant) n += v->constant->numel();
  return n;
}

std::vector<Value*> graph_captures(const Graph& g) {
  std::set<const Value*> inside(g.inputs.begin(), g.inputs.end());
  for (auto& n : g.nodes())
    for (Value* o : n->outputs) inside.insert(o);
  std::vector<Value*> caps;
  std::set<const Value*> seen;
  auto note = [&](Value* v) {
    if (v && !v->is_constant() && !inside.count(v) && seen.insert(v).second) caps.push_back(v);
  };
  for (auto& n : g.nodes()) {
    for (Value* v : n->inputs) note(v);
    for (auto& [k, a] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
        for (Value* v : graph_captures(**sg)) note(v);
  }
  return caps;
}

}  // namespace cb
