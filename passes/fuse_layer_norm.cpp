// LayerNorm fusion (passes/fuse_layer_norm.h). What it recognises, anchored at
// each ReduceMean node (the mean):
//
//   1. mean = ReduceMean(x) over x's last axis (axes [-1] or [rank-1], the
//      attribute form of opset < 18 having become an input on import),
//      keepdims 1; x f32 with a known rank and a static last dimension D.
//   2. Every user of mean is a Sub(x, mean): d, computed once and reused, or
//      once per use.
//   3. The users of the d's are exactly two nodes: the square, Pow(d, 2) or
//      Mul(d, d), and the numerator, the first node of the chain in 5.
//   4. var = ReduceMean(square) over the last axis, keepdims 1;
//      ve = var + eps (either operand order, eps an f32 constant);
//      then 1/sqrt(ve) as Div(., Sqrt(ve)), Mul(., Reciprocal(Sqrt(ve))) or
//      Mul(., Pow(ve, -0.5)).
//   5. From the numerator up, through values used once: Muls and Divs (d or
//      its scaled form as the dividend) by f32 constants (scale factors: shape
//      [D] or [1, .., 1, D], or one element, of rank <= x's, so nothing
//      broadcasts x to a bigger shape), in any order and operand order, up to
//      the node applying the 1/sqrt of 4: its output is the normalised value.
//   6. From there up, the affine: more such factors, then at most one Add of
//      such a constant (the bias). A value all of whose users continue the
//      affine is not the end: each user starts a branch of its own. That is
//      how an exporter's common-subexpression elimination leaves two
//      LayerNorms of one x (GPT-NeoX's parallel residual: input_layernorm
//      and post_attention_layernorm): one normalisation, two affines. Each
//      branch ends at a value used by anything else (or more than once, or
//      after the bias): that value is one LayerNorm's output y.
// Every value in between (mean, the d's, the square, var, ve, the sqrt, and
// the chains below each y) must be used only by the match and be neither a
// graph output nor read by a subgraph; otherwise the match is left alone
// (fusing would have to keep computing it). Values shared by several branches
// are recomputed by each branch's LayerNormalization.
//
// Rewrite: per branch, LayerNormalization(x, scale, bias) {axis = -1,
// epsilon = eps} takes over y (its name, uses and place among the graph
// outputs), placed where y's producer was and named after the mean's
// ReduceMean (".../ln_1/ReduceMean" -> ".../ln_1/LayerNormalization"), or,
// with several branches, after y's producer's scope. scale and bias are the
// model's own constants when the branch has exactly one Mul by a [D]
// constant (one Add for the bias), so weight names survive; else new [D]
// constants (the product of the scale factors, ones or zeros without an
// affine). The matched nodes go, then the values and constants nothing uses
// any more. The default-domain opset is raised to 17 (LayerNormalization's).
#include "passes/fuse_layer_norm.h"

#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "passes/canonicalize.h"
#include "passes/disjoint_matches.h"
#include "support/error.h"

namespace cb {

namespace {

constexpr int64_t kLayerNormOpset = 17;
constexpr int kMaxChain = 6;  // 1/sqrt, the scale factors and the bias

bool is_op(const Node* n, const char* op, size_t num_inputs) {
  return n && n->domain.empty() && n->op_type == op && n->inputs.size() == num_inputs && n->outputs.size() >= 1 &&
         n->outputs[0];
}

// The affine of one branch: per-element factors (D of them), and the model's
// own constant when it is the branch's one [D] Mul / Add operand, to reuse as
// it is.
struct Affine {
  std::vector<double> scale, bias;
  Value* scale_value = nullptr;
  Value* bias_value = nullptr;
  int scale_factors = 0, bias_terms = 0;
};

// One LayerNorm's output and its affine.
struct Branch {
  Value* y = nullptr;
  Affine affine;
};

struct Match {
  Value* x = nullptr;
  int64_t width = 0;  // D
  double epsilon = 0;
  const Node* mean = nullptr;
  std::vector<Node*> nodes;  // everything the LayerNormalizations replace
  std::vector<Branch> branches;
};

class LayerNormMatcher {
 public:
  explicit LayerNormMatcher(Graph& g) : g_(g) {
    for (auto& n : g.nodes()) {
      for (Value* v : n->inputs)
        if (v) users_[v].push_back(n.get());
    }
    shared_ = pass_util::externally_read_values(g);
  }

