// Attention fusion (passes/fuse_attention.h).
//
// Algorithm. Each default-domain Softmax over the last axis of a rank-4
// value is a candidate:
//   1. Scores side. From the Softmax input back to a MatMul (the scores
//      Q @ Kt, both rank 4), through values used once, each node one of
//        Mul / Div by a constant scalar c         x * c, x / c   (scale)
//        Add(x, m), Add(m, x), Sub(x, m)          m a side value (the mask)
//        Where(cond, x, c) or Where(cond, c, x)   c a constant scalar <= -1e30
//        Cast to f32, Identity
//      (the chain operand of an Add is the one that reaches the MatMul this
//      way). The Softmax input is then f(s) = scale * s + f(0) exactly up to
//      f32 rounding, and the pass builds mask = f(0) from the same side
//      values: a Mul/Div applies to the mask built so far, Add/Sub add the
//      side value, a Where becomes Where(cond, mask or 0, c). Masked entries
//      stay <= -1e30, which absorb any finite score in f32, so the fused op
//      gives the graph's values also where every key is masked (the
//      left-padded rows of a padded batch).
//   2. Probabilities side. From the Softmax output, through values used once
//      (Cast to f32, Identity), and optionally Where(IsNaN(p), 0, p) (the
//      Optimum export's guard: nan_to_zero = 1), to the input 0 of a MatMul
//      by V (rank 4).
//   Cached keys (passes/kv_cache.h's graphs). The scores may be
//      Concat(Q @ Kt_past, Q @ Kt) along the keys (one Q), and the
//      probabilities split at the cache's end E = Shape(K)[3] of a cache
//      input K whose slot count is Kt_past's:
//        Add(Slice(p, 0, E) @ V_past, Slice(p, E, end) @ V)
//      The fused op then takes Kt_past and V_past as inputs 4 and 5 and the
//      Add's output; its mask covers [cache | new] as the Softmax's did.
//   3. Every value the match covers, other than Q, Kt, V and the side values,
//      is used only inside it and is neither a graph output nor read by a
//      subgraph: a tap of the attention pattern (hook_pattern) or of the
//      scores keeps that layer unfused.
// Rewrite: the mask nodes and a codebook.Attention node (Q, Kt, V, mask;
// scale; nan_to_zero) placed before the probs MatMul, whose output the
// Attention node takes over; the matched nodes go, then the values and
// constants nothing reads any more.
#include "passes/fuse_attention.h"

#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ir/attention.h"
#include "ir/builder.h"
#include "ir/codebook.h"
#include "ir/verifier.h"
#include "passes/canonicalize.h"
#include "passes/disjoint_matches.h"

namespace cb {

namespace {

using pass_util::is_onnx_op;

constexpr int kMaxChain = 12;  // nodes between the scores MatMul and the Softmax

bool rank4_f32(const Value* v) {
  return v && (v->type.dtype == DType::f32) && v->type.shape.rank_known && v->type.shape.rank() == 4;
}

// One step of the scores chain, from the scores outwards.
struct Step {
  enum Kind { mul, div, add, sub, where_keep_if_true, where_keep_if_false } kind;
  Value* side = nullptr;  // the constant (mul, div, where) or the added value
  Value* cond = nullptr;  // where
};

struct AttentionMatch {
  Node* softmax = nullptr;
  Node* scores = nullptr;  // Q @ Kt
  Node* probs = nullptr;   // P @ V
  // With cached keys: Q @ Kt_past, P[.., :E] @ V_past, and the Add of the two
  // products, whose output the fused op takes over.
  Node* past_scores = nullptr;
  Node* past_probs = nullptr;
  Node* sum = nullptr;
  std::vector<Step> steps;
  double scale = 1;
  bool nan_to_zero = false;
  std::vector<Node*> nodes;
};

class AttentionMatcher {
 public:
  explicit AttentionMatcher(Graph& g) : g_(g), users_(g.users()), shared_(pass_util::externally_read_values(g)) {}

  std::optional<AttentionMatch> match(Node& sm) {
    if (!is_onnx_op(&sm, "Softmax") || sm.inputs.size() != 1 || sm.outputs.size() != 1 || !sm.outputs[0]) return {};
    Value* x = sm.input(0);
    if (!rank4_f32(x)) return {};
    const int64_t axis = sm.attr_int("axis", -1);
    if (axis != -1 && axis != 3) return {};
    AttentionMatch m;
    m.softmax = &sm;
    m.nodes.push_back(&sm);
    if (!match_scores(x, m) || !match_probs(sm.outputs[0], m)) return {};
    return m;
  }

