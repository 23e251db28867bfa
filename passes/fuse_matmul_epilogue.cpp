// MatMul epilogue fusion (passes/fuse_matmul_epilogue.h).
//
// Anchors, each f32 with types known (the pass runs on canonicalised graphs):
//   Gemm(A, B[, C]) with alpha = 1, transA = 0 and either no C, or beta = 1
//     and C of shape [N] (or a constant [1, N], which is reshaped to [N]);
//     other Gemms (a [M, N] or [M, 1] C, scales) are left alone;
//   MatMul(A, B) with A of rank >= 2 and B of rank 2 (a weight; attention's
//     batched products have B of rank 4 and are left alone).
// From the anchor's output y, through values used exactly once and read by
// neither a graph output nor a subgraph:
//   0. (Gemm) the Reshape that restores the leading dims (below);
//   1. when the anchor has no bias yet: an Add of y and an f32 value of shape
//      [N] (either operand order) is taken in as the bias;
//   2. a Gelu (approximate "tanh" or "none") is taken in as the activation
//      (run fuse-gelu first: exporters spell GELU out).
// Rewrite: one FusedMatMul(A, B[, bias]) {transB, activation} takes over the
// last matched node's output (its name, uses and place among the graph
// outputs) and is placed where that node was, so every input is defined
// before it; the matched nodes are removed, then values nothing uses.
//
// A Gemm between two Reshapes (TorchScript GPT-2 exports: Reshape to
// [B*T, K] before, back to [B, T, N] after, that shape computed at run time
// from Shape/Gather/Concat) reads the Reshape's input [B, T, K] instead and
// produces the second Reshape's output, when the types show that the leading
// dims agree (same static sizes or symbols); see unflatten(). The pipeline's
// dead-code elimination then removes the first Reshape and the Shape ops.
#include "passes/fuse_matmul_epilogue.h"

#include <map>
#include <set>

#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "passes/canonicalize.h"

namespace cb {

namespace {

bool is_f32(const Value* v) { return v && v->type.dtype == DType::f32; }

int64_t rank_of(const Value* v) { return v && v->type.shape.rank_known ? int64_t(v->type.shape.rank()) : -1; }

struct Match {
  std::vector<Node*> nodes;  // anchor first, the node producing `output` last
  Value *a = nullptr, *b = nullptr, *bias = nullptr, *output = nullptr;
  bool trans_b = false;
  MatMulActivation activation = MatMulActivation::none;
};

class EpilogueFusion {
 public:
  explicit EpilogueFusion(Graph& g) : g_(g), users_(g.users()), shared_(pass_util::externally_read_values(g)) {}

  int64_t run() {
    std::vector<Match> matches;
    for (auto& n : g_.nodes())
      if (auto m = match(*n)) matches.push_back(*m);
    for (Match& m : matches) rewrite(m);
    if (matches.empty()) return 0;
    std::set<const Node*> gone;
    for (const Match& m : matches) gone.insert(m.nodes.begin(), m.nodes.end());
    g_.remove_nodes_if([&gone](const Node& n) { return gone.count(&n) != 0; });
    g_.remove_unused_values();
    return int64_t(matches.size());
  }

 private:
  std::optional<Match> match(Node& n) {
    if (!n.domain.empty() || (n.op_type != "Gemm" && n.op_type != "MatMul")) return std::nullopt;
    Match m;
    m.a = n.input(0);
    m.b = n.input(1);
    if (!is_f32(m.a) || !is_f32(m.b) || !is_f32(n.outputs[0]) || rank_of(m.b) != 2) return std::nullopt;
    if (n.op_type == "MatMul") {
      if (rank_of(m.a) < 2) return std::nullopt;
    } else {
      if (rank_of(m.a) != 2 || n.attr_float("alpha", 1.0f) != 1.0f || n.attr_int("transA", 0) != 0) return std::nullopt;
      m.trans_b = n.attr_int("transB", 0) != 0;
      if (Value* c = n.input(2); c && n.attr_float("beta", 1.0f) != 0.0f) {
        if (n.attr_float("beta", 1.0f) != 1.0f) return std::nullopt;
        m.bias = bias_of(c, n_of(m));
        if (!m.bias) return std::nullopt;
      }
    }
    m.nodes.push_back(&n);
    m.output = n.outputs[0];
    if (n.op_type == "Gemm") unflatten(m);
    if (!m.bias)
      if (Node* add = sole_user(m.output, "Add")) {
        Value* other = add->input(0) == m.output ? add->input(1) : add->input(0);
        if (add->inputs.size() == 2 && is_f32(other) && other != m.output && rank_of(other) == 1 &&
            other->type.shape.dims[0].is_static() && other->type.shape.dims[0].value == n_of(m) &&
            add->outputs[0]->type == m.output->type) {
          m.bias = other;
          m.nodes.push_back(add);
          m.output = add->outputs[0];
        }
      }
    if (Node* gelu = sole_user(m.output, "Gelu")) {
      const std::string approximate = gelu->attr_string("approximate", "none");
      if (approximate == "tanh" || approximate == "none") {
        m.activation = approximate == "tanh" ? MatMulActivation::gelu_tanh : MatMulActivation::gelu_erf;
        m.nodes.push_back(gelu);
        m.output = gelu->outputs[0];
      }
    }
    return m;
  }