  std::optional<Match> match(Node& mean) {
    Match m;
    m.mean = &mean;
    // 1. The mean over x's last axis.
    if (!is_last_axis_mean(&mean)) return std::nullopt;
    m.x = mean.input(0);
    const Shape& xs = m.x->type.shape;
    if (m.x->type.dtype != DType::f32 || !xs.rank_known || xs.rank() == 0 || !xs.dims.back().is_static())
      return std::nullopt;
    m.width = xs.dims.back().value;
    Value* mean_out = mean.outputs[0];
    if (!internal(mean_out)) return std::nullopt;
    m.nodes.push_back(&mean);

    // 2. The d's: every user of the mean is Sub(x, mean).
    std::set<const Value*> ds;
    for (Node* sub : users(mean_out)) {
      if (!is_op(sub, "Sub", 2) || sub->input(0) != m.x || sub->input(1) != mean_out) return std::nullopt;
      if (!internal(sub->outputs[0])) return std::nullopt;
      if (ds.insert(sub->outputs[0]).second) m.nodes.push_back(sub);
    }

    // 3. Their users: the square and the numerator, nothing else.
    Node* square = nullptr;
    Node* numerator = nullptr;
    Value* numerator_d = nullptr;
    for (const Value* d : ds)
      for (Node* u : users(d)) {
        if (u == square || u == numerator) continue;  // Mul(d, d) lists its node twice
        const bool is_square = (is_op(u, "Pow", 2) && ds.count(u->input(0)) && exponent_is(u->input(1), 2.0)) ||
                               (is_op(u, "Mul", 2) && ds.count(u->input(0)) && ds.count(u->input(1)));
        if (is_square) {
          if (square) return std::nullopt;
          square = u;
        } else {
          if (numerator) return std::nullopt;
          numerator = u;
          numerator_d = const_cast<Value*>(d);
        }
      }
    if (!square || !numerator) return std::nullopt;
    // The numerator uses its d once (Div(d, d) or Sub(d, d) would be another function).
    int numerator_uses = 0;
    for (Value* in : numerator->inputs) numerator_uses += ds.count(in) != 0;
    if (numerator_uses != 1) return std::nullopt;
    m.nodes.push_back(square);

    // 4. var, ve and 1/sqrt(ve).
    Node* var = only_user(square->outputs[0]);
    if (!var || !is_last_axis_mean(var) || var->input(0) != square->outputs[0]) return std::nullopt;
    m.nodes.push_back(var);
    Node* add_eps = only_user(var->outputs[0]);
    if (!is_op(add_eps, "Add", 2)) return std::nullopt;
    Value* eps = add_eps->input(0) == var->outputs[0] ? add_eps->input(1) : add_eps->input(0);
    std::optional<double> eps_value = single_element(eps, xs.rank());
    if (!eps_value || !(*eps_value >= 0)) return std::nullopt;
    m.epsilon = *eps_value;
    m.nodes.push_back(add_eps);
    // The node of the chain in 5 that applies 1/sqrt(ve), and what it reads.
    Node* inv_user = nullptr;
    Node* root = only_user(add_eps->outputs[0]);
    if (is_op(root, "Sqrt", 1)) {
      m.nodes.push_back(root);
      Node* next = only_user(root->outputs[0]);
      if (is_op(next, "Div", 2) && next->input(1) == root->outputs[0]) {
        inv_user = next;
      } else if (is_op(next, "Reciprocal", 1)) {
        m.nodes.push_back(next);
        inv_user = only_user(next->outputs[0]);
        if (!is_op(inv_user, "Mul", 2)) return std::nullopt;
      } else {
        return std::nullopt;
      }
    } else if (is_op(root, "Pow", 2) && root->input(0) == add_eps->outputs[0] && exponent_is(root->input(1), -0.5)) {
      m.nodes.push_back(root);
      inv_user = only_user(root->outputs[0]);
      if (!is_op(inv_user, "Mul", 2)) return std::nullopt;
    } else {
      return std::nullopt;
    }

    // 5. From the numerator up to the normalised value.
    Affine a;
    a.scale.assign(size_t(m.width), 1.0);
    a.bias.assign(size_t(m.width), 0.0);
    Value* cur = numerator_d;
    Node* node = numerator;
    for (int step = 0;; ++step) {
      if (!node || step >= kMaxChain) return std::nullopt;
      if (node == inv_user) {
        const bool reads_cur = is_op(node, "Div", 2) ? node->input(0) == cur && node->input(1) != cur
                                                     : (node->input(0) == cur) != (node->input(1) == cur);
        if (!reads_cur) return std::nullopt;
        m.nodes.push_back(node);
        cur = node->outputs[0];
        break;
      }
      if (!affine_step(*node, cur, /*may_add=*/false, a, m)) return std::nullopt;
      m.nodes.push_back(node);
      cur = node->outputs[0];
      node = only_user(cur);
    }

    // 6. The affine branches.
    collect_branches(cur, a, 0, m);
    for (const Branch& b : m.branches)
      if (b.y->type.shape.rank_known && b.y->type.shape.rank() != xs.rank()) return std::nullopt;
    return m;
  }

