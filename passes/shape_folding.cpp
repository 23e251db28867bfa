// Shape folding: removes the shape arithmetic that exporters emit around
// views, e.g. GPT-2's `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`.
//
// Algorithm. One walk over the nodes in topological order tracks the
// *content* of small integer tensors of rank 0 or 1 as a vector of items:
// static numbers, or symbolic dims such as `batch` (a value known to be the
// size `batch` of some tensor in every run), or unknown sizes. Contents start
// at constants and at Shape (the input's dims from its type, with start/end),
// and flow through Gather and Slice with constant indices, Concat, Unsqueeze /
// Squeeze / Reshape between rank 0 and 1, Cast to an integer type, Identity,
// Add/Sub/Mul/Div/Max/Min (computed when both sides are static; x+0, x-0,
// x*1, x/1 keep a symbolic x and x-x is 0), Equal (sizes are never negative, so
// `batch == -1` is false) and Where with a static condition. Then, in the
// same walk:
//  (a) a value whose content is fully static becomes a constant (its node is
//      removed; the chain feeding it is left to DCE);
//  (b) Reshape(x, shape) with a known but non-constant shape gets a constant
//      shape: static entries stay, an entry known to equal x's dim at the same
//      position becomes 0 (copy; only when allowzero = 0), and one remaining
//      entry becomes -1 when the element count proves it (the product of x's
//      dims divided by the other entries is exactly that entry); otherwise
//      the Reshape is left alone. [batch,seq,768] -> [batch,seq,12,64] becomes
//      Reshape(x, [0,0,12,64]). A Reshape (constant shape or not) that
//      provably keeps x's shape becomes an Identity;
//  (c) Expand(x, shape) with a known shape: entries equal to x's aligned dim
//      become 1 (Expand broadcasts, so 1 keeps x's size); if the expansion
//      then provably changes nothing it becomes an Identity, else it gets the
//      constant shape when every entry could be made static.
//  (d) a Slice that provably keeps everything (start 0, step 1, end at or past
//      the dim, e.g. mask[..., :seq] of a [..., seq] mask) becomes an Identity;
//  (e) the output types of Reshape, Expand, ConstantOfShape and Range(0, n, 1)
//      are refined from the known content of their shape inputs (their
//      schemas only see constant inputs), so a view that cannot be rewritten
//      (e.g. [batch*seq,192] -> [batch,seq,192] after a flattening Gemm) still
//      gives its users a typed [batch,seq,192] whose own shape chains fold.
//      A -1 entry's dim is the exact quotient of the element counts; a merged
//      dim is named by its factors ("batch*seq"), which count as a product
//      in later element-count proofs.
// Other types of rewritten nodes are refreshed by infer_types (canonicalize
// runs it). Type refinements count as changes (they only ever add knowledge,
// so the fixed point is still reached) so that the next round can use them.
#include <algorithm>
#include <climits>
#include <map>
#include <optional>
#include <set>
#include <type_traits>

#include "ir/verifier.h"
#include "passes/canonicalize.h"

namespace cb {

namespace {

using namespace pass_util;

constexpr int64_t kMaxTrackedLength = 64;

// One element of a tracked tensor: a number known at compile time (possibly
// negative, e.g. Reshape's -1), or equal to a symbolic or unknown size.
struct Item {
  bool known = false;
  int64_t value = 0;  // when known
  Dim size;           // when not known: the size it equals

  static Item number(int64_t v) { return Item{true, v, {}}; }
  static Item of_dim(const Dim& d) { return d.is_static() ? number(d.value) : Item{false, 0, d}; }
  bool is_static() const { return known; }
  // Equal in every run.
  bool same_as(const Item& o) const { return known ? o.known && value == o.value : !o.known && size.same_as(o.size); }
  bool equals_dim(const Dim& d) const { return same_as(of_dim(d)); }
  Dim as_dim() const { return known ? (value >= 0 ? Dim::fixed(value) : Dim::unknown()) : size; }
};

struct Content {
  DType dtype = DType::i64;
  bool scalar = false;  // rank 0, else rank 1
  std::vector<Item> items;

