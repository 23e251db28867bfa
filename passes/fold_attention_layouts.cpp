// Attention layout folding (passes/fold_attention_layouts.h).
#include "passes/fold_attention_layouts.h"

#include <cmath>
#include <optional>
#include <set>
#include <vector>

#include "ir/attention.h"
#include "ir/builder.h"
#include "ir/codebook.h"
#include "ir/verifier.h"
#include "passes/canonicalize.h"

namespace cb {

namespace {

using pass_util::is_onnx_op;

using Perm = AttentionLayout::Perm;

bool rank_is(const Value* v, size_t r) {
  return v && v->type.dtype == DType::f32 && v->type.shape.rank_known && v->type.shape.rank() == r;
}

// The head axis stays the physical last one (ir/attention.h): for Q and V
// the head dims, for Kt the head dims or the keys.
bool valid_perm(size_t input, const Perm& p) { return p[3] == 3 || (input == 1 && p[2] == 3); }

// Where one input (0 Q, 1 Kt, 2 V) really comes from: logical input =
// Transpose(value, perm), times `scale`.
struct Source {
  Value* value = nullptr;
  Perm perm = AttentionLayout::kIdentity;
  double scale = 1;
};

// Walks back from input `i` through Transposes, f32 Casts, Identities and
// (where `scalable`) Mul/Div by a constant scalar; the farthest point whose
// perm keeps the head axis last.
Source trace(const Graph& g, Value* x, size_t input, bool scalable) {
  Source at{x}, best = at;
  for (int depth = 0; depth < 8; ++depth) {
    const Node* p = at.value->producer;
    if (!p || !p->domain.empty() || p->inputs.empty() || !p->input(0)) break;
    Value* in = p->input(0);
    if (p->op_type == "Transpose" && rank_is(in, 4)) {
      const std::vector<int64_t> t = p->attr_ints("perm", {3, 2, 1, 0});
      if (t.size() != 4) break;
      for (int64_t& a : at.perm) a = t[size_t(a)];
    } else if ((is_onnx_op(p, "Identity") || (is_onnx_op(p, "Cast") && p->attr_int("to", 0) == 1)) && rank_is(in, 4)) {
      // an f32 -> f32 Cast copies
    } else if ((p->op_type == "Mul" || p->op_type == "Div") && scalable && p->inputs.size() == 2 && p->input(1)) {
      const int c = pass_util::constant_f32_scalar(g, p->input(1))                 ? 1
                    : p->op_type == "Mul" && pass_util::constant_f32_scalar(g, in) ? 0
                                                                                   : -1;
      if (c < 0) break;
      const double s = *pass_util::constant_f32_scalar(g, p->input(size_t(c)));
      if (s == 0 || !std::isfinite(s)) break;
      in = p->input(size_t(1 - c));
      if (!rank_is(in, 4)) break;
      at.scale = p->op_type == "Mul" ? at.scale * s : at.scale / s;
    } else {
      break;
    }
    at.value = in;
    if (valid_perm(input, at.perm)) best = at;
  }
  return best;
}

// A [B, T, heads, d] Reshape of output `column / d` of a Split along the
// last axis of W [B, T, n]: the heads start at column / d of W's [B, T, n / d, d] view.
struct SplitSource {
  Node* split = nullptr;
  int64_t column = 0, heads = 0, d = 0;
};

std::optional<SplitSource> split_source(const Value* x) {
  const Node* r = x->producer;
  if (!is_onnx_op(r, "Reshape") || !r->input(0) || !rank_is(x, 4)) return std::nullopt;
  const Value* y = r->input(0);
  Node* split = y->producer;
  if (!is_onnx_op(split, "Split") || !rank_is(y, 3) || !rank_is(split->input(0), 3)) return std::nullopt;
  const int64_t axis = split->attr_int("axis", 0);
  if (axis != 2 && axis != -1) return std::nullopt;
  const Shape &xs = x->type.shape, &ys = y->type.shape;
  if (!xs.dims[2].is_static() || !xs.dims[3].is_static() || !ys.dims[2].is_static() ||
      !xs.dims[0].same_as(ys.dims[0]) || !xs.dims[1].same_as(ys.dims[1]) ||
      xs.dims[2].value * xs.dims[3].value != ys.dims[2].value)
    return std::nullopt;
  SplitSource s{split, 0, xs.dims[2].value, xs.dims[3].value};
  for (int o = 0; o < y->producer_output; ++o) {
    const Value* before = split->outputs[size_t(o)];
    if (!rank_is(before, 3) || !before->type.shape.dims[2].is_static()) return std::nullopt;
    s.column += before->type.shape.dims[2].value;
  }
  return s;
}

// Makes Shape node `shape` compute Gather(Shape(x), perm) into its own
// output value (a graph output keeps its name); `shape` is left without
// outputs, for the caller to remove. Returns the new Shape node.
Node* shape_through(Graph& g, Node& shape, Value* x, const std::vector<int64_t>& perm) {
  Value* result = shape.outputs[0];
  Builder b(g);
  b.set_insertion_point_after(&shape);
  auto scope = b.scope(shape.name);
  Value* dims = b.shape_of(x);
  Value* order = b.i64s(perm, "perm");
  shape.outputs[0] = nullptr;
  b.create("Gather", {dims, order}, {result}, {{"axis", int64_t(0)}});
  return dims->producer;
}

class Folder {
 public:
  Folder(Graph& g, bool fold_splits)
      : g_(g), users_(g.users()), external_(pass_util::externally_read_values(g)), fold_splits_(fold_splits) {}

