// Common subexpression elimination. Algorithm (hash-consing):
// 1. Equal small constants (same dtype, dims and bytes, at most 1 KiB, used
//    by some node) are merged into the first of them, so that nodes reading
//    copies of the same constant become identical. Only integer/bool tensors
//    (shapes, indices, axes) and scalars are merged: float vectors are
//    parameters (LayerNorm scales, biases, codebook LayerNorms) that training
//    must keep apart even when they start out equal.
// 2. The nodes are walked in topological order. Each node's key is its op,
//    domain, inputs (by identity, after earlier merges) and attributes; a node
//    whose key matches an earlier node's is a duplicate: readers of its
//    outputs are rewired to the earlier node's outputs and it is removed.
//    Since the walk is in order, whole duplicate chains collapse in one run.
// A duplicate output that is a graph output keeps its name through an
// Identity from the surviving value (Identity elimination then usually makes
// the survivor produce it directly). Nodes with subgraph attributes and
// non-deterministic nodes (random ops, training Dropout) are never merged.
#include <cstring>
#include <functional>
#include <set>
#include <unordered_map>

#include "passes/canonicalize.h"

namespace cb {

namespace {

using namespace pass_util;

constexpr size_t kMaxMergedConstantBytes = 1024;

bool same_attr(const AttrValue& a, const AttrValue& b) {
  if (a.index() != b.index()) return false;
  if (auto f = std::get_if<float>(&a)) return std::memcmp(f, &std::get<float>(b), sizeof(float)) == 0;
  if (auto t = std::get_if<Tensor>(&a)) return t->bitwise_equal(std::get<Tensor>(b));
  if (auto fs = std::get_if<std::vector<float>>(&a)) {
    auto& gs = std::get<std::vector<float>>(b);
    return fs->size() == gs.size() &&
           (fs->empty() || std::memcmp(fs->data(), gs.data(), fs->size() * sizeof(float)) == 0);
  }
  if (auto i = std::get_if<int64_t>(&a)) return *i == std::get<int64_t>(b);
  if (auto s = std::get_if<std::string>(&a)) return *s == std::get<std::string>(b);
  if (auto is = std::get_if<std::vector<int64_t>>(&a)) return *is == std::get<std::vector<int64_t>>(b);
  if (auto ss = std::get_if<std::vector<std::string>>(&a)) return *ss == std::get<std::vector<std::string>>(b);
  return false;  // subgraphs are never equal
}

bool same_node(const Node& a, const Node& b) {
  if (a.op_type != b.op_type || a.domain != b.domain || a.inputs != b.inputs || a.outputs.size() != b.outputs.size() ||
      a.attrs.size() != b.attrs.size())
    return false;
  for (size_t i = 0; i < a.outputs.size(); ++i)
    if (a.outputs[i] && !b.outputs[i]) return false;  // b must compute everything a does
  auto ia = a.attrs.begin();
  for (auto ib = b.attrs.begin(); ib != b.attrs.end(); ++ia, ++ib)
    if (ia->first != ib->first || !same_attr(ia->second, ib->second)) return false;
  return true;
}

// Hash key: the exact identity parts (op, domain, inputs, attribute names).
std::string node_key(const Node& n) {
  std::string k = n.domain + '\0' + n.op_type + '\0';
  for (Value* v : n.inputs) {
    uintptr_t p = reinterpret_cast<uintptr_t>(v);
    k.append(reinterpret_cast<const char*>(&p), sizeof p);
  }
  for (auto& [name, a] : n.attrs) k += name + '\0';
  return k;
}

// Rewires node inputs (including reads inside subgraphs), not graph outputs.
void redirect_reads(Graph& g, Value* from, Value* to) {
  for (auto& n : g.nodes()) {
    for (auto& in : n->inputs)
      if (in == from) in = to;
    for (auto& [k, a] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
        if (*sg) replace_all_uses_deep(**sg, from, to);
  }
}

void collect_reads(const Graph& g, std::set<const Value*>& reads) {
  for (auto& n : g.nodes()) {
    for (Value* v : n->inputs)
      if (v) reads.insert(v);
    for (auto& [k, a] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
        if (*sg) {
          collect_reads(**sg, reads);
          reads.insert((*sg)->outputs.begin(), (*sg)->outputs.end());
        }
  }
}

bool merge_constants(Graph& g) {
  std::set<const Value*> reads;
  collect_reads(g, reads);
  std::unordered_map<std::string, Value*> first;
  std::vector<std::pair<Value*, Value*>> merges;
  for (auto& v : g.values()) {
    const Tensor* t = constant_value(g, v.get());
    if (!t || t->nbytes() > kMaxMergedConstantBytes || is_graph_output(g, v.get()) || !reads.count(v.get())) continue;
    if (dtype_is_float(t->dtype()) && t->numel() > 1) continue;  // a parameter
    std::string key(dtype_name(t->dtype()));
    key += dims_str(t->dims());
    key.append(static_cast<const char*>(t->raw()), t->nbytes());
    auto [it, inserted] = first.emplace(key, v.get());
    if (!inserted) merges.push_back({v.get(), it->second});
  }
  for (auto& [dup, keep] : merges) redirect_reads(g, dup, keep);
  return !merges.empty();
}

class CommonSubexpressionElimination : public Pass {
 public:
  std::string name() const override { return "common-subexpression-elimination"; }

  bool run(Graph& g) override {
    bool changed = merge_constants(g);
    std::unordered_map<std::string, std::vector<Node*>> seen;
    std::set<const Node*> duplicates;
    std::vector<std::pair<Node*, std::pair<Value*, Value*>>> keep_names;  // (dup node, (survivor, output))
    for (size_t i = 0; i < g.nodes().size(); ++i) {
      Node* n = g.nodes()[i].get();
      bool has_output = false;
      for (Value* o : n->outputs) has_output |= o != nullptr;
      if (!has_output || has_subgraph(*n) || !is_deterministic(g, *n)) continue;
      auto& bucket = seen[node_key(*n)];
      Node* original = nullptr;
      for (Node* c : bucket)
        if (same_node(*n, *c)) original = c;
      if (!original) {
        bucket.push_back(n);
        continue;
      }
      for (size_t k = 0; k < n->outputs.size(); ++k) {
        Value* dup = n->outputs[k];
        if (!dup) continue;
        Value* survivor = original->outputs[k];
        redirect_reads(g, dup, survivor);
        if (is_graph_output(g, dup)) keep_names.push_back({n, {survivor, dup}});
      }
      duplicates.insert(n);
    }
    for (auto& [pos, io] : keep_names) {
      auto id = std::make_unique<Node>();
      id->op_type = "Identity";
      id->name = pos->name;
      id->inputs = {io.first};
      id->outputs = {io.second};
      g.insert_node_before(pos, std::move(id));
    }
    if (!duplicates.empty()) g.remove_nodes_if([&](const Node& n) { return duplicates.count(&n) != 0; });
    return changed || !duplicates.empty();
  }
};

}  // namespace

std::unique_ptr<Pass> make_common_subexpression_elimination_pass() {
  return std::make_unique<CommonSubexpressionElimination>();
}

}  // namespace cb