  bool fully_static() const {
    for (auto& d : items)
      if (!d.is_static()) return false;
    return true;
  }
};

bool is_tracked_dtype(DType t) { return dtype_is_int(t) || t == DType::boolean; }

// Product of dims as a monomial: static factor times a multiset of symbols.
// A symbol spelled "a*b" (as dim_of names a merged dim) counts as a times b.
struct Monomial {
  int64_t factor = 1;
  std::multiset<std::string> symbols;

  bool multiply(const Dim& d) {
    if (d.is_static()) return !__builtin_mul_overflow(factor, d.value, &factor);
    if (!d.is_symbolic()) return false;
    size_t start = 0;
    for (;;) {
      size_t star = d.symbol.find('*', start);
      std::string f = d.symbol.substr(start, star == std::string::npos ? std::string::npos : star - start);
      if (!f.empty() && f.find_first_not_of("0123456789") == std::string::npos && f.size() < 18) {
        if (__builtin_mul_overflow(factor, std::stoll(f), &factor)) return false;
      } else {
        symbols.insert(f);
      }
      if (star == std::string::npos) return true;
      start = star + 1;
    }
  }
  // this / o when it is exact.
  std::optional<Monomial> divide(const Monomial& o) const {
    if (o.factor == 0 || factor % o.factor != 0) return std::nullopt;
    Monomial r;
    r.factor = factor / o.factor;
    r.symbols = symbols;
    for (auto& sym : o.symbols) {
      auto it = r.symbols.find(sym);
      if (it == r.symbols.end()) return std::nullopt;
      r.symbols.erase(it);
    }
    return r;
  }
};

// The dim a monomial stands for: static, one symbol, or a merged dim named
// "2*batch*seq" (factor first, symbols sorted), so equal products get equal names.
Dim dim_of(const Monomial& m) {
  if (m.symbols.empty()) return Dim::fixed(m.factor);
  std::string name = m.factor != 1 ? std::to_string(m.factor) : "";
  for (auto& sym : m.symbols) name += (name.empty() ? "" : "*") + sym;
  return Dim::sym(name);
}

// Fills in what `known` says about dims that `v`'s type leaves unknown.
bool refine_type(Value* v, const Shape& known) {
  if (!v || !known.rank_known) return false;
  Shape& s = v->type.shape;
  if (!s.rank_known) {
    s = known;
    return true;
  }
  if (s.rank() != known.rank()) return false;
  bool changed = false;
  for (size_t i = 0; i < s.rank(); ++i)
    if (s.dims[i].is_unknown() && !known.dims[i].is_unknown()) {
      s.dims[i] = known.dims[i];
      changed = true;
    }
  return changed;
}

class ShapeFolder {
 public:
  explicit ShapeFolder(Graph& g) : g_(g) {}

  bool run() {
    bool changed = false;
    std::set<const Node*> removed;
    for (size_t i = 0; i < g_.nodes().size(); ++i) {
      Node& n = *g_.nodes()[i];
      if (!n.domain.empty()) continue;
      // Types refined earlier in this sweep reach this node now, so one sweep
      // folds the shape chains of every layer, not one layer per round.
      if (!has_subgraph(n)) infer_node_types(n);
      if (refine_output_type(n)) changed = true;
      if (n.op_type == "Reshape" && rewrite_reshape(n)) changed = true;
      if (n.op_type == "Expand" && rewrite_expand(n)) changed = true;
      if (n.op_type == "Slice" && rewrite_noop_slice(n)) changed = true;
      if (n.outputs.size() != 1 || !n.outputs[0]) continue;
      std::optional<Content> c = propagate(n);
      if (!c) continue;
      Value* out = n.outputs[0];
      if (out->type.dtype != DType::undefined && out->type.dtype != c->dtype) continue;  // inconsistent
      if (c->fully_static()) {
        // (a) The value is a compile-time constant.
        out->constant = make_tensor(*c);
        out->type = TensorType{c->dtype, Shape::of(out->constant->dims())};
        removed.insert(&n);
        changed = true;
      }
      known_[out] = std::move(*c);
    }
    if (!removed.empty()) g_.remove_nodes_if([&](const Node& n) { return removed.count(&n) != 0; });
    return changed;
  }