  // Folds one default-layout Attention node; true when it changed it.
  bool fold(Node& att) {
    AttentionLayout layout;
    Source src[3];
    double scale = att.attr_float("scale", 1.f);
    // A scale of Q applies to every key; one of Kt only to the new keys, not
    // to cached ones (which the cache holds scaled already).
    const bool cached = att.inputs.size() > kAttentionPastKeysInput && att.input(kAttentionPastKeysInput);
    for (size_t i = 0; i < 3; ++i) {
      src[i] = trace(g_, att.input(i), i, i == 0 || (i == 1 && !cached));
      scale *= src[i].scale;
    }
    if (!std::isfinite(float(scale))) return false;
    bool changed = false;
    for (size_t i = 0; i < 3; ++i) {
      changed |= src[i].value != att.input(i);
      att.inputs[i] = src[i].value;
    }
    layout.q_perm = src[0].perm;
    layout.k_perm = src[1].perm;
    layout.v_perm = src[2].perm;
    if (fold_splits_) changed |= fold_split(att, src, layout);
    changed |= fold_output(att, layout);
    if (!changed) return false;
    set_perm(att, "q_perm", layout.q_perm);
    set_perm(att, "k_perm", layout.k_perm);
    set_perm(att, "v_perm", layout.v_perm);
    set_perm(att, "out_perm", layout.out_perm);
    if (layout.num_heads > 0) {
      att.attrs["num_heads"] = layout.num_heads;
      att.attrs["head_offsets"] = std::vector<int64_t>(layout.head_offsets.begin(), layout.head_offsets.end());
    }
    att.attrs["scale"] = float(scale);
    return true;
  }

  const std::set<const Node*>& dropped() const { return dropped_; }

 private:
  static void set_perm(Node& n, const char* attr, const Perm& p) {
    if (p != AttentionLayout::kIdentity) n.attrs[attr] = std::vector<int64_t>(p.begin(), p.end());
  }

  // Q, Kt and V all Reshapes of one Split's outputs: read the Split's input.
  bool fold_split(Node& att, const Source (&src)[3], AttentionLayout& layout) {
    std::optional<SplitSource> s[3];
    for (size_t i = 0; i < 3; ++i) {
      s[i] = split_source(src[i].value);
      // The heads axis of the [B, T, heads, d] view is the logical H.
      if (!s[i] || s[i]->split != s[0]->split || s[i]->d != s[0]->d || s[i]->heads != s[0]->heads ||
          s[i]->column % s[i]->d != 0 || src[i].perm[1] != 2)
        return false;
    }
    Builder b(g_);
    b.set_insertion_point_before(&att);
    auto scope = b.scope(att.name);
    Value* heads = b.named_op("Reshape", {s[0]->split->input(0), b.i64s({0, 0, -1, s[0]->d}, "heads_shape")}, "heads");
    for (size_t i = 0; i < 3; ++i) {
      att.inputs[i] = heads;
      layout.head_offsets[i] = s[i]->column / s[i]->d;
    }
    layout.num_heads = s[0]->heads;
    return true;
  }

