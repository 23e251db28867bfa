// Lowering of codebook.Codebook to standard ONNX ops; the scheme is described
// in passes/lower_codebook.h. Node names of the replacement start with the
// codebook node's name, so a lowered model still shows where each site was.
#include "passes/lower_codebook.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "ir/builder.h"
#include "ir/codebook.h"
#include "ir/verifier.h"
#include "passes/canonicalize.h"
#include "support/error.h"

namespace cb {
namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// The replacement of `anchor` (the codebook node) goes just before it, so it
// stays in topological order; names start with the anchor's name, and every
// output is "<node>_out<i>".
Builder replacement_builder(Graph& g, Node* anchor) {
  BuilderOptions o;
  o.naming.output_suffix = "_out";
  o.naming.suffix_single_output = true;
  Builder b(g, o);
  b.set_insertion_point_before(anchor);
  b.set_scope(anchor->name);
  return b;
}

// Constants of any shape, and shorthands.
Value* i64(Builder& b, std::vector<int64_t> v, std::vector<int64_t> dims) {
  return b.constant(Tensor::from_vector(v, std::move(dims)));
}
Value* f32(Builder& b, std::vector<float> v, std::vector<int64_t> dims) {
  return b.constant(Tensor::from_vector(v, std::move(dims)));
}
Value* boolean(Builder& b, const std::vector<bool>& v, std::vector<int64_t> dims) {
  Tensor t = Tensor::empty(DType::boolean, std::move(dims));
  for (size_t i = 0; i < v.size(); ++i) t.data<bool>()[i] = v[i];
  return b.constant(t);
}
Value* reduce(Builder& b, const char* type, Value* v, std::vector<int64_t> axes) {
  return b.op(type, {v, b.i64s(axes)}, {{"keepdims", int64_t(0)}});
}

// Makes `original` (a codebook output, possibly a graph output with a name
// users rely on) the value the lowering computed as `computed`.
void adopt(Graph& g, Value* computed, Value* original) {
  Node* p = computed->producer;
  CB_CHECK(p, "lower-codebook: internal error, '" << computed->name << "' has no producer");
  int i = computed->producer_output;
  g.replace_all_uses(computed, original);
  p->outputs[size_t(i)] = original;
  original->producer = p;
  original->producer_output = i;
  computed->producer = nullptr;
}

// The per-code term of the ranking score, [G,K]: |C| with 0 -> 1 (a zero
// code then scores 0) for inner_product, |C|^2/2 for euclidean. A constant
// when the codes are constant (the compiled-model case).
Value* code_norms(Builder& b, Value* codes, const Tensor* cval, int64_t G, int64_t K, int64_t Dg,
                  CodebookMetric metric) {
  bool ip = metric == CodebookMetric::inner_product;
  if (cval) {
    const float* c = cval->data<float>();
    std::vector<float> v(size_t(G * K));
    for (int64_t gk = 0; gk < G * K; ++gk) {
      double sq = 0;
      for (int64_t d = 0; d < Dg; ++d) sq += double(c[gk * Dg + d]) * double(c[gk * Dg + d]);
      float norm = float(std::sqrt(sq));
      v[size_t(gk)] = ip ? (norm == 0.0f ? 1.0f : norm) : float(sq * 0.5);
    }
    return f32(b, v, {G, K});
  }
  Value* sq = reduce(b, "ReduceSum", b.op("Mul", {codes, codes}), {-1});
  if (!ip) return b.op("Mul", {sq, b.f32(0.5f)});
  Value* norm = b.op("Sqrt", {sq});
  return b.op("Where", {b.op("Equal", {norm, b.f32(0)}), b.f32(1), norm});
}

// Which intervention records apply at which position of the current call.
class PositionMatcher {
 public:
  PositionMatcher(Builder& b, Value* x) : b_(b), x_(x) {}