 private:
  static Tensor make_tensor(const Content& c) {
    std::vector<int64_t> dims;
    if (!c.scalar) dims.push_back(int64_t(c.items.size()));
    Tensor t = Tensor::empty(c.dtype, dims);
    dtype_dispatch(c.dtype, [&](auto tag) {
      using T = decltype(tag);
      for (size_t i = 0; i < c.items.size(); ++i) t.data<T>()[i] = from_double<T>(double(c.items[i].value));
    });
    return t;
  }

  // The integer values of a compile-time constant.
  std::optional<std::vector<int64_t>> const_ints(const Value* v) const {
    const Tensor* t = constant_value(g_, v);
    if (!t || !is_tracked_dtype(t->dtype()) || t->numel() > kMaxTrackedLength) return std::nullopt;
    return t->to_int_vector();
  }

  std::optional<Content> content(const Value* v) const {
    if (!v) return std::nullopt;
    auto it = known_.find(v);
    if (it != known_.end()) return it->second;
    const Tensor* t = constant_value(g_, v);
    if (!t || !is_tracked_dtype(t->dtype()) || t->rank() > 1 || t->numel() > kMaxTrackedLength) return std::nullopt;
    Content c;
    c.dtype = t->dtype();
    c.scalar = t->rank() == 0;
    for (int64_t x : t->to_int_vector()) c.items.push_back(Item::number(x));
    return c;
  }

  // A single constant integer (a scalar or a one-element tensor).
  std::optional<int64_t> const_scalar(const Value* v) const {
    auto ints = const_ints(v);
    if (!ints || ints->size() != 1) return std::nullopt;
    return (*ints)[0];
  }

  std::optional<Content> propagate(const Node& n) const {
    const std::string& op = n.op_type;
    if (op == "Shape") return shape_of(n);
    if (op == "Identity") return content(n.input(0));
    if (op == "Gather") return gather(n);
    if (op == "Slice") return slice(n);
    if (op == "Concat") return concat(n);
    if (op == "Unsqueeze" || op == "Squeeze" || op == "Reshape") return change_rank(n);
    if (op == "Cast") return cast(n);
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Max" || op == "Min" || op == "Equal")
      return binary(n);
    if (op == "Where") return where(n);
    return std::nullopt;
  }

  std::optional<Content> shape_of(const Node& n) const {
    const Value* x = n.input(0);
    if (!x || !x->type.shape.rank_known) return std::nullopt;
    const auto& dims = x->type.shape.dims;
    int64_t rank = int64_t(dims.size());
    auto clamp = [&](int64_t a) { return std::clamp(a < 0 ? a + rank : a, int64_t(0), rank); };
    int64_t start = clamp(n.attr_int("start", 0));
    int64_t end = n.has_attr("end") ? clamp(n.attr_int("end", rank)) : rank;
    Content c;
    for (int64_t i = start; i < end; ++i) c.items.push_back(Item::of_dim(dims[size_t(i)]));
    return c;
  }

  std::optional<Content> gather(const Node& n) const {
    auto data = content(n.input(0));
    auto idx = const_ints(n.input(1));
    const Tensor* idx_t = constant_value(g_, n.input(1));
    if (!data || data->scalar || !idx || !idx_t || idx_t->rank() > 1) return std::nullopt;
    int64_t axis = n.attr_int("axis", 0);
    if (axis != 0 && axis != -1) return std::nullopt;
    int64_t size = int64_t(data->items.size());
    Content c;
    c.dtype = data->dtype;
    c.scalar = idx_t->rank() == 0;
    for (int64_t i : *idx) {
      if (i < -size || i >= size) return std::nullopt;
      c.items.push_back(data->items[size_t(i < 0 ? i + size : i)]);
    }
    return c;
  }

