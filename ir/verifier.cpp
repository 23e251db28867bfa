#include "ir/verifier.h"

#include <set>

#include "ir/op_registry.h"
#include "support/error.h"

namespace cb {

void verify_graph(const Graph& g) {
  std::set<const Value*> available(g.inputs.begin(), g.inputs.end());
  for (auto& v : g.values())
    if (v->is_constant()) available.insert(v.get());
  std::set<const Value*> produced;
  const OpRegistry& reg = OpRegistry::global();
  for (auto& n : g.nodes()) {
    const OpSchema* s = reg.find(n->domain, n->op_type);
    CB_CHECK(s, "unknown op " << n->describe());
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Value* v = n->inputs[i];
      if (!v) continue;
      CB_CHECK(available.count(v), n->describe()
                                       << ": input " << i << " '" << v->name << "' is not defined before it is used");
    }
    for (const Value* v : n->outputs) {
      if (!v) continue;
      CB_CHECK(!produced.count(v), n->describe() << ": value '" << v->name << "' is produced twice");
      CB_CHECK(!v->is_constant(), n->describe() << ": output '" << v->name << "' is a constant");
      produced.insert(v);
      available.insert(v);
    }
  }
  for (const Value* v : g.outputs) CB_CHECK(available.count(v), "graph output '" << v->name << "' is never computed");
}

// Merges inferred knowledge into a declared type: a static or symbolic dim
// beats an unknown one; declared symbolic names are kept.
static TensorType merge_types(const TensorType& declared, const TensorType& inferred) {
  if (declared.dtype == DType::undefined && !declared.shape.rank_known) return inferred;
  TensorType t = declared;
  if (t.dtype == DType::undefined) t.dtype = inferred.dtype;
  if (!t.shape.rank_known) {
    t.shape = inferred.shape;
  } else if (inferred.shape.rank_known && inferred.shape.rank() == t.shape.rank()) {
    for (size_t i = 0; i < t.shape.rank(); ++i) {
      Dim& d = t.shape.dims[i];
      const Dim& e = inferred.shape.dims[i];
      if (d.is_unknown() || (e.is_static() && !d.is_static())) d = e;
    }
  }
  return t;
}

void infer_node_types(Node& n) {
  std::vector<const TensorType*> types;
  std::vector<const Tensor*> values;
  for (Value* v : n.inputs) {
    types.push_back(v ? &v->type : nullptr);
    values.push_back(v && v->constant ? &*v->constant : nullptr);
  }
  std::vector<TensorType> out = infer_node(n, types, values);
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    Value* o = n.outputs[i];
    if (!o) continue;
    TensorType merged = merge_types(o->type, out[i]);
    CB_CHECK(o->type.dtype == DType::undefined || out[i].dtype == DType::undefined || o->type.dtype == out[i].dtype,
             n.describe() << ": output '" << o->name << "' is declared " << dtype_name(o->type.dtype)
                          << " but computes " << dtype_name(out[i].dtype));
    o->type = merged;
  }
}

void infer_types(Graph& g) {
  for (auto& n : g.nodes()) infer_node_types(*n);
}

}  // namespace cb