  // [T, R] (or [1, R] when every record covers all positions) f32 0/1:
  // does record r apply at position t?
  Value* match(const std::vector<int64_t>& positions) {
    int64_t R = int64_t(positions.size());
    bool any_specific = false, any_all = false;
    std::vector<int64_t> target(positions.size(), 0), from_end(positions.size(), 0);
    std::vector<bool> all(positions.size(), false);
    for (size_t r = 0; r < positions.size(); ++r) {
      int64_t p = positions[r];
      if (p == kAll) {
        all[r] = any_all = true;
        target[r] = -1;  // matches nothing; the Or below makes it match everything
      } else {
        any_specific = true;
        target[r] = p;
        from_end[r] = p < 0 ? 1 : 0;  // p + T
      }
    }
    if (!any_specific) return f32(b_, std::vector<float>(size_t(R), 1.0f), {1, R});
    Value* goal = b_.op("Add", {i64(b_, target, {1, R}), b_.op("Mul", {seq_len(), i64(b_, from_end, {1, R})})});
    Value* hit = b_.op("Equal", {positions_column(), goal});
    if (any_all) hit = b_.op("Or", {hit, boolean(b_, all, {1, R})});
    return b_.cast(hit, DType::f32);
  }

  // Shape [B, T] of x as a 1-D i64 tensor.
  Value* batch_and_seq() {
    if (!bt_) bt_ = b_.op("Slice", {shape(), b_.i64s({0}), b_.i64s({2})});
    return bt_;
  }

 private:
  Value* shape() {
    if (!shape_) shape_ = b_.op("Shape", {x_});
    return shape_;
  }
  Value* seq_len() {  // scalar T
    if (!T_) T_ = b_.op("Gather", {shape(), b_.i64(1)}, {{"axis", int64_t(0)}});
    return T_;
  }
  Value* positions_column() {  // [T, 1]: 0..T-1
    if (!col_) col_ = b_.unsqueeze(b_.op("Range", {b_.i64(0), seq_len(), b_.i64(1)}), {1});
    return col_;
  }

  Builder& b_;
  Value* x_;
  Value *shape_ = nullptr, *T_ = nullptr, *col_ = nullptr, *bt_ = nullptr;
};

// Weights of intervention records with one row per distinct record position
// (so many records cost one row each position, not one row each): entry
// [row, f] is the max over the records at that position.
class PositionTable {
 public:
  explicit PositionTable(int64_t width) : width_(width) {}
  void raise(int64_t position, int64_t f, float v) {
    auto [it, added] = row_of_.try_emplace(position, positions_.size());
    if (added) {
      positions_.push_back(position);
      weight_.resize(weight_.size() + size_t(width_), 0.0f);
    }
    float& w = weight_[it->second * size_t(width_) + size_t(f)];
    w = std::max(w, v);
  }
  bool empty() const { return positions_.empty(); }
  // sum over the rows matching position t: [T|1, width] (0/1 weights: a count).
  Value* sum_of_matches(Builder& b, PositionMatcher& m) const {
    return b.op("MatMul", {m.match(positions_), weights(b)});
  }
  // max over the rows matching position t (0 where none does): [T|1, width].
  Value* max_of_matches(Builder& b, PositionMatcher& m) const {
    return reduce(b, "ReduceMax", b.op("Mul", {b.unsqueeze(m.match(positions_), {2}), weights(b)}), {1});
  }