  std::optional<Content> slice(const Node& n) const {
    auto data = content(n.input(0));
    auto starts = const_scalar(n.input(1));
    auto ends = const_scalar(n.input(2));
    if (!data || data->scalar || !starts || !ends) return std::nullopt;
    if (n.input(3)) {
      auto axis = const_scalar(n.input(3));
      if (!axis || (*axis != 0 && *axis != -1)) return std::nullopt;
    }
    int64_t step = 1;
    if (n.input(4)) {
      auto s = const_scalar(n.input(4));
      if (!s || *s == 0) return std::nullopt;
      step = *s;
    }
    // ONNX clamping: starts to [0, size] ([0, size-1] stepping backwards),
    // ends to [0, size] ([-1, size-1] stepping backwards).
    int64_t size = int64_t(data->items.size());
    int64_t s = *starts, e = *ends;
    if (s < 0) s += size;
    if (e < 0) e += size;
    Content c;
    c.dtype = data->dtype;
    if (step > 0) {
      s = std::clamp(s, int64_t(0), size);
      e = std::clamp(e, int64_t(0), size);
      for (int64_t i = s; i < e; i += step) {
        c.items.push_back(data->items[size_t(i)]);
        if (e - i <= step) break;  // (no overflow with huge steps)
      }
    } else if (size > 0) {
      s = std::clamp(s, int64_t(0), size - 1);
      e = std::clamp(e, int64_t(-1), size - 1);
      for (int64_t i = s; i > e; i += step) {
        c.items.push_back(data->items[size_t(i)]);
        if (i - e <= -step) break;
      }
    }
    return c;
  }

  std::optional<Content> concat(const Node& n) const {
    int64_t axis = n.attr_int("axis", 0);
    if (axis != 0 && axis != -1) return std::nullopt;
    Content c;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      auto part = content(n.inputs[i]);
      if (!part || part->scalar) return std::nullopt;
      if (i == 0) c.dtype = part->dtype;
      if (part->dtype != c.dtype) return std::nullopt;
      c.items.insert(c.items.end(), part->items.begin(), part->items.end());
    }
    if (n.inputs.empty() || int64_t(c.items.size()) > kMaxTrackedLength) return std::nullopt;
    return c;
  }

  // Unsqueeze, Squeeze and Reshape between a scalar and a 1-D tensor (or 1-D to 1-D).
  std::optional<Content> change_rank(const Node& n) const {
    auto x = content(n.input(0));
    if (!x) return std::nullopt;
    const std::string& op = n.op_type;
    if (op == "Unsqueeze") {
      auto axes = const_ints(n.input(1));
      if (!x->scalar || !axes || axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != -1)) return std::nullopt;
      x->scalar = false;
      return x;
    }
    if (op == "Squeeze") {
      if (x->scalar || x->items.size() != 1) return std::nullopt;
      if (n.input(1)) {
        auto axes = const_ints(n.input(1));
        if (!axes || axes->size() != 1 || ((*axes)[0] != 0 && (*axes)[0] != -1)) return std::nullopt;
      }
      x->scalar = true;
      return x;
    }
    auto shape = const_ints(n.input(1));  // Reshape
    if (!shape || shape->size() > 1) return std::nullopt;
    if (shape->empty()) {
      if (x->items.size() != 1) return std::nullopt;
      x->scalar = true;
      return x;
    }
    int64_t s = (*shape)[0];
    int64_t len = int64_t(x->items.size());
    bool copies = s == 0 && n.attr_int("allowzero", 0) == 0 && !x->scalar;
    if (s != len && s != -1 && !copies) return std::nullopt;
    x->scalar = false;
    return x;
  }

