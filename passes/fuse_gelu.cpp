// GELU fusion (passes/fuse_gelu.h). The two forms it recognises:
//
//   tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   -> Gelu(x) {approximate = "tanh"}
//   erf:  0.5 x (1 + erf(x / sqrt(2)))                       -> Gelu(x) {approximate = "none"}
//
// Algorithm. Each Tanh or Erf node t is a candidate anchor:
//   1. The argument of t is read as a polynomial in one value x: starting at
//      t's input, Add, Sub, Mul, Div by a constant and Pow by a constant
//      1, 2 or 3 are expanded into coefficients of x^0..x^3 through every
//      value that is used exactly once; what is left (leaves) must be
//      constants or one and the same non-constant value, which is x. So the
//      argument may be written in any association and order: Pow(x, 3) or
//      x*x*x, sqrt(2/pi) outside the sum or distributed over it, x/sqrt(2)
//      or x*0.7071. The polynomial must be sqrt(2/pi) x + sqrt(2/pi)
//      0.044715 x^3 (tanh) or x / sqrt(2) (erf).
//   2. t's output must be used once, by an Add with the constant 1: s = 1 + t.
//   3. From s upwards, through values used once, each user a Mul: the tree
//      of Muls below the current Mul's output (through values used once) is
//      flattened into factors; one of them is s, and the rest, read as in 1,
//      must multiply to 0.5 x. The first Mul where they do is the GELU's
//      output y: 0.5*x*(1+t), (0.5*x)*(1+t), x*(0.5*(1+t)), (x*(1+t))*0.5,
//      (x/2)*(1+t) all end there. At most kMaxClimb Muls are climbed.
// Constants are f32 scalars or single-element tensors of rank <= x's (so
// they do not broadcast x to a bigger shape), compared with a relative
// tolerance of kRelTol. Every intermediate value (everything the match
// covers but x and y) must be used exactly once, by the pattern, and be
// neither a graph output nor read by a subgraph: otherwise fusing would
// have to keep computing it, and the match is left alone.
//
// Rewrite: a Gelu node reading x takes over y itself (y keeps its name, its
// uses and its place among the graph outputs), placed where y's producer
// was; the matched nodes are removed, then the values and constants nothing
// uses any more. The default-domain opset is raised to 20 (Gelu's) so an
// exported fused graph is valid ONNX.
#include "passes/fuse_gelu.h"

#include <array>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "passes/canonicalize.h"
#include "passes/disjoint_matches.h"
#include "support/error.h"

namespace cb {

namespace {

constexpr double kRelTol = 1e-4;
constexpr int kMaxDegree = 3;
constexpr int kMaxClimb = 3;
constexpr int64_t kGeluOpset = 20;

// Coefficients of x^0 .. x^kMaxDegree.
using Poly = std::array<double, kMaxDegree + 1>;

Poly constant_poly(double c) { return {c, 0, 0, 0}; }
Poly x_poly() { return {0, 1, 0, 0}; }

std::optional<Poly> times(const Poly& a, const Poly& b) {
  Poly r{};
  for (int i = 0; i <= kMaxDegree; ++i)
    for (int j = 0; j <= kMaxDegree; ++j) {
      if (a[size_t(i)] == 0 || b[size_t(j)] == 0) continue;
      if (i + j > kMaxDegree) return std::nullopt;
      r[size_t(i + j)] += a[size_t(i)] * b[size_t(j)];
    }
  return r;
}

// p matches `expected` coefficient by coefficient within kRelTol (terms
// expected to be 0 within kRelTol of the largest expected coefficient).
bool close_to(const Poly& p, const Poly& expected) {
  double scale = 0;
  for (double e : expected) scale = std::max(scale, std::fabs(e));
  for (size_t k = 0; k < p.size(); ++k) {
    const double tol = kRelTol * (expected[k] != 0 ? std::fabs(expected[k]) : scale);
    if (!(std::fabs(p[k] - expected[k]) <= tol)) return false;
  }
  return true;
}

// One attempt at a match around an anchor (the Tanh or Erf node): x, the
// GELU's output y, the nodes covered (y's producer among them), and the
// largest rank of the constants read.
struct Match {
  Value* x = nullptr;
  Value* y = nullptr;
  std::vector<Node*> nodes;
  size_t max_constant_rank = 0;
  std::string approximate;
  const Node* anchor = nullptr;
};

class GeluMatcher {
 public:
  explicit GeluMatcher(Graph& g) : g_(g) {
    for (auto& n : g.nodes()) {
      for (Value* v : n->inputs)
        if (v) ++uses_[v];
    }
    shared_ = pass_util::externally_read_values(g);
  }

