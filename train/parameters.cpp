#include "train/parameters.h"

#include <set>

#include "ir/codebook.h"
#include "passes/transformer_anatomy.h"
#include "support/error.h"

namespace cb {
namespace {

bool is_float_constant(const Value* v) { return v && v->is_constant() && v->constant->dtype() == DType::f32; }

bool is_matmul(const Node* n) { return n && (n->op_type == "MatMul" || n->op_type == "Gemm"); }

enum class Role { none, weight, bias, norm };

// How node `n` reads its input `i` when that input is a float constant.
Role role_of_use(const Node& n, size_t i) {
  if (n.domain.empty()) {
    if (n.op_type == "MatMul" || (n.op_type == "Gemm" && i < 2)) return Role::weight;
    if (n.op_type == "Gemm" && i == 2) return Role::bias;
    if (n.op_type == "Gather" && i == 0) return Role::weight;
    if (n.op_type == "LayerNormalization" && (i == 1 || i == 2)) return Role::norm;
    if (n.op_type == "Add") {
      const Value* other = n.input(1 - i);
      if (other && is_matmul(other->producer)) return Role::bias;
    }
  }
  return Role::none;
}

// Model parameters with the role of their first parameter-like use.
std::vector<std::pair<Value*, Role>> classified_model_parameters(const Graph& g) {
  std::vector<std::pair<Value*, Role>> out;
  std::set<const Value*> seen;
  for (auto& n : g.nodes()) {
    if (n->domain == kCodebookDomain) continue;
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      Value* v = n->inputs[i];
      if (!is_float_constant(v) || v->constant->numel() < 2 || seen.count(v)) continue;
      Role r = role_of_use(*n, i);
      if (r == Role::none) continue;
      seen.insert(v);
      out.push_back({v, r});
    }
  }
  return out;
}

// Every value `v` depends on (itself included).
std::set<const Value*> ancestors(const Value* v) {
  std::set<const Value*> seen;
  std::vector<const Value*> stack = {v};
  while (!stack.empty()) {
    const Value* x = stack.back();
    stack.pop_back();
    if (!x || !seen.insert(x).second) continue;
    if (x->producer)
      for (const Value* in : x->producer->inputs) stack.push_back(in);
  }
  return seen;
}

}  // namespace

std::vector<Value*> codebook_parameters(const Graph& g) {
  std::vector<Value*> out;
  std::set<const Value*> seen;
  for (auto& n : g.nodes()) {
    if (n->domain != kCodebookDomain || n->op_type != kCodebookOp) continue;
    for (size_t i = 1; i <= 3; ++i) {
      Value* v = n->input(i);
      CB_CHECK(is_float_constant(v), n->describe() << ": input " << i << " is not an f32 constant");
      if (seen.insert(v).second) out.push_back(v);
    }
  }
  return out;
}

std::vector<Value*> model_parameters(const Graph& g) {
  std::vector<Value*> out;
  for (auto& [v, role] : classified_model_parameters(g)) out.push_back(v);
  return out;
}

std::vector<Value*> original_frozen_parameters(Graph& g) {
  ModelAnatomy a = analyze_model(g);
  auto classified = classified_model_parameters(g);
  std::set<const Value*> frozen;
  for (Node* cb : [&] {
         std::vector<Node*> v;
         for (auto& n : g.nodes())
           if (n->domain == kCodebookDomain && n->op_type == kCodebookOp) v.push_back(n.get());
         return v;
       }()) {
    std::string site = cb->attr_string("site", "");
    // "layer{L}.{placement}[...]"
    size_t dot = site.find('.');
    if (site.rfind("layer", 0) != 0 || dot == std::string::npos) continue;
    int64_t layer = std::stoll(site.substr(5, dot - 5));
    std::string placement = site.substr(dot + 1);
    placement = placement.substr(0, placement.find('['));
    if (layer < 0 || layer >= int64_t(a.layers.size())) continue;
    const LayerSites& l = a.layers[size_t(layer)];
    bool whole_block = placement == "attn_plus_mlp";
    if (!whole_block && placement != "attn_preproj") continue;
    std::set<const Value*> below = ancestors(l.input);
    std::set<const Value*> upto = ancestors(whole_block ? l.output : l.attn);
    for (auto& [v, role] : classified)
      if (upto.count(v) && !below.count(v) && (whole_block || role == Role::weight || role == Role::bias))
        frozen.insert(v);
  }
  std::vector<Value*> out;
  for (auto& [v, role] : classified)
    if (frozen.count(v)) out.push_back(v);
  return out;
}

std::map<std::string, Tensor> parameterize(Graph& g, const std::vector<Value*>& values) {
  std::map<std::string, Tensor> initial;
  for (Value* v : values) {
    CB_CHECK(v->is_constant(), "parameterize: '" << v->name << "' is not a constant");
    initial[v->name] = *v->constant;
    v->type = TensorType{v->constant->dtype(), Shape::of(v->constant->dims())};
    v->constant.reset();
    g.inputs.push_back(v);
  }
  return initial;
}

void bind_parameters(Graph& g, const std::map<std::string, Tensor>& values) {
  std::set<const Value*> bound;
  for (auto& [name, t] : values) {
    Value* v = g.find_value(name);
    CB_CHECK(v && !v->is_constant() && !v->producer, "bind_parameters: '" << name << "' is not a graph input");
    CB_CHECK(v->type.dtype == t.dtype() && v->type.shape == Shape::of(t.dims()),
             "bind_parameters: '" << name << "' is " << v->type.str() << ", the tensor is " << dtype_name(t.dtype())
                                  << dims_str(t.dims()));
    v->constant = t;
    bound.insert(v);
  }
  std::vector<Value*> rest;
  for (Value* in : g.inputs)
    if (!bound.count(in)) rest.push_back(in);
  g.inputs = rest;
}

void assign_constants(Graph& g, const std::map<std::string, Tensor>& values) {
  for (auto& [name, t] : values) {
    Value* v = g.find_value(name);
    CB_CHECK(v && v->is_constant(), "no constant named '" << name << "' in the model");
    CB_CHECK(v->constant->dtype() == t.dtype() && v->constant->dims() == t.dims(),
             "'" << name << "': the model has " << dtype_name(v->constant->dtype()) << dims_str(v->constant->dims())
                 << ", the tensor is " << dtype_name(t.dtype()) << dims_str(t.dims()));
    v->constant = t;
  }
}

}  // namespace cb