  // Reshape(x [..., K] -> [rows, K]) -> Gemm -> Reshape(-> [..., N]), as the
  // TorchScript exporter writes GPT-2's Conv1D: the product reads x and
  // produces the second Reshape's output directly, when that output's leading
  // dims are known to be x's (the same static sizes or symbols). The first
  // Reshape and the Shape arithmetic behind the second are then dead code.
  void unflatten(Match& m) {
    Node* flatten = m.a->producer;
    if (!flatten || flatten->op_type != "Reshape" || !flatten->domain.empty()) return;
    Value* x = flatten->input(0);
    if (!is_f32(x) || rank_of(x) < 3 || !x->type.shape.dims.back().same_as(m.a->type.shape.dims.back())) return;
    Node* restore = sole_user(m.output, "Reshape");
    if (!restore) return;
    const Shape& xs = x->type.shape;
    const Shape& ys = restore->outputs[0]->type.shape;
    if (!ys.rank_known || ys.rank() != xs.rank() || !ys.dims.back().is_static() || ys.dims.back().value != n_of(m))
      return;
    for (size_t i = 0; i + 1 < xs.rank(); ++i)
      if (!xs.dims[i].same_as(ys.dims[i])) return;
    m.a = x;
    m.nodes.push_back(restore);
    m.output = restore->outputs[0];
  }

  // N of the product: B's columns (rows when transposed); -1 when not static.
  static int64_t n_of(const Match& m) {
    const Dim& d = m.b->type.shape.dims[m.trans_b ? 0 : 1];
    return d.is_static() ? d.value : -1;
  }

  // Gemm's C as a [N] bias: itself when it is [N], a reshaped copy of a constant [1, N].
  Value* bias_of(Value* c, int64_t n) {
    if (!is_f32(c) || n < 0) return nullptr;
    const Shape& s = c->type.shape;
    if (rank_of(c) == 1 && s.dims[0].is_static() && s.dims[0].value == n) return c;
    const Tensor* t = pass_util::constant_value(g_, c);
    if (rank_of(c) == 2 && t && t->dims() == std::vector<int64_t>{1, n})
      return g_.add_constant(c->name + "/row", t->reshaped({n}));
    return nullptr;
  }

  // The one user of v when it is an `op` node and v is not read elsewhere.
  Node* sole_user(const Value* v, const char* op) const {
    if (shared_.count(v)) return nullptr;
    auto it = users_.find(v);
    if (it == users_.end() || it->second.size() != 1) return nullptr;
    Node* u = it->second[0];
    if (u->op_type != op || !u->domain.empty() || u->outputs.size() != 1 || !u->outputs[0]) return nullptr;
    int uses = 0;
    for (const Value* in : u->inputs) uses += in == v;
    return uses == 1 ? u : nullptr;
  }

  void rewrite(const Match& m) {
    auto f = std::make_unique<Node>();
    f->op_type = kFusedMatMulOp;
    f->domain = kCodebookDomain;
    f->name = m.nodes.front()->name;
    f->inputs = {m.a, m.b};
    if (m.bias) f->inputs.push_back(m.bias);
    f->outputs = {m.output};
    if (m.trans_b) f->attrs["transB"] = int64_t(1);
    if (m.activation != MatMulActivation::none)
      f->attrs["activation"] = std::string(matmul_activation_name(m.activation));
    g_.insert_node_before(m.nodes.back(), std::move(f));  // m.output's producer is now the fused node
  }

  Graph& g_;
  std::map<const Value*, std::vector<Node*>> users_;
  std::set<const Value*> shared_;
};

}  // namespace

int64_t fuse_matmul_epilogue(Graph& g) { return EpilogueFusion(g).run(); }

}  // namespace cb