 private:
  // From v (normalised, with the affine `a` so far): v is one branch's end,
  // unless every user of v continues the affine; then each user continues a
  // branch of its own.
  void collect_branches(Value* v, const Affine& a, int depth, Match& m) const {
    const bool biased = a.bias_terms > 0;
    std::vector<Node*> us = users(v);
    if (!biased && depth < kMaxChain && internal(v) && !us.empty()) {
      std::vector<Affine> next;
      std::set<const Node*> seen;
      for (Node* u : us) {
        next.push_back(a);
        if (!seen.insert(u).second || !affine_step(*u, v, /*may_add=*/true, next.back(), m)) {
          next.clear();  // a user reads v twice, or does something else: v is the end
          break;
        }
      }
      if (!next.empty()) {
        for (size_t i = 0; i < us.size(); ++i) {
          m.nodes.push_back(us[i]);
          collect_branches(us[i]->outputs[0], next[i], depth + 1, m);
        }
        return;
      }
    }
    Branch b{v, a};
    if (b.affine.scale_factors != 1) b.affine.scale_value = nullptr;
    if (b.affine.bias_terms != 1) b.affine.bias_value = nullptr;
    m.branches.push_back(std::move(b));
  }

  // One node reading `cur` that continues the affine: a Mul or Div by a
  // scale factor, or (when may_add) an Add of the bias. False when it is
  // none of these (then `a` may be half updated: callers drop it).
  bool affine_step(const Node& n, const Value* cur, bool may_add, Affine& a, const Match& m) const {
    const bool div = is_op(&n, "Div", 2), mul = is_op(&n, "Mul", 2), add = may_add && is_op(&n, "Add", 2);
    if (!div && !mul && !add) return false;
    if (n.input(0) == n.input(1) || (div && n.input(0) != cur)) return false;
    Value* other = n.input(0) == cur ? n.input(1) : n.input(0);
    std::optional<std::vector<double>> c = per_element(other, m);
    if (!c) return false;
    if (add) {
      a.bias = *c;  // the bias comes last: nothing scales it
      a.bias_value = is_vector_of_width(other, m.width) ? other : nullptr;
      ++a.bias_terms;
      return true;
    }
    for (double e : *c)
      if (div && e == 0) return false;
    for (size_t i = 0; i < c->size(); ++i) a.scale[i] = div ? a.scale[i] / (*c)[i] : a.scale[i] * (*c)[i];
    a.scale_value = mul && is_vector_of_width(other, m.width) ? other : nullptr;
    ++a.scale_factors;
    return true;
  }

  // An f32 constant broadcasting along x's last axis only: [D] or
  // [1, .., 1, D], or one element, of rank <= x's; its D values.
  std::optional<std::vector<double>> per_element(const Value* v, const Match& m) const {
    const Tensor* t = pass_util::constant_value(g_, v);
    const size_t rank = m.x->type.shape.rank();
    if (!t || t->dtype() != DType::f32 || t->rank() > rank) return std::nullopt;
    std::vector<double> out(size_t(m.width));
    if (t->numel() == 1) {
      for (double& e : out) e = t->get_double(0);
      return out;
    }
    for (size_t i = 0; i + 1 < t->rank(); ++i)
      if (t->dim(i) != 1) return std::nullopt;
    if (t->rank() == 0 || t->dims().back() != m.width) return std::nullopt;
    for (int64_t i = 0; i < m.width; ++i) out[size_t(i)] = t->get_double(i);
    return out;
  }

  bool is_vector_of_width(const Value* v, int64_t width) const {
    const Tensor* t = pass_util::constant_value(g_, v);
    return t && t->dtype() == DType::f32 && t->rank() == 1 && t->dim(0) == width;
  }

  // An f32 constant with one element, of rank <= `max_rank`.
  std::optional<double> single_element(const Value* v, size_t max_rank) const {
    return pass_util::constant_f32_scalar(g_, v, max_rank);
  }