  std::optional<Match> match(Node& anchor) {
    if (!anchor.domain.empty() || anchor.inputs.size() != 1 || anchor.outputs.size() != 1 || !anchor.input(0) ||
        !anchor.outputs[0])
      return std::nullopt;
    const bool tanh = anchor.op_type == "Tanh";
    if (!tanh && anchor.op_type != "Erf") return std::nullopt;
    Match m;
    m.anchor = &anchor;
    m.approximate = tanh ? "tanh" : "none";

    // 1. The argument: a polynomial in x.
    std::optional<Poly> arg = poly(anchor.input(0), m);
    if (!arg || !m.x) return std::nullopt;
    constexpr double kSqrt2OverPi = 0.7978845608028654, kCubic = 0.044715, kInvSqrt2 = 0.7071067811865476;
    const Poly want = tanh ? Poly{0, kSqrt2OverPi, 0, kSqrt2OverPi * kCubic} : Poly{0, kInvSqrt2, 0, 0};
    if (!close_to(*arg, want)) return std::nullopt;
    m.nodes.push_back(&anchor);

    // 2. s = 1 + t.
    Value* t = anchor.outputs[0];
    Node* add = only_user(t);
    if (!add || add->op_type != "Add" || !add->domain.empty() || add->inputs.size() != 2 || !add->outputs[0])
      return std::nullopt;
    Value* one = add->input(0) == t ? add->input(1) : add->input(0);
    std::optional<double> c = scalar(one, m);
    if (!c || !close_to(constant_poly(*c), constant_poly(1.0))) return std::nullopt;
    Value* s = add->outputs[0];
    m.nodes.push_back(add);

    // 3. Climb the Muls above s until the other factors make 0.5 x.
    Value* cur = s;
    for (int level = 0; level < kMaxClimb; ++level) {
      Node* mul = only_user(cur);
      if (!mul || mul->op_type != "Mul" || !mul->domain.empty() || mul->inputs.size() != 2 || !mul->outputs[0])
        return std::nullopt;
      Value* y = mul->outputs[0];
      Match attempt = m;
      std::vector<Value*> factors;
      flatten_product(y, /*root=*/true, factors, attempt.nodes);
      Poly rest = constant_poly(1.0);
      int s_count = 0;
      for (Value* f : factors) {
        if (f == s) {
          ++s_count;
          continue;
        }
        std::optional<Poly> p = poly(f, attempt);
        if (!p) return std::nullopt;  // a factor that is not a function of x: no higher Mul can fix that
        std::optional<Poly> r = times(rest, *p);
        if (!r) return std::nullopt;
        rest = *r;
      }
      if (s_count != 1) return std::nullopt;
      if (close_to(rest, Poly{0, 0.5, 0, 0})) {
        attempt.y = y;
        if (!constants_fit(attempt)) return std::nullopt;
        return attempt;
      }
      cur = y;
    }
    return std::nullopt;
  }

 private:
  // Used exactly once, by a node of this graph, and nowhere else.
  bool single_use(const Value* v) const {
    auto it = uses_.find(v);
    return it != uses_.end() && it->second == 1 && !shared_.count(v);
  }

  // The one node reading v, when v is used exactly once.
  Node* only_user(const Value* v) {
    if (!single_use(v)) return nullptr;
    for (auto& n : g_.nodes())
      for (Value* in : n->inputs)
        if (in == v) return n.get();
    return nullptr;
  }

  // The value of an f32 constant with one element (of any numeric dtype for
  // a Pow exponent, which ONNX lets differ from the base's).
  std::optional<double> scalar(const Value* v, Match& m, bool any_dtype = false) const {
    const Tensor* t = pass_util::constant_value(g_, v);
    if (!t || t->numel() != 1 || t->dtype() == DType::boolean) return std::nullopt;
    if (t->dtype() != DType::f32 && !any_dtype) return std::nullopt;
    m.max_constant_rank = std::max(m.max_constant_rank, t->rank());
    return t->get_double(0);
  }

  // The factors of the Mul tree at v: through Muls whose outputs are used
  // once (v itself when root), appending those Muls to `nodes`.
  void flatten_product(Value* v, bool root, std::vector<Value*>& factors, std::vector<Node*>& nodes) {
    Node* p = v->producer;
    if (p && p->op_type == "Mul" && p->domain.empty() && p->inputs.size() == 2 && p->input(0) && p->input(1) &&
        (root || single_use(v))) {
      flatten_product(p->input(0), false, factors, nodes);
      flatten_product(p->input(1), false, factors, nodes);
      nodes.push_back(p);
      return;
    }
    factors.push_back(v);
  }