  std::optional<Content> cast(const Node& n) const {
    auto x = content(n.input(0));
    auto to = dtype_from_onnx(int32_t(n.attr_int("to", 0)));
    if (!x || !to || !is_tracked_dtype(*to)) return std::nullopt;
    if (*to == DType::boolean) {
      if (!x->fully_static()) return std::nullopt;
      for (auto& d : x->items) d = Item::number(d.value != 0);
    } else if (x->fully_static()) {
      // Wrap as the target type would (values of shapes are small; this is for exactness).
      dtype_dispatch(*to, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_integral_v<T>)
          for (auto& d : x->items) d = Item::number(int64_t(static_cast<T>(d.value)));
      });
    }
    x->dtype = *to;
    return x;
  }

  // Elementwise integer arithmetic and Equal, with scalar/1-D broadcasting.
  std::optional<Content> binary(const Node& n) const {
    auto a = content(n.input(0));
    auto b = content(n.input(1));
    if (!a || !b || a->dtype != b->dtype || a->dtype == DType::boolean) return std::nullopt;
    size_t la = a->items.size(), lb = b->items.size();
    if (la == 0 || lb == 0 || (la != lb && la != 1 && lb != 1)) return std::nullopt;
    const std::string& op = n.op_type;
    Content c;
    c.dtype = op == "Equal" ? DType::boolean : a->dtype;
    c.scalar = a->scalar && b->scalar;
    size_t len = std::max(la, lb);
    for (size_t i = 0; i < len; ++i) {
      const Item& x = a->items[la == 1 ? 0 : i];
      const Item& y = b->items[lb == 1 ? 0 : i];
      auto r = combine(op, x, y);
      if (!r) return std::nullopt;
      c.items.push_back(*r);
    }
    return c;
  }

  static std::optional<Item> combine(const std::string& op, const Item& x, const Item& y) {
    if (op == "Equal") {
      if (x.same_as(y)) return Item::number(1);
      if (x.is_static() && y.is_static()) return Item::number(0);
      // A size is never negative.
      if ((x.is_static() && x.value < 0) || (y.is_static() && y.value < 0)) return Item::number(0);
      return std::nullopt;
    }
    if (x.is_static() && y.is_static()) {
      int64_t a = x.value, b = y.value;
      int64_t r = 0;
      if (op == "Add") return __builtin_add_overflow(a, b, &r) ? std::nullopt : std::optional(Item::number(r));
      if (op == "Sub") return __builtin_sub_overflow(a, b, &r) ? std::nullopt : std::optional(Item::number(r));
      if (op == "Mul") return __builtin_mul_overflow(a, b, &r) ? std::nullopt : std::optional(Item::number(r));
      if (op == "Max") return Item::number(std::max(a, b));
      if (op == "Min") return Item::number(std::min(a, b));
      if (op == "Div" && b > 0 && a >= 0) return Item::number(a / b);
      return std::nullopt;
    }
    // Static items can hold negative numbers; the identities below hold for any x.
    if (op == "Sub" && x.same_as(y)) return Item::number(0);
    if ((op == "Add" || op == "Sub") && y.is_static() && y.value == 0) return x;
    if (op == "Add" && x.is_static() && x.value == 0) return y;
    if ((op == "Mul" || op == "Div") && y.is_static() && y.value == 1) return x;
    if (op == "Mul" && x.is_static() && x.value == 1) return y;
    if ((op == "Max" || op == "Min") && x.same_as(y)) return x;
    return std::nullopt;
  }

  std::optional<Content> where(const Node& n) const {
    auto cond = content(n.input(0));
    auto a = content(n.input(1));
    auto b = content(n.input(2));
    if (!cond || !a || !b || cond->dtype != DType::boolean || !cond->fully_static() || a->dtype != b->dtype)
      return std::nullopt;
    size_t len = std::max({cond->items.size(), a->items.size(), b->items.size()});
    for (auto* c : {&*cond, &*a, &*b})
      if (c->items.empty() || (c->items.size() != len && c->items.size() != 1)) return std::nullopt;
    Content r;
    r.dtype = a->dtype;
    r.scalar = cond->scalar && a->scalar && b->scalar;
    auto at = [&](const Content& c, size_t i) { return c.items[c.items.size() == 1 ? 0 : i]; };
    for (size_t i = 0; i < len; ++i) r.items.push_back(at(*cond, i).value ? at(*a, i) : at(*b, i));
    return r;
  }

  // The output type that the known content of a shape input implies, for ops
  // whose schema only sees constant inputs: Reshape, Expand, ConstantOfShape
  // and Range(0, n, 1). Returns true when it told the type something new.
  bool refine_output_type(Node& n) {
    if (n.outputs.empty() || !n.outputs[0]) return false;
    const std::string& op = n.op_type;
    std::optional<Shape> shape;
    DType dtype = DType::undefined;
    if (op == "Reshape" || op == "Expand" || op == "Range")
      dtype = n.input(0) ? n.input(0)->type.dtype : DType::undefined;
    else if (op == "ConstantOfShape")
      dtype = n.attr_tensor("value") ? n.attr_tensor("value")->dtype() : DType::f32;
    if (op == "Reshape") {
      auto c = content(n.input(1));
      const Value* x = n.input(0);
      if (c && !c->scalar && x) shape = reshape_result(x->type.shape, *c, n.attr_int("allowzero", 0) != 0);
    } else if (op == "Expand") {
      auto c = content(n.input(1));
      const Value* x = n.input(0);
      if (c && !c->scalar && x) shape = expand_result(x->type.shape, *c);
    } else if (op == "ConstantOfShape") {
      auto c = content(n.input(0));
      if (c && !c->scalar) {
        shape = Shape();
        for (auto& d : c->items) shape->dims.push_back(d.as_dim());
      }
    } else if (op == "Range") {
      auto start = content(n.input(0)), limit = content(n.input(1)), delta = content(n.input(2));
      if (start && limit && delta && start->items.size() == 1 && limit->items.size() == 1 && delta->items.size() == 1 &&
          start->items[0].is_static() && start->items[0].value == 0 && delta->items[0].is_static() &&
          delta->items[0].value == 1)
        shape = Shape({limit->items[0].as_dim()});
    }
    if (!shape) return false;
    bool changed = refine_type(n.outputs[0], *shape);
    if (n.outputs[0]->type.dtype == DType::undefined && dtype != DType::undefined) {
      n.outputs[0]->type.dtype = dtype;
      changed = true;
    }
    return changed;
  }

  static std::optional<Shape> reshape_result(const Shape& xs, const Content& c, bool allowzero) {
    Shape out;
    int minus_one = -1;
    for (size_t i = 0; i < c.items.size(); ++i) {
      const Item& d = c.items[i];
      if (d.is_static() && d.value == -1) {
        if (minus_one >= 0) return std::nullopt;
        minus_one = int(i);
        out.dims.push_back(Dim::unknown());
      } else if (d.is_static() && d.value == 0 && !allowzero) {
        out.dims.push_back(xs.rank_known && i < xs.rank() ? xs.dims[i] : Dim::unknown());
      } else if (d.is_static() && d.value < 0) {
        return std::nullopt;
      } else {
        out.dims.push_back(d.as_dim());
      }
    }
    if (minus_one >= 0 && xs.rank_known) {
      Monomial in, others;
      bool ok = true;
      for (auto& d : xs.dims) ok &= in.multiply(d);
      for (size_t i = 0; i < out.dims.size(); ++i)
        if (int(i) != minus_one) ok &= others.multiply(out.dims[i]);
      auto q = ok ? in.divide(others) : std::nullopt;
      if (q) out.dims[size_t(minus_one)] = dim_of(*q);
    }
    return out;
  }

  static std::optional<Shape> expand_result(const Shape& xs, const Content& c) {
    if (!xs.rank_known) return std::nullopt;
    size_t len = std::max(c.items.size(), xs.rank());
    Shape out;
    for (size_t i = 0; i < len; ++i) {
      const Item* d = i + c.items.size() >= len ? &c.items[i + c.items.size() - len] : nullptr;
      const Dim* xd = i + xs.rank() >= len ? &xs.dims[i + xs.rank() - len] : nullptr;
      if (d && d->is_static() && d->value < 0) return std::nullopt;
      bool d_is_one = !d || (d->is_static() && d->value == 1);
      bool x_is_one = !xd || (xd->is_static() && xd->value == 1);
      if (d_is_one)
        out.dims.push_back(xd ? *xd : Dim::fixed(1));
      else if (x_is_one || d->equals_dim(*xd))
        out.dims.push_back(d->as_dim());
      else if (xd->is_static())
        out.dims.push_back(*xd);
      else
        out.dims.push_back(d->is_static() ? d->as_dim() : Dim::unknown());
    }
    return out;
  }

  // (d) Slice(x, starts, ends, axes, steps) that provably keeps all of x
  // (start 0, step 1, end at or past x's dim on every sliced axis, e.g.
  // mask[:, :, :, :seq] of a [..., seq] mask) becomes an Identity.
  bool rewrite_noop_slice(Node& n) {
    const Value* x = n.input(0);
    if (!x || !x->type.shape.rank_known) return false;
    const Shape& xs = x->type.shape;
    auto starts = content(n.input(1));
    auto ends = content(n.input(2));
    if (!starts || !ends || starts->scalar || ends->scalar || starts->items.size() != ends->items.size()) return false;
    size_t count = starts->items.size();
    std::vector<int64_t> axes(count), steps(count, 1);
    for (size_t i = 0; i < count; ++i) axes[i] = int64_t(i);
    if (n.input(3)) {
      auto a = const_ints(n.input(3));
      if (!a || a->size() != count) return false;
      axes = *a;
    }
    if (n.input(4)) {
      auto st = const_ints(n.input(4));
      if (!st || st->size() != count) return false;
      steps = *st;
    }
    int64_t rank = int64_t(xs.rank());
    for (size_t i = 0; i < count; ++i) {
      int64_t axis = axes[i] < 0 ? axes[i] + rank : axes[i];
      if (axis < 0 || axis >= rank || steps[i] != 1) return false;
      const Dim& dim = xs.dims[size_t(axis)];
      const Item& s = starts->items[i];
      const Item& e = ends->items[i];
      if (!s.is_static() || s.value != 0) return false;
      bool to_end = e.equals_dim(dim) || (e.is_static() && dim.is_static() && e.value >= dim.value) ||
                    (e.is_static() && e.value >= (int64_t(1) << 62));
      if (!to_end) return false;
    }
    n.op_type = "Identity";
    n.inputs.resize(1);
    n.attrs.clear();
    return true;
  }

  // A new constant i64 shape that `n` reads instead of its input 1.
  void set_shape_input(Node& n, const std::vector<int64_t>& shape) {
    std::string base = (n.outputs.empty() || !n.outputs[0] ? n.op_type : n.outputs[0]->name) + "_shape";
    n.inputs[1] = g_.add_constant(g_.unique_name(base), Tensor::from_vector<int64_t>(shape, {int64_t(shape.size())}));
  }

  // (b)
  bool rewrite_reshape(Node& n) {
    const Value* x = n.input(0);
    if (!x) return false;
    auto c = content(n.input(1));
    if (!c || c->scalar) return false;
    bool allowzero = n.attr_int("allowzero", 0) != 0;
    const Shape& xs = x->type.shape;
    std::vector<int64_t> shape;
    std::vector<Dim> out_dims;  // what each entry stands for, for the element-count proof
    int unresolved = -1, num_unresolved = 0;
    bool has_minus_one = false;
    for (size_t i = 0; i < c->items.size(); ++i) {
      const Item& d = c->items[i];
      if (d.is_static()) {
        shape.push_back(d.value);
        if (d.value == -1) has_minus_one = true;
        if (d.value == 0 && !allowzero)
          out_dims.push_back(xs.rank_known && i < xs.rank() ? xs.dims[i] : Dim::unknown());
        else
          out_dims.push_back(d.as_dim());
      } else if (!allowzero && xs.rank_known && i < xs.rank() && d.equals_dim(xs.dims[i])) {
        shape.push_back(0);
        out_dims.push_back(d.as_dim());
      } else {
        unresolved = int(i);
        ++num_unresolved;
        shape.push_back(-1);
        out_dims.push_back(d.as_dim());
      }
    }
    // A Reshape that keeps x's shape (same rank, each entry but at most one
    // provably x's dim there; the free one must then be the rest) is an Identity.
    if (xs.rank_known && shape.size() == xs.rank() && num_unresolved + int(has_minus_one) <= 1) {
      bool keeps = true;
      for (size_t i = 0; i < shape.size(); ++i)
        keeps &=
            shape[i] == -1 || (shape[i] == 0 && !allowzero) || (xs.dims[i].is_static() && shape[i] == xs.dims[i].value);
      if (keeps) {
        n.op_type = "Identity";
        n.inputs.resize(1);
        n.attrs.clear();
        return true;
      }
    }
    if (constant_value(g_, n.input(1)) || num_unresolved > 1) return false;
    if (unresolved >= 0) {
      if (has_minus_one || !xs.rank_known) return false;
      // The element count must prove that the entry is numel(x) / (the others).
      Monomial in, others;
      for (auto& d : xs.dims)
        if (!in.multiply(d)) return false;
      for (size_t i = 0; i < out_dims.size(); ++i)
        if (int(i) != unresolved && !others.multiply(out_dims[i])) return false;
      auto rest = in.divide(others);
      if (!rest) return false;
      const Dim& d = out_dims[size_t(unresolved)];
      Monomial want;
      if (d.is_symbolic() && (!want.multiply(d) || want.factor != rest->factor || want.symbols != rest->symbols))
        return false;
    }
    set_shape_input(n, shape);
    return true;
  }

  // (c)
  bool rewrite_expand(Node& n) {
    const Value* x = n.input(0);
    if (!x || constant_value(g_, n.input(1))) return false;
    auto c = content(n.input(1));
    if (!c || c->scalar) return false;
    const Shape& xs = x->type.shape;
    size_t len = c->items.size();
    std::vector<int64_t> shape;
    bool no_op = xs.rank_known && len <= xs.rank();
    for (size_t i = 0; i < len; ++i) {
      const Item& d = c->items[i];
      // x's dim aligned with entry i (shapes align at the right), if any.
      const Dim* xd = xs.rank_known && i + xs.rank() >= len ? &xs.dims[i + xs.rank() - len] : nullptr;
      if (d.is_static()) {
        shape.push_back(d.value);
        no_op &= d.value == 1 || (xd && xd->is_static() && xd->value == d.value);
      } else if (xd && d.equals_dim(*xd)) {
        shape.push_back(1);
      } else {
        return false;
      }
    }
    if (no_op) {
      n.op_type = "Identity";
      n.inputs.resize(1);
      n.attrs.clear();
      return true;
    }
    set_shape_input(n, shape);
    return true;
  }

  Graph& g_;
  std::map<const Value*, Content> known_;
};

class ShapeFolding : public Pass {
 public:
  std::string name() const override { return "shape-folding"; }
  bool run(Graph& g) override { return ShapeFolder(g).run(); }
};

}  // namespace

std::unique_ptr<Pass> make_shape_folding_pass() { return std::make_unique<ShapeFolding>(); }

}  // namespace cb