 private:
  Value* weights(Builder& b) const { return f32(b, weight_, {int64_t(positions_.size()), width_}); }
  int64_t width_;
  std::vector<int64_t> positions_;
  std::map<int64_t, size_t> row_of_;
  std::vector<float> weight_;
};

void lower_node(Graph& g, Node* n) {
  CB_CHECK(n->inputs.size() == 4 && n->input(0) && n->input(1) && n->input(2) && n->input(3),
           n->describe() << ": expected the 4 inputs x, codes, ln_scale, ln_bias");
  Value *x = n->input(0), *codes = n->input(1), *ln_scale = n->input(2), *ln_bias = n->input(3);
  const Shape& cs = codes->type.shape;
  CB_CHECK(
      cs.rank_known && cs.rank() == 3 && cs.dims[0].is_static() && cs.dims[1].is_static() && cs.dims[2].is_static(),
      n->describe() << ": cannot lower a codebook whose codes '" << codes->name << "' have shape " << cs.str()
                    << " (a static [G, K, D/G] is needed)");
  const int64_t G = cs.dims[0].value, K = cs.dims[1].value, Dg = cs.dims[2].value;
  const CodebookAttrs a = CodebookAttrs::from_node(*n, G, K);
  const int64_t k = a.k;
  const bool ip = a.metric == CodebookMetric::inner_product;
  const Tensor* cval = pass_util::constant_value(g, codes);
  if (cval) CB_CHECK(cval->dtype() == DType::f32, n->describe() << ": codes '" << codes->name << "' are not f32");

  Builder b = replacement_builder(g, n);
  PositionMatcher positions(b, x);
  Value* norms = code_norms(b, codes, cval, G, K, Dg, a.metric);

  // u = LayerNorm of each member's chunk, with the member's own affine.
  Value* x4 = b.reshape(x, {0, 0, G, Dg});
  Value* normed = b.op("LayerNormalization", {x4, f32(b, std::vector<float>(size_t(Dg), 1.0f), {Dg})},
                       {{"axis", int64_t(-1)}, {"epsilon", a.epsilon}});
  Value* u = b.op("Add", {b.op("Mul", {normed, ln_scale}), ln_bias});  // [B,T,G,Dg]

  // Ranking scores [B,T,G,K].
  // Einsum reads the codes in place: no transposed copy of them in the model.
  Value* dot = b.op("Einsum", {u, codes}, {{"equation", std::string("btgd,gkd->btgk")}});
  Value* rank = b.op(ip ? "Div" : "Sub", {dot, norms});

  // Ablated codes per (position, member): [T|1, G, K] bool.
  Value* ablated = nullptr;
  if (!a.ablate.empty()) {
    PositionTable hot(G * K);
    for (const CodebookAblation& rec : a.ablate)
      for (int64_t gi = 0; gi < G; ++gi)
        if (group_matches(rec.group, gi)) hot.raise(rec.position, gi * K + rec.code, 1.0f);
    Value* count = hot.sum_of_matches(b, positions);
    ablated = b.reshape(b.op("Greater", {count, b.f32(0)}), {-1, G, K});
  }
  // How many best codes are disabled per (position, member): [T|1, G] i64.
  const int64_t max_m = a.max_disable_topk();
  Value* disabled_top = nullptr;
  if (max_m > 0) {
    PositionTable m(G);
    for (const CodebookTopkBlock& rec : a.disable_topk)
      for (int64_t gi = 0; gi < G; ++gi)
        if (group_matches(rec.group, gi)) m.raise(rec.position, gi, float(rec.m));
    disabled_top = b.cast(m.max_of_matches(b, positions), DType::i64);
  }

  std::vector<int64_t> slots(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) slots[size_t(j)] = j;
  auto topk = [&](Value* s, int64_t count) {
    return b.op_n("TopK", {s, b.i64s({count})}, 2,
                  {{"axis", int64_t(-1)}, {"largest", int64_t(1)}, {"sorted", int64_t(1)}})[1];
  };

  Value* ids = nullptr;  // [B,T,G,k] i64
  bool may_block = false;
  if (a.keep_k_codes) {
    Value* s = ablated ? b.op("Where", {ablated, b.f32(kMinusInf), rank}) : rank;
    if (disabled_top) {
      Value* ranked = topk(s, k + max_m);
      Value* keep = b.op("Add", {b.unsqueeze(disabled_top, {2}), b.i64s(slots)});  // [T|1,G,k]
      Value* shape = b.op("Concat", {positions.batch_and_seq(), b.i64s({G, k})}, {{"axis", int64_t(0)}});
      ids = b.op("GatherElements", {ranked, b.op("Expand", {keep, shape})}, {{"axis", int64_t(-1)}});
    } else {
      ids = topk(s, k);
    }
  } else {
    ids = topk(rank, k);
    Value* blocked = nullptr;
    if (ablated) {
      Value* full = b.op("Expand", {ablated, b.op("Shape", {rank})});
      blocked = b.op("GatherElements", {full, ids}, {{"axis", int64_t(-1)}});
    }
    if (disabled_top) {
      Value* low_rank = b.op("Less", {b.i64s(slots), b.unsqueeze(disabled_top, {2})});
      blocked = blocked ? b.op("Or", {blocked, low_rank}) : low_rank;
    }
    if (blocked) {
      ids = b.op("Where", {blocked, b.i64(-1), ids});
      may_block = true;
    }
  }

  // Forced codes: the last matching record of each (position, member, slot).
  if (!a.force.empty()) {
    PositionTable which(G * k);  // record index + 1
    std::vector<int64_t> table = {0};
    for (size_t r = 0; r < a.force.size(); ++r) {
      const CodebookForce& rec = a.force[r];
      table.push_back(rec.code);
      may_block |= rec.code == -1;
      int64_t slot = rec.slot < 0 ? rec.slot + k : rec.slot;
      for (int64_t gi = 0; gi < G; ++gi)
        if (group_matches(rec.group, gi)) which.raise(rec.position, gi * k + slot, float(r + 1));
    }
    Value* last = b.reshape(b.cast(which.max_of_matches(b, positions), DType::i64), {-1, G, k});
    Value* code = b.op("Gather", {b.i64s(table), last}, {{"axis", int64_t(0)}});
    ids = b.op("Where", {b.op("Greater", {last, b.i64(0)}), code, ids});
  }

  // y: mean of the selected rows over k slots, a blocked slot adds zero.
  // (member, code) pairs index codes [G,K,Dg] and norms [G,K] with GatherND.
  std::vector<int64_t> members(static_cast<size_t>(G));
  for (int64_t gi = 0; gi < G; ++gi) members[size_t(gi)] = gi;
  Value* blocked = may_block ? b.op("Equal", {ids, b.i64(-1)}) : nullptr;
  Value* safe_ids = may_block ? b.op("Max", {ids, b.i64(0)}) : ids;
  Value* member = b.op("Expand", {i64(b, members, {G, 1}), b.op("Shape", {ids})});
  Value* pairs = b.op("Concat", {b.unsqueeze(member, {4}), b.unsqueeze(safe_ids, {4})}, {{"axis", int64_t(4)}});
  Value* selected = b.op("GatherND", {codes, pairs});  // [B,T,G,k,Dg]
  Value* contrib = blocked ? b.op("Where", {b.unsqueeze(blocked, {4}), b.f32(0), selected}) : selected;
  Value* y = reduce(b, "ReduceSum", contrib, {3});
  if (k > 1) y = b.op("Div", {y, b.f32(float(k))});
  y = b.reshape(y, {0, 0, G * Dg});

  // scores of the selected codes, recomputed from u.
  Value* scores = nullptr;
  Value* scores_out = n->outputs.size() > 2 ? n->outputs[2] : nullptr;
  if (scores_out) {
    Value* u5 = b.unsqueeze(u, {3});
    if (ip) {
      Value* d = reduce(b, "ReduceSum", b.op("Mul", {u5, selected}), {-1});
      scores = b.op("Div", {d, b.op("GatherND", {norms, pairs})});
    } else {
      Value* diff = b.op("Sub", {u5, selected});
      scores = b.op("Neg", {b.op("Sqrt", {reduce(b, "ReduceSum", b.op("Mul", {diff, diff}), {-1})})});
    }
    if (blocked) scores = b.op("Where", {blocked, b.f32(kMinusInf), scores});
  }

  adopt(g, y, n->outputs[0]);
  if (n->outputs.size() > 1 && n->outputs[1]) {
    // ids may be one of our intermediate values with other users: adopt moves them too.
    adopt(g, ids, n->outputs[1]);
  }
  if (scores_out) adopt(g, scores, scores_out);
}

bool subgraphs_have_codebooks(const Graph& g) {
  for (auto& n : g.nodes())
    for (auto& [k, attr] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&attr))
        for (auto& inner : (*sg)->nodes())
          if (is_codebook_node(*inner) || subgraphs_have_codebooks(**sg)) return true;
  return false;
}

}  // namespace

int lower_codebooks(Graph& g) {
  CB_CHECK(!subgraphs_have_codebooks(g),
           "lower-codebook: a codebook node inside a control-flow body (Loop/If/Scan) cannot be lowered");
  std::vector<Node*> todo;
  for (auto& n : g.nodes())
    if (is_codebook_node(*n)) todo.push_back(n.get());
  if (todo.empty()) return 0;
  infer_types(g);  // the codes shapes must be known
  for (Node* n : todo) lower_node(g, n);
  g.remove_nodes_if([&](const Node& n) { return is_codebook_node(n); });
  g.remove_unused_values();
  infer_types(g);
  bool codebook_domain_used = false;
  for (auto& n : g.nodes()) codebook_domain_used |= n->domain == kCodebookDomain;
  if (!codebook_domain_used) g.opsets.erase(kCodebookDomain);
  return int(todo.size());
}

}  // namespace cb