 private:
  int uses(const Value* v) const {
    auto it = users_.find(v);
    return it == users_.end() ? 0 : int(it->second.size());
  }
  // Read by exactly `n` node inputs of this graph and nowhere else.
  bool used_only_by(const Value* v, int n) const { return uses(v) == n && !shared_.count(v); }
  Node* only_user(const Value* v) const { return used_only_by(v, 1) ? users_.at(v)[0] : nullptr; }

  // A constant f32 scalar (one element, rank <= 4 so it broadcasts nothing).
  std::optional<double> scalar(const Value* v) const { return pass_util::constant_f32_scalar(g_, v); }

  static bool passes_f32(const Node* p) {
    return is_onnx_op(p, "Identity") || (is_onnx_op(p, "Cast") && p->attr_int("to", 0) == 1 /* FLOAT */);
  }

  // v is computed from a MatMul through chain ops on values used once.
  bool reaches_matmul(const Value* v, int depth) const {
    if (!v || depth > kMaxChain || !used_only_by(v, 1)) return false;
    const Node* p = v->producer;
    if (is_onnx_op(p, "MatMul")) return true;
    if (!p || !p->domain.empty()) return false;
    static const std::set<std::string> kChainOps = {"Mul", "Div", "Add", "Sub", "Where", "Cast", "Identity", "Concat"};
    if (!kChainOps.count(p->op_type)) return false;
    for (const Value* in : p->inputs)
      if (reaches_matmul(in, depth + 1)) return true;
    return false;
  }

  // A side value: f32 (or not yet typed) of rank <= 4, not reaching the scores.
  bool side_ok(const Value* v) const {
    return v && (v->type.dtype == DType::f32 || v->type.dtype == DType::undefined) &&
           (!v->type.shape.rank_known || v->type.shape.rank() <= 4) && v->type.shape.rank_known;
  }

  bool match_scores(Value* x, AttentionMatch& m) {
    std::vector<Step> outward;  // collected from the Softmax back, reversed at the end
    for (int depth = 0;; ++depth) {
      if (depth > kMaxChain || !used_only_by(x, 1)) return false;
      Node* p = x->producer;
      if (!p || !p->domain.empty()) return false;
      if (p->op_type == "MatMul") {
        if (!rank4_matmul(p)) return false;
        m.scores = p;
        m.nodes.push_back(p);
        break;
      }
      if (p->op_type == "Concat") {
        if (!match_cached_scores(p, m)) return false;
        break;
      }
      m.nodes.push_back(p);
      if (passes_f32(p) && p->inputs.size() == 1 && p->input(0) && p->input(0)->type.dtype == DType::f32) {
        x = p->input(0);
        continue;
      }
      if (p->inputs.size() == 2 && p->input(0) && p->input(1) && (p->op_type == "Mul" || p->op_type == "Div")) {
        const int c = scalar(p->input(1)) ? 1 : p->op_type == "Mul" && scalar(p->input(0)) ? 0 : -1;
        if (c < 0) return false;
        const double v = *scalar(p->input(size_t(c)));
        if (p->op_type == "Div" && v == 0) return false;
        m.scale = p->op_type == "Mul" ? m.scale * v : m.scale / v;
        outward.push_back({p->op_type == "Mul" ? Step::mul : Step::div, p->input(size_t(c))});
        x = p->input(size_t(1 - c));
        continue;
      }
      if (p->inputs.size() == 2 && p->input(0) && p->input(1) && (p->op_type == "Add" || p->op_type == "Sub")) {
        const bool first = reaches_matmul(p->input(0), depth + 1);
        const bool second = p->op_type == "Add" && reaches_matmul(p->input(1), depth + 1);
        if (first == second) return false;
        Value* side = p->input(first ? 1 : 0);
        if (!side_ok(side)) return false;
        outward.push_back({p->op_type == "Add" ? Step::add : Step::sub, side});
        x = p->input(first ? 0 : 1);
        continue;
      }
      if (is_onnx_op(p, "Where") && p->inputs.size() == 3 && p->input(0) && p->input(1) && p->input(2) &&
          p->input(0)->type.dtype == DType::boolean && p->input(0)->type.shape.rank_known &&
          p->input(0)->type.shape.rank() <= 4) {
        const int c = scalar(p->input(2)) ? 2 : scalar(p->input(1)) ? 1 : -1;
        if (c < 0 || !(*scalar(p->input(size_t(c))) <= kAttentionMasked)) return false;
        outward.push_back(
            {c == 2 ? Step::where_keep_if_true : Step::where_keep_if_false, p->input(size_t(c)), p->input(0)});
        x = p->input(size_t(3 - c));
        continue;
      }
      return false;
    }
    m.steps.assign(outward.rbegin(), outward.rend());
    return std::isfinite(m.scale);
  }