  // v as a polynomial in m.x (which the first non-constant leaf sets), or
  // nullopt when v is not one. Expands through values used once, appending
  // their producers to m.nodes.
  std::optional<Poly> poly(Value* v, Match& m) {
    if (!v) return std::nullopt;
    if (v->is_constant()) {
      std::optional<double> c = scalar(v, m);
      if (!c) return std::nullopt;
      return constant_poly(*c);
    }
    if (v == m.x) return x_poly();
    Node* p = v->producer;
    const bool arithmetic = p && p->domain.empty() && p->inputs.size() == 2 && p->input(0) && p->input(1) &&
                            (p->op_type == "Add" || p->op_type == "Sub" || p->op_type == "Mul" || p->op_type == "Div" ||
                             p->op_type == "Pow");
    if (!arithmetic || !single_use(v)) {
      if (m.x) return std::nullopt;  // a second non-constant leaf
      const DType dt = v->type.dtype;
      if (dt != DType::f32 && dt != DType::undefined) return std::nullopt;
      m.x = v;
      return x_poly();
    }
    m.nodes.push_back(p);
    const std::string& op = p->op_type;
    if (op == "Div" || op == "Pow") {
      std::optional<double> c = scalar(p->input(1), m, /*any_dtype=*/op == "Pow");
      if (!c) return std::nullopt;
      std::optional<Poly> a = poly(p->input(0), m);
      if (!a) return std::nullopt;
      if (op == "Div") {
        if (*c == 0) return std::nullopt;
        for (double& k : *a) k /= *c;
        return a;
      }
      if (*c != 1 && *c != 2 && *c != 3) return std::nullopt;
      Poly r = constant_poly(1.0);
      for (int i = 0; i < int(*c); ++i) {
        std::optional<Poly> next = times(r, *a);
        if (!next) return std::nullopt;
        r = *next;
      }
      return r;
    }
    std::optional<Poly> a = poly(p->input(0), m);
    if (!a) return std::nullopt;
    std::optional<Poly> b = poly(p->input(1), m);
    if (!b) return std::nullopt;
    if (op == "Mul") return times(*a, *b);
    Poly r = *a;
    for (size_t k = 0; k < r.size(); ++k) r[k] += op == "Add" ? (*b)[k] : -(*b)[k];
    return r;
  }

  // Single-element constants of rank <= x's do not change the shape.
  bool constants_fit(const Match& m) const {
    if (m.max_constant_rank == 0) return true;
    const Shape& s = m.x->type.shape;
    return s.rank_known && s.rank() >= m.max_constant_rank;
  }

  Graph& g_;
  std::map<const Value*, int> uses_;
  std::set<const Value*> shared_;  // graph outputs and values subgraphs read
};

// "scope/Tanh_12" -> "scope/Gelu_12"; other names get "/Gelu" appended.
std::string gelu_name(const Node& anchor) {
  std::string name = anchor.name;
  const size_t at = name.rfind(anchor.op_type);
  if (at == std::string::npos) return name.empty() ? "Gelu" : name + "/Gelu";
  return name.replace(at, anchor.op_type.size(), "Gelu");
}

class GeluFusion : public Pass {
 public:
  std::string name() const override { return "gelu-fusion"; }

  bool run(Graph& g) override {
    GeluMatcher matcher(g);
    auto [matches, covered] = disjoint_matches(g, matcher);
    if (matches.empty()) return false;

    for (const Match& m : matches) {
      Node* producer = m.y->producer;
      CB_CHECK(producer && covered.count(producer),
               "gelu fusion: the matched output '" << m.y->name << "' is not produced by the match");
      auto gelu = std::make_unique<Node>();
      gelu->op_type = "Gelu";
      gelu->name = gelu_name(*m.anchor);
      gelu->inputs = {m.x};
      gelu->outputs = {m.y};
      gelu->attrs["approximate"] = m.approximate;
      g.insert_node_before(producer, std::move(gelu));  // y's producer is now the Gelu
    }
    // Captured by name: clang before 16 cannot capture a structured binding.
    g.remove_nodes_if([&covered = covered](const Node& n) { return covered.count(&n) != 0; });
    g.remove_unused_values();
    if (!g.opsets.count("") || g.opsets[""] < kGeluOpset) g.opsets[""] = kGeluOpset;
    return true;
  }
};

}  // namespace

bool fuse_gelu(Graph& g) { return GeluFusion().run(g); }

}  // namespace cb