  // The output read by one Transpose keeping the head axis last (and by
  // Shapes, which then read the transposed value's): write what the
  // Transpose writes.
  bool fold_output(Node& att, AttentionLayout& layout) {
    Value* out = att.outputs[0];
    auto it = users_.find(out);
    if (!out || external_.count(out) || it == users_.end()) return false;
    Node* t = nullptr;
    std::vector<Node*> shapes;
    for (Node* u : it->second) {
      if (is_onnx_op(u, "Shape") && !u->has_attr("start") && !u->has_attr("end") && u->outputs[0])
        shapes.push_back(u);
      else if (!t && is_onnx_op(u, "Transpose") && u->outputs.size() == 1 && u->outputs[0])
        t = u;
      else
        return false;
    }
    if (!t) return false;
    const std::vector<int64_t> perm = t->attr_ints("perm", {3, 2, 1, 0});
    if (perm.size() != 4 || perm[3] != 3) return false;
    for (size_t a = 0; a < 4; ++a) layout.out_perm[a] = perm[a];
    Value* moved = t->outputs[0];
    t->outputs[0] = nullptr;
    att.outputs[0] = moved;
    moved->producer = &att;
    moved->producer_output = 0;
    dropped_.insert(t);
    // Shape(out)[i] = Shape(moved)[inverse[i]]: the Transpose put out's axis perm[a] at a.
    std::vector<int64_t> inverse(4);
    for (size_t a = 0; a < 4; ++a) inverse[size_t(perm[a])] = int64_t(a);
    for (Node* shape : shapes) {
      shape_through(g_, *shape, moved, inverse);
      dropped_.insert(shape);
    }
    return true;
  }

  Graph& g_;
  std::map<const Value*, std::vector<Node*>> users_;
  std::set<const Value*> external_;
  bool fold_splits_;
  std::set<const Node*> dropped_;
};

// Shape reads of Transposes and f32 Casts (shapes of dims left symbolic,
// e.g. behind GPT-Neo's local-window slicing) read the Shape of their input
// instead, so folded layout ops do not stay alive for their shape alone:
// Shape(Transpose(x, p)) = Gather(Shape(x), p), Shape(Cast(x)) = Shape(x).
// Returns how many Shape nodes it changed.
int read_shapes_through_layouts(Graph& g) {
  std::vector<Node*> work;
  for (auto& n : g.nodes())
    if (is_onnx_op(n.get(), "Shape")) work.push_back(n.get());
  std::set<const Node*> replaced;
  int changed = 0;
  while (!work.empty()) {
    Node* shape = work.back();
    work.pop_back();
    if (!shape->input(0) || shape->has_attr("start") || shape->has_attr("end") || !shape->outputs[0]) continue;
    const Node* p = shape->input(0)->producer;
    if (!p || !p->input(0)) continue;
    if (is_onnx_op(p, "Identity") || (is_onnx_op(p, "Cast") && p->attr_int("to", 0) == 1 && rank_is(p->input(0), 4))) {
      shape->inputs[0] = p->input(0);
      work.push_back(shape);
      ++changed;
    } else if (is_onnx_op(p, "Transpose") && p->input(0)->type.shape.rank_known) {
      const size_t rank = p->input(0)->type.shape.rank();
      std::vector<int64_t> perm = p->attr_ints("perm", {});
      if (perm.empty())
        for (size_t a = rank; a-- > 0;) perm.push_back(int64_t(a));
      if (perm.size() != rank) continue;
      work.push_back(shape_through(g, *shape, p->input(0), perm));
      replaced.insert(shape);
      ++changed;
    }
  }
  g.remove_nodes_if([&](const Node& n) { return replaced.count(&n) != 0; });
  return changed;
}

}  // namespace

int fold_attention_layouts(Graph& g, bool fold_splits) {
  std::vector<Node*> attentions;
  for (auto& n : g.nodes())
    if (n->domain == kCodebookDomain && n->op_type == kAttentionOp && n->inputs.size() >= 3 && n->outputs.size() == 1 &&
        attention_layout(*n).is_default())
      attentions.push_back(n.get());
  if (attentions.empty()) return 0;
  int changed = read_shapes_through_layouts(g);
  Folder folder(g, fold_splits);
  for (Node* att : attentions) changed += folder.fold(*att);
  if (changed == 0) return 0;
  g.remove_nodes_if([&](const Node& n) { return folder.dropped().count(&n) != 0; });
  g.remove_unused_values();
  infer_types(g);
  return changed;
}

}  // namespace cb