  static bool rank4_matmul(const Node* p) {
    return is_onnx_op(p, "MatMul") && p->inputs.size() == 2 && rank4_f32(p->input(0)) && rank4_f32(p->input(1)) &&
           p->outputs.size() == 1 && p->outputs[0];
  }

  // The MatMul producing v, read only there.
  Node* matmul_used_once(const Value* v) const {
    return v && used_only_by(v, 1) && rank4_matmul(v->producer) ? v->producer : nullptr;
  }

  // Concat(Q @ Kt_past, Q @ Kt) along the keys, one Q.
  bool match_cached_scores(Node* cat, AttentionMatch& m) {
    const int64_t axis = cat->attr_int("axis", 0);
    if (cat->inputs.size() != 2 || (axis != -1 && axis != 3)) return false;
    Node* past = matmul_used_once(cat->input(0));
    Node* now = matmul_used_once(cat->input(1));
    if (!past || !now || past->input(0) != now->input(0)) return false;
    m.past_scores = past;
    m.scores = now;
    m.nodes.insert(m.nodes.end(), {cat, past, now});
    return true;
  }

  std::optional<int64_t> i64_scalar(const Value* v) const {
    const Tensor* t = v ? pass_util::constant_value(g_, v) : nullptr;
    if (!t || t->dtype() != DType::i64 || t->numel() != 1) return {};
    return t->data<int64_t>()[0];
  }

  // e is Shape(K)[3:4] of a rank-4 K whose dim 3 is the same as `slots`.
  bool is_slot_count(const Value* e, const Dim& slots) const {
    const Node* sl = e ? e->producer : nullptr;
    if (!is_onnx_op(sl, "Slice") || sl->inputs.size() < 3 || sl->inputs.size() > 4 || i64_scalar(sl->input(1)) != 3 ||
        i64_scalar(sl->input(2)) != 4 || (sl->inputs.size() == 4 && i64_scalar(sl->input(3)) != 0))
      return false;
    const Node* shape = sl->input(0) ? sl->input(0)->producer : nullptr;
    if (!is_onnx_op(shape, "Shape") || shape->attrs.count("start") || shape->attrs.count("end")) return false;
    const Shape& k = shape->input(0)->type.shape;
    return k.rank_known && k.rank() == 4 && k.dims[3].same_as(slots);
  }

  // p (read by exactly two Slices) split at the cache's end E into the
  // products by V_past and by V, added: Add(Slice(p, 0, E) @ V_past,
  // Slice(p, E, end) @ V), the slices along the last axis.
  bool match_cached_probs(Value* p, AttentionMatch& m) {
    if (!m.past_scores) return false;
    const Dim& slots = m.past_scores->input(1)->type.shape.dims[3];
    Node* cache_slice = nullptr;
    Node* new_slice = nullptr;
    for (Node* u : users_.at(p)) {
      if (!is_onnx_op(u, "Slice") || u->input(0) != p || u->inputs.size() < 4 || u->inputs.size() > 5 ||
          u->outputs.size() != 1 || !u->outputs[0])
        return false;
      const std::optional<int64_t> axis = i64_scalar(u->input(3));
      if (axis != -1 && axis != 3) return false;
      if (u->inputs.size() == 5 && i64_scalar(u->input(4)) != 1) return false;
      if (i64_scalar(u->input(1)) == 0 && is_slot_count(u->input(2), slots))
        cache_slice = u;
      else if (is_slot_count(u->input(1), slots) && i64_scalar(u->input(2)) >= (int64_t(1) << 62))
        new_slice = u;
    }
    if (!cache_slice || !new_slice) return false;
    Node* from_cache = only_user(cache_slice->outputs[0]);
    Node* from_new = only_user(new_slice->outputs[0]);
    if (!rank4_matmul(from_cache) || !rank4_matmul(from_new) || from_cache->input(0) != cache_slice->outputs[0] ||
        from_new->input(0) != new_slice->outputs[0])
      return false;
    Node* sum = only_user(from_cache->outputs[0]);
    if (!is_onnx_op(sum, "Add") || sum != only_user(from_new->outputs[0]) || sum->inputs.size() != 2 ||
        sum->input(0) == sum->input(1) || sum->outputs.size() != 1 || !sum->outputs[0])
      return false;
    const Shape& vp = from_cache->input(1)->type.shape;
    if (!vp.dims[2].same_as(slots)) return false;
    m.past_probs = from_cache;
    m.probs = from_new;
    m.sum = sum;
    m.nodes.insert(m.nodes.end(), {cache_slice, new_slice, from_cache, from_new, sum});
    return true;
  }