  // A one-element constant equal to `e` (any numeric dtype, as ONNX's Pow
  // lets the exponent differ from the base's).
  bool exponent_is(const Value* v, double e) const {
    const Tensor* t = pass_util::constant_value(g_, v);
    return t && t->numel() == 1 && t->dtype() != DType::boolean && t->get_double(0) == e;
  }

  // ReduceMean(v, axes) {keepdims = 1} over v's last axis only.
  bool is_last_axis_mean(const Node* n) const {
    if (!n || !n->domain.empty() || n->op_type != "ReduceMean" || n->inputs.size() != 2 || !n->input(0) ||
        n->outputs.size() != 1 || !n->outputs[0])
      return false;
    if (n->attr_int("keepdims", 1) != 1) return false;
    const Tensor* axes = pass_util::constant_value(g_, n->input(1));
    const Shape& s = n->input(0)->type.shape;
    if (!axes || axes->numel() != 1 || !s.rank_known || s.rank() == 0) return false;
    const int64_t a = axes->to_int_vector()[0];
    return a == -1 || a == int64_t(s.rank()) - 1;
  }

  // Neither a graph output nor read by a subgraph.
  bool internal(const Value* v) const { return v && !shared_.count(v); }

  std::vector<Node*> users(const Value* v) const {
    auto it = users_.find(v);
    return it == users_.end() ? std::vector<Node*>{} : it->second;
  }

  // The one node reading v, when v is read exactly once and internal.
  Node* only_user(const Value* v) const {
    if (!internal(v)) return nullptr;
    auto it = users_.find(v);
    return it != users_.end() && it->second.size() == 1 ? it->second[0] : nullptr;
  }

  Graph& g_;
  std::map<const Value*, std::vector<Node*>> users_;  // one entry per input slot
  std::set<const Value*> shared_;                     // graph outputs and values subgraphs read
};

// ".../ln_1/ReduceMean" -> ".../ln_1/LayerNormalization"; other names get
// "/LayerNormalization" appended.
std::string layer_norm_name(const Node& mean) {
  std::string name = mean.name;
  const size_t at = name.rfind(mean.op_type);
  if (at == std::string::npos) return name.empty() ? "LayerNormalization" : name + "/LayerNormalization";
  return name.replace(at, mean.op_type.size(), "LayerNormalization");
}

// With several branches: "<scope of y's producer>/LayerNormalization"
// (".../post_attention_layernorm/Add_1" -> ".../post_attention_layernorm/LayerNormalization").
std::string branch_name(const Node& producer) {
  const size_t slash = producer.name.rfind('/');
  if (slash == std::string::npos) return producer.name + "/LayerNormalization";
  return producer.name.substr(0, slash + 1) + "LayerNormalization";
}

Value* affine_constant(Graph& g, Value* own, const std::vector<double>& values, const std::string& name) {
  if (own) return own;
  std::vector<float> f(values.begin(), values.end());
  return g.add_constant(name, Tensor::from_vector(f, {int64_t(f.size())}));
}

}  // namespace

int64_t fuse_layer_norm(Graph& g) {
  LayerNormMatcher matcher(g);
  auto [matches, covered] = disjoint_matches(g, matcher);
  if (matches.empty()) return 0;

  int64_t fused = 0;
  for (const Match& m : matches)
    for (const Branch& b : m.branches) {
      Node* producer = b.y->producer;
      CB_CHECK(producer && covered.count(producer),
               "layer norm fusion: the matched output '" << b.y->name << "' is not produced by the match");
      const std::string name = m.branches.size() == 1 ? layer_norm_name(*m.mean) : branch_name(*producer);
      auto ln = std::make_unique<Node>();
      ln->op_type = "LayerNormalization";
      ln->name = name;
      ln->inputs = {m.x, affine_constant(g, b.affine.scale_value, b.affine.scale, name + "/scale"),
                    affine_constant(g, b.affine.bias_value, b.affine.bias, name + "/bias")};
      ln->outputs = {b.y};
      ln->attrs["axis"] = int64_t(-1);
      ln->attrs["epsilon"] = float(m.epsilon);
      g.insert_node_before(producer, std::move(ln));  // y's producer is now the LayerNormalization
      ++fused;
    }
  // Captured by name: clang before 16 cannot capture a structured binding.
  g.remove_nodes_if([&covered = covered](const Node& n) { return covered.count(&n) != 0; });
  g.remove_unused_values();
  if (!g.opsets.count("") || g.opsets[""] < kLayerNormOpset) g.opsets[""] = kLayerNormOpset;
  return fused;
}

}  // namespace cb