  bool match_probs(Value* p, AttentionMatch& m) {
    for (int depth = 0; depth < kMaxChain; ++depth) {
      if (shared_.count(p)) return false;
      if (m.past_scores && used_only_by(p, 2) && match_cached_probs(p, m)) return true;
      if (Node* u = only_user(p)) {
        if (passes_f32(u) && u->outputs.size() == 1 && u->outputs[0]) {
          m.nodes.push_back(u);
          p = u->outputs[0];
          continue;
        }
        if (!m.past_scores && rank4_matmul(u) && u->input(0) == p && u->input(1) != p) {
          m.probs = u;
          m.nodes.push_back(u);
          return true;
        }
        return false;
      }
      // Where(IsNaN(p), 0, p): p read by exactly those two nodes.
      if (!used_only_by(p, 2) || m.nan_to_zero) return false;
      Node* isnan = nullptr;
      Node* where = nullptr;
      for (Node* u : users_.at(p)) {
        if (is_onnx_op(u, "IsNaN")) isnan = u;
        if (is_onnx_op(u, "Where")) where = u;
      }
      if (!isnan || !where || isnan->outputs.size() != 1 || !only_user(isnan->outputs[0]) ||
          only_user(isnan->outputs[0]) != where || where->inputs.size() != 3 || where->input(0) != isnan->outputs[0] ||
          where->input(2) != p || scalar(where->input(1)) != std::optional<double>(0.0) || !where->outputs[0])
        return false;
      m.nan_to_zero = true;
      m.nodes.push_back(isnan);
      m.nodes.push_back(where);
      p = where->outputs[0];
    }
    return false;
  }

  Graph& g_;
  std::map<const Value*, std::vector<Node*>> users_;
  std::set<const Value*> shared_;
};

// "scope/Softmax_3" -> "scope/Attention_3"; other names get "/Attention".
std::string attention_name(const Node& softmax) {
  std::string name = softmax.name;
  const size_t at = name.rfind("Softmax");
  if (at == std::string::npos) return name.empty() ? "Attention" : name + "/Attention";
  return name.replace(at, 7, "Attention");
}

void rewrite(Graph& g, const AttentionMatch& m) {
  Builder b(g);
  b.set_insertion_point_before(m.probs);
  const std::string name = attention_name(*m.softmax);
  auto scope = b.scope(name);
  Value* mask = nullptr;
  for (const Step& s : m.steps) switch (s.kind) {
      case Step::mul:
        if (mask) mask = b.mul(mask, s.side, "mask");
        break;
      case Step::div:
        if (mask) mask = b.div(mask, s.side, "mask");
        break;
      case Step::add: mask = mask ? b.add(mask, s.side, "mask") : s.side; break;
      case Step::sub: mask = mask ? b.sub(mask, s.side, "mask") : b.neg(s.side); break;
      case Step::where_keep_if_true:
        mask = b.named_op("Where", {s.cond, mask ? mask : b.f32(0.f, "zero"), s.side}, "mask");
        break;
      case Step::where_keep_if_false:
        mask = b.named_op("Where", {s.cond, s.side, mask ? mask : b.f32(0.f, "zero")}, "mask");
        break;
    }
  std::vector<Value*> inputs = {m.scores->input(0), m.scores->input(1), m.probs->input(1)};
  if (mask || m.past_scores) inputs.push_back(mask);
  if (m.past_scores) inputs.insert(inputs.end(), {m.past_scores->input(1), m.past_probs->input(1)});
  Builder::Attrs attrs = {{"scale", float(m.scale)}};
  if (m.nan_to_zero) attrs["nan_to_zero"] = int64_t(1);
  Value* out = m.sum ? m.sum->outputs[0] : m.probs->outputs[0];
  b.create(kAttentionOp, inputs, {out}, attrs, name, kCodebookDomain);
}

}  // namespace

bool FuseAttentionPass::run(Graph& g) {
  fused_ = 0;
  if (g.nodes().empty()) return false;
  AttentionMatcher matcher(g);
  auto [matches, covered] = disjoint_matches(g, matcher);
  if (matches.empty()) return false;
  for (const AttentionMatch& m : matches) rewrite(g, m);
  // Captured by name: clang before 16 cannot capture a structured binding.
  g.remove_nodes_if([&covered = covered](const Node& n) { return covered.count(&n) != 0; });
  g.remove_unused_values();
  infer_types(g);
  fused_ = int(matches.size());
  return true;
}

int fuse_attention(Graph& g) {
  FuseAttentionPass p;
  PassManager().run(p, g);
  return p.fused();
}

}  // namespace cb
