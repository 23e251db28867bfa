// The structural transformer matcher (see transformer_anatomy.h): finds every
// layer of a canonicalised causal LM and its codebook sites by following the
// data flow around each attention Softmax, never by node or value names.
#include "passes/transformer_anatomy.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "ir/codebook.h"
#include "passes/fuse_layer_norm.h"
#include "support/error.h"

namespace cb {

const char* placement_name(Placement p) {
  switch (p) {
    case Placement::attn_preproj: return "attn_preproj";
    case Placement::attn: return "attn";
    case Placement::mlp: return "mlp";
    case Placement::mlp_mid: return "mlp_mid";
    case Placement::qkv: return "qkv";
    case Placement::transformer_block: return "transformer_block";
    case Placement::attn_plus_mlp: return "attn_plus_mlp";
  }
  return "?";
}

Placement parse_placement(const std::string& s) {
  std::string valid;
  for (Placement p : kAllPlacements) {
    if (s == placement_name(p)) return p;
    valid += std::string(valid.empty() ? "" : ", ") + placement_name(p);
  }
  CB_FAIL("unknown codebook placement '" << s << "' (valid: " << valid << ")");
}

std::vector<Value*> site_values(const LayerSites& l, Placement p) {
  switch (p) {
    case Placement::attn_preproj: return {l.attn_preproj};
    case Placement::attn: return {l.attn};
    case Placement::mlp: return {l.mlp};
    case Placement::mlp_mid: return {l.mlp_mid};
    case Placement::qkv: return l.qkv;
    case Placement::transformer_block:
    case Placement::attn_plus_mlp: return {l.output};
  }
  return {};
}

int64_t site_width(const ModelAnatomy& a, Placement p) {
  switch (p) {
    case Placement::mlp_mid: return a.d_mlp;
    case Placement::qkv: return 3 * a.d_model;  // separate q, k, v are quantised as [q|k|v]
    default: return a.d_model;
  }
}

std::string architecture_from_names(const Graph& g) {
  auto any_name_contains = [&](const std::string& s) {
    for (auto& v : g.values())
      if (v->name.find(s) != std::string::npos) return true;
    for (auto& n : g.nodes())
      if (n->name.find(s) != std::string::npos) return true;
    return false;
  };
  if (any_name_contains("gpt_neox")) return "gpt_neox";
  if (any_name_contains("attn.attention") || any_name_contains("attn/attention")) return "gpt_neo";
  if (any_name_contains("c_attn")) return "gpt2";
  return "unknown";
}

namespace {

using Users = std::map<const Value*, std::vector<Node*>>;

std::string vname(const Value* v) { return v ? "%" + v->name + " " + v->type.str() : "(none)"; }

const Node* producer_of(const Value* v, const char* op) {
  return v && v->producer && v->producer->op_type == op && v->producer->domain.empty() ? v->producer : nullptr;
}
bool is_const(const Value* v) { return v && v->is_constant(); }
bool is_float(const Value* v) { return v && dtype_is_float(v->type.dtype); }
bool is_rank(const Value* v, size_t r) { return v && v->type.shape.rank_known && v->type.shape.rank() == r; }
// Static last dim, or -1.
int64_t last_dim(const Value* v) {
  if (!v || !v->type.shape.rank_known || v->type.shape.rank() == 0) return -1;
  const Dim& d = v->type.shape.dims.back();
  return d.is_static() ? d.value : -1;
}
// Dims that are both known (static or symbolic) must agree.
bool compatible(const Dim& a, const Dim& b) {
  if (a.is_unknown() || b.is_unknown()) return true;
  return a.same_as(b);
}
bool is_norm(const Node* n) {
  return n && (n->op_type == "LayerNormalization" || n->op_type == "SimplifiedLayerNormalization" ||
               n->op_type == "RMSNormalization");
}

// One Linear layer: out = in @ W (+ b), `in` and `out` rank 3 [B,T,*].
struct Linear {
  Value* in = nullptr;
  Value* out = nullptr;
  bool operator==(const Linear& o) const { return in == o.in && out == o.out; }
};

// MatMul(x, W) with W a constant matrix; returns x.
Value* matmul_input(const Node* mm) {
  if (!mm || mm->inputs.size() != 2 || !mm->inputs[0] || !is_const(mm->inputs[1])) return nullptr;
  if (mm->inputs[1]->constant->rank() != 2 || is_const(mm->inputs[0])) return nullptr;
  return mm->inputs[0];
}

// The Linear whose rank-3 output is y, if y is one:
//   MatMul(x, W) | Add(MatMul(x, W), b) | Add(b, MatMul(x, W))     (b constant)
//   Reshape(Gemm(Reshape(x, [-1, K]), W [, b]), [B, T, N])          (no transA)
std::optional<Linear> linear_ending_at(Value* y) {
  if (!is_rank(y, 3) || !y->producer) return std::nullopt;
  if (const Node* add = producer_of(y, "Add"); add && add->inputs.size() == 2) {
    for (int i = 0; i < 2; ++i) {
      const Value* bias = add->inputs[1 - i];
      if (!is_const(bias) || bias->constant->numel() != last_dim(y)) continue;
      if (Value* x = matmul_input(producer_of(add->inputs[i], "MatMul")); x && is_rank(x, 3)) return Linear{x, y};
    }
    return std::nullopt;
  }
  if (const Node* mm = producer_of(y, "MatMul")) {
    if (Value* x = matmul_input(mm); x && is_rank(x, 3)) return Linear{x, y};
    return std::nullopt;
  }
  if (const Node* back = producer_of(y, "Reshape")) {
    const Node* gemm = producer_of(back->input(0), "Gemm");
    if (!gemm || gemm->attr_int("transA", 0) != 0 || !is_const(gemm->input(1)) ||
        gemm->input(1)->constant->rank() != 2 || (gemm->input(2) && !is_const(gemm->input(2))))
      return std::nullopt;
    const Node* flatten = producer_of(gemm->input(0), "Reshape");
    if (!flatten) return std::nullopt;
    Value* x = flatten->input(0);
    // [B, T, K] -> [B*T, K] -> ... -> [B, T, N]
    if (!is_rank(x, 3) || !is_rank(flatten->outputs[0], 2) || last_dim(x) < 0 ||
        last_dim(flatten->outputs[0]) != last_dim(x) || last_dim(gemm->outputs[0]) != last_dim(y))
      return std::nullopt;
    for (size_t d = 0; d < 2; ++d)
      if (!compatible(x->type.shape[d], y->type.shape[d])) return std::nullopt;
    return Linear{x, y};
  }
  return std::nullopt;
}

// Every Linear reading x (a rank-3 value): the MatMul (with its bias Add when
// that is the MatMul's only user) or the Reshape -> Gemm -> Reshape chain.
std::vector<Linear> linears_reading(Value* x, const Users& users) {
  std::vector<Linear> found;
  auto users_of = [&](const Value* v) -> const std::vector<Node*>& {
    static const std::vector<Node*> none;
    auto it = users.find(v);
    return it == users.end() ? none : it->second;
  };
  auto consider = [&](Value* y) {
    if (auto l = linear_ending_at(y); l && l->in == x && std::find(found.begin(), found.end(), *l) == found.end())
      found.push_back(*l);
  };
  if (!is_rank(x, 3)) return found;
  for (Node* u : users_of(x)) {
    if (u->op_type == "MatMul" && u->domain.empty() && u->input(0) == x) {
      Value* y = u->outputs[0];
      const auto& next = users_of(y);
      if (next.size() == 1 && next[0]->op_type == "Add" && linear_ending_at(next[0]->outputs[0]))
        y = next[0]->outputs[0];
      consider(y);
    } else if (u->op_type == "Reshape" && u->domain.empty() && u->input(0) == x) {
      for (Node* gemm : users_of(u->outputs[0]))
        if (gemm->op_type == "Gemm" && gemm->input(0) == u->outputs[0])
          for (Node* back : users_of(gemm->outputs[0]))
            if (back->op_type == "Reshape" && back->input(0) == gemm->outputs[0]) consider(back->outputs[0]);
    }
  }
  return found;
}

bool is_op(const Node* n, std::initializer_list<const char*> ops) {
  if (!n || !n->domain.empty()) return false;
  for (const char* op : ops)
    if (n->op_type == op) return true;
  return false;
}

// Ops that move the heads around between a projection and the attention
// matmuls (layout, rotary embeddings, scaling); not a Linear or a norm.
const std::initializer_list<const char*> kHeadOps = {"Transpose", "Reshape", "Cast",      "Identity", "Mul",
                                                     "Div",       "Add",     "Sub",       "Neg",      "Slice",
                                                     "Split",     "Concat",  "Unsqueeze", "Squeeze",  "Expand"};
// Ops between the scores matmul and the Softmax (scale, masks, bias).
const std::initializer_list<const char*> kScoreOps = {"Add", "Sub", "Mul", "Div", "Where", "Cast", "Identity"};
// Ops between the Softmax and probs @ V (cast, NaN guards, dropout).
const std::initializer_list<const char*> kProbOps = {"Cast", "Where", "Identity", "Dropout"};
// Elementwise ops that make up an MLP activation (GELU, its tanh/erf forms, ...).
const std::initializer_list<const char*> kActivationOps = {
    "Add",         "Sub",       "Mul",      "Div",  "Pow",        "Tanh",      "Erf",      "Sigmoid",
    "Relu",        "Gelu",      "FastGelu", "Cast", "Neg",        "Exp",       "Log",      "Sqrt",
    "Softplus",    "Identity",  "Max",      "Min",  "Clip",       "LeakyRelu", "Elu",      "Selu",
    "HardSigmoid", "HardSwish", "Mish",     "Abs",  "Reciprocal", "BiasGelu",  "QuickGelu"};

// Walks backwards from `start` through float inputs of `ops` nodes and
// returns the Linears whose outputs it reaches (not walking past them).
std::vector<Linear> linears_feeding(Value* start) {
  std::vector<Linear> found;
  std::set<const Value*> seen{start};
  std::deque<Value*> todo{start};
  while (!todo.empty()) {
    Value* v = todo.front();
    todo.pop_front();
    if (auto l = linear_ending_at(v)) {
      if (std::find(found.begin(), found.end(), *l) == found.end()) found.push_back(*l);
      continue;
    }
    if (!is_op(v->producer, kHeadOps)) continue;
    for (Value* in : v->producer->inputs)
      if (in && is_float(in) && !is_const(in) && seen.insert(in).second) todo.push_back(in);
  }
  return found;
}

// GPT-Neo's local attention layers mask with a band: the causal-mask constant
// feeding the attention has zeros far below the diagonal. We look for a
// constant boolean [.., T, T] mask a few nodes before the Softmax.
std::string attention_kind(const Node& softmax) {
  const Node* n = softmax.inputs.empty() || !softmax.inputs[0] ? nullptr : softmax.inputs[0]->producer;
  for (int depth = 0; n && depth < 6; ++depth) {
    for (const Value* in : n->inputs) {
      if (!in || !in->constant || in->constant->rank() < 2) continue;
      const Tensor& t = *in->constant;
      int64_t r = t.dim(t.rank() - 2), c = t.dim(t.rank() - 1);
      if (r < 2 || r != c || t.dtype() != DType::boolean) continue;
      bool band = false;  // some row cannot see token 0
      for (int64_t i = 1; i < r && !band; ++i) band = !t.data<bool>()[i * c];
      return band ? "local" : "global";
    }
    const Value* next = n->inputs.empty() ? nullptr : n->inputs[0];
    n = next ? next->producer : nullptr;
  }
  return "";
}

class Matcher {
 public:
  explicit Matcher(const Graph& g) : users_(g.users()) {}

  // All sites of the layer around one attention Softmax, except its index.
  LayerSites match_layer(const Node& softmax) {
    LayerSites l;
    l.softmax = &softmax;
    l.attention_kind = attention_kind(softmax);
    const std::string where = "attention " + softmax.describe();
    const Node* scores_mm = find_scores_matmul(softmax, where);
    const Node* pv_mm = find_probs_times_v(softmax, where);
    l.scores_matmul = scores_mm;
    l.probs_matmul = pv_mm;

    // Q, K and V back to their projections.
    Linear q = one_projection(scores_mm->inputs[0], where, "query");
    Linear k = one_projection(scores_mm->inputs[1], where, "key");
    Linear v = one_projection(pv_mm->inputs[1], where, "value");
    if (q == k && k == v) {
      l.qkv = {q.out};
    } else if (q.out != k.out && k.out != v.out && q.out != v.out) {
      l.qkv = {q.out, k.out, v.out};
    } else {
      CB_FAIL(where << ": query, key and value come from " << vname(q.out) << ", " << vname(k.out) << ", "
                    << vname(v.out) << "; expected one fused projection or three separate ones");
    }
    CB_CHECK(q.in == k.in && k.in == v.in, where << ": the query, key and value projections read different values ("
                                                 << vname(q.in) << ", " << vname(k.in) << ", " << vname(v.in) << ")");
    const Node* ln1 = q.in->producer;
    CB_CHECK(is_norm(ln1) && ln1->input(0),
             where << ": the QKV projection reads " << vname(q.in) << ", which is not a LayerNormalization");
    l.input = ln1->inputs[0];

    // probs @ V -> merged heads -> output projection.
    Linear proj = output_projection(pv_mm, where);
    l.attn_preproj = proj.in;
    l.attn = proj.out;

    // The MLP: after LN(input + attn) (sequential) or LN(input) (parallel).
    Linear mlp_in, mlp_out;
    Value* mid = find_attn_residual(l.input, l.attn);
    if (!mid || !find_mlp(mid, nullptr, last_dim(l.input), mlp_in, mlp_out)) {
      CB_CHECK(find_mlp(l.input, ln1, last_dim(l.input), mlp_in, mlp_out),
               where << ": no MLP (Linear -> activation -> Linear) reads a LayerNormalization of the block input "
                     << vname(l.input) << " or of block input + attn " << vname(l.attn));
      l.parallel_residual = true;
    }
    l.mlp_mid = mlp_out.in;
    l.mlp = mlp_out.out;
    l.output = find_block_output(l, where);
    return l;
  }

 private:
  const std::vector<Node*>& users_of(const Value* v) const {
    static const std::vector<Node*> none;
    auto it = users_.find(v);
    return it == users_.end() ? none : it->second;
  }

  // Q @ K^T: the first MatMul of two computed values behind the Softmax input.
  const Node* find_scores_matmul(const Node& softmax, const std::string& where) const {
    std::set<const Value*> seen;
    std::deque<Value*> todo{softmax.inputs[0]};
    while (!todo.empty()) {
      Value* v = todo.front();
      todo.pop_front();
      const Node* p = v->producer;
      if (!p || !seen.insert(v).second) continue;
      if (is_op(p, {"MatMul"}) && p->inputs.size() == 2 && !is_const(p->inputs[0]) && !is_const(p->inputs[1]) &&
          is_rank(v, 4))
        return p;
      if (!is_op(p, kScoreOps)) continue;
      for (Value* in : p->inputs)
        if (in && is_float(in) && !is_const(in)) todo.push_back(in);
    }
    CB_FAIL(where << ": no Q @ K^T MatMul found behind the Softmax input " << vname(softmax.inputs[0]));
  }

  // probs @ V: the MatMul that reads the Softmax output (through casts and
  // NaN guards) as its first operand.
  const Node* find_probs_times_v(const Node& softmax, const std::string& where) const {
    std::set<const Value*> seen;
    std::deque<Value*> todo{softmax.outputs[0]};
    while (!todo.empty()) {
      Value* v = todo.front();
      todo.pop_front();
      if (!seen.insert(v).second) continue;
      for (Node* u : users_of(v)) {
        if (is_op(u, {"MatMul"}) && u->input(0) == v && u->input(1) && !is_const(u->input(1))) return u;
        if (is_op(u, kProbOps) && u->outputs[0] && is_float(u->outputs[0])) todo.push_back(u->outputs[0]);
      }
    }
    CB_FAIL(where << ": the Softmax output " << vname(softmax.outputs[0]) << " reaches no probs @ V MatMul");
  }

  Linear one_projection(Value* start, const std::string& where, const char* what) const {
    std::vector<Linear> found = linears_feeding(start);
    CB_CHECK(found.size() == 1, where << ": the " << what << " " << vname(start) << " comes from " << found.size()
                                      << " Linear projections of a [B,T,D] value, expected exactly one");
    return found[0];
  }

  // From probs @ V through layout ops to the first rank-3 value that a Linear
  // reads: the merged heads (attn_preproj) and the output projection (attn).
  Linear output_projection(const Node* pv_mm, const std::string& where) const {
    std::set<const Value*> seen;
    std::deque<Value*> todo{pv_mm->outputs[0]};
    while (!todo.empty()) {
      Value* v = todo.front();
      todo.pop_front();
      if (!seen.insert(v).second) continue;
      if (is_rank(v, 3)) {
        std::vector<Linear> ls = linears_reading(v, users_);
        CB_CHECK(ls.size() <= 1, where << ": the merged heads " << vname(v) << " feed " << ls.size()
                                       << " Linear layers, expected one output projection");
        if (ls.size() == 1) return ls[0];
      }
      for (Node* u : users_of(v))
        if (is_op(u, {"Transpose", "Reshape", "Cast", "Identity"}) && u->input(0) == v) todo.push_back(u->outputs[0]);
    }
    CB_FAIL(where << ": probs @ V " << vname(pv_mm->outputs[0])
                  << " reaches no output-projection Linear of a [B,T,D] value through Transpose/Reshape"
                     " (where heads and tokens are flattened in one Reshape, run expose_merged_heads first)");
  }

  // input + attn (either order), the residual stream between attention and MLP
  // in a sequential block; null when there is none.
  Value* find_attn_residual(Value* input, Value* attn) const {
    for (Node* u : users_of(attn))
      if (is_op(u, {"Add"}) && u->inputs.size() == 2 &&
          ((u->inputs[0] == input && u->inputs[1] == attn) || (u->inputs[0] == attn && u->inputs[1] == input)))
        return u->outputs[0];
    return nullptr;
  }

  // An MLP reading a norm of `x` (other than `skip_norm`): Linear (D -> I),
  // elementwise activation, Linear (I -> D).
  bool find_mlp(Value* x, const Node* skip_norm, int64_t d_model, Linear& first, Linear& second) const {
    for (Node* norm : users_of(x)) {
      if (norm == skip_norm || !is_norm(norm) || norm->input(0) != x) continue;
      for (const Linear& up : linears_reading(norm->outputs[0], users_)) {
        const int64_t width = last_dim(up.out);
        // Walk the activation: elementwise ops that keep the [B,T,I] shape.
        std::set<const Value*> seen;
        std::deque<Value*> todo{up.out};
        while (!todo.empty()) {
          Value* v = todo.front();
          todo.pop_front();
          if (!seen.insert(v).second) continue;
          for (const Linear& down : linears_reading(v, users_))
            if (last_dim(down.out) == d_model) {
              first = up;
              second = down;
              return true;
            }
          for (Node* u : users_of(v))
            if (is_op(u, kActivationOps) && u->outputs.size() == 1 && is_rank(u->outputs[0], 3) &&
                last_dim(u->outputs[0]) == width)
              todo.push_back(u->outputs[0]);
        }
      }
    }
    return false;
  }

  // The value of the Add tree whose leaves are exactly {input, attn, mlp}.
  Value* find_block_output(const LayerSites& l, const std::string& where) const {
    const std::multiset<const Value*> want{l.input, l.attn, l.mlp};
    // Leaves of the Add tree rooted at v, stopping at the three terms.
    std::function<void(const Value*, std::multiset<const Value*>&, int)> leaves =
        [&](const Value* v, std::multiset<const Value*>& out, int depth) {
          const Node* add = producer_of(v, "Add");
          if (want.count(v) || !add || add->inputs.size() != 2 || depth > 3) {
            out.insert(v);
            return;
          }
          leaves(add->inputs[0], out, depth + 1);
          leaves(add->inputs[1], out, depth + 1);
        };
    std::deque<Value*> todo{l.mlp};
    std::set<const Value*> seen;
    while (!todo.empty()) {
      Value* v = todo.front();
      todo.pop_front();
      for (Node* u : users_of(v)) {
        if (!is_op(u, {"Add"}) || !seen.insert(u->outputs[0]).second) continue;
        std::multiset<const Value*> got;
        leaves(u->outputs[0], got, 0);
        if (got == want) return u->outputs[0];
        // A partial sum (e.g. mlp + attn in a parallel block): keep climbing.
        bool partial = std::all_of(got.begin(), got.end(), [&](const Value* x) { return want.count(x) > 0; });
        if (partial && got.size() < want.size()) todo.push_back(u->outputs[0]);
      }
    }
    CB_FAIL(where << ": no Add tree sums exactly the block input " << vname(l.input) << ", attn " << vname(l.attn)
                  << " and mlp " << vname(l.mlp));
  }

  Users users_;
};

// The final norm of the last block output and the unembedding Linear reading
// it, through layout ops that keep [B,T,D] (the TorchScript GPT-2 export
// reshapes the normed stream before its lm_head MatMul). Left null unless
// exactly one such norm -> Linear pair exists.
void find_readout(const Graph& g, ModelAnatomy& a) {
  const Users users = g.users();
  auto users_of = [&](const Value* v) -> const std::vector<Node*>& {
    static const std::vector<Node*> none;
    auto it = users.find(v);
    return it == users.end() ? none : it->second;
  };
  Value* last = a.layers.back().output;
  const Node* norm = nullptr;
  Value* logits = nullptr;
  int found = 0;
  for (Node* n : users_of(last)) {
    if (!is_norm(n) || n->input(0) != last || !is_const(n->input(1)) || n->outputs.empty()) continue;
    std::set<const Value*> seen;
    std::deque<Value*> todo{n->outputs[0]};
    while (!todo.empty()) {
      Value* v = todo.front();
      todo.pop_front();
      if (!seen.insert(v).second) continue;
      for (const Linear& l : linears_reading(v, users)) {
        norm = n;
        logits = l.out;
        ++found;
      }
      for (Node* u : users_of(v))
        if (is_op(u, {"Reshape", "Identity", "Cast"}) && u->input(0) == v && is_rank(u->outputs[0], 3) &&
            last_dim(u->outputs[0]) == a.d_model)
          todo.push_back(u->outputs[0]);
    }
  }
  if (found != 1) return;
  a.final_norm = norm;
  a.logits = logits;
}

// Every site must be a [B,T,width] value.
void check_site(const LayerSites& l, const char* site, const Value* v, int64_t width) {
  CB_CHECK(v, "layer " << l.index << ": site " << site << " not found");
  CB_CHECK(is_rank(v, 3) && last_dim(v) == width,
           "layer " << l.index << ": site " << site << " " << vname(v) << " is not a [B,T," << width << "] value");
}

}  // namespace

bool expose_merged_heads(Graph& g) {
  // Reshape(t [B,T,d2..dn] with static d2.., -> [M, d2*..*dn]) read as the A
  // of a Gemm with a constant B.
  std::vector<Node*> targets;
  const Users users = g.users();
  for (auto& n : g.nodes()) {
    if (!is_op(n.get(), {"Reshape"}) || n->attr_int("allowzero", 0) != 0) continue;
    const Value* t = n->input(0);
    const Value* flat = n->outputs.empty() ? nullptr : n->outputs[0];
    if (!t || !flat || !t->type.shape.rank_known || t->type.shape.rank() < 4 || !is_rank(flat, 2)) continue;
    int64_t width = 1;
    for (size_t d = 2; d < t->type.shape.rank() && width > 0; ++d)
      width = t->type.shape[d].is_static() ? width * t->type.shape[d].value : -1;
    if (width <= 0 || last_dim(flat) != width) continue;
    // A constant target shape without 0 (copy-a-dim) entries means the same
    // thing for the rank-3 input as for the rank-4 one.
    const Value* target = n->input(1);
    if (!is_const(target)) continue;
    const std::vector<int64_t> sizes = target->constant->to_int_vector();
    if (std::find(sizes.begin(), sizes.end(), 0) != sizes.end()) continue;
    auto it = users.find(flat);
    bool feeds_linear = false;
    if (it != users.end())
      for (const Node* u : it->second)
        feeds_linear |=
            is_op(u, {"Gemm"}) && u->input(0) == flat && is_const(u->input(1)) && u->attr_int("transA", 0) == 0;
    if (feeds_linear) targets.push_back(n.get());
  }
  for (Node* n : targets) {
    Value* t = n->inputs[0];
    const int64_t width = last_dim(n->outputs[0]);
    TensorType merged_type{t->type.dtype, Shape({t->type.shape[0], t->type.shape[1], Dim::fixed(width)})};
    Value* merged = g.add_value(t->name + "/merged_heads", merged_type);
    // Shape [0, 0, D]: 0 copies B and T from the input (allowzero = 0).
    Value* shape = g.add_constant(t->name + "/merged_heads_shape", Tensor::from_vector<int64_t>({0, 0, width}, {3}));
    auto node = std::make_unique<Node>();
    node->op_type = "Reshape";
    node->name = n->name + "/merge_heads";
    node->inputs = {t, shape};
    node->outputs = {merged};
    g.insert_node_before(n, std::move(node));
    n->inputs[0] = merged;
  }
  return !targets.empty();
}

ModelAnatomy find_anatomy(const Graph& g) {
  ModelAnatomy a;
  a.architecture = architecture_from_names(g);

  Matcher matcher(g);
  std::vector<LayerSites> found;
  for (auto& n : g.nodes()) {
    if (n->op_type != "Softmax" || !n->domain.empty()) continue;
    const Value* scores = n->input(0);
    const int64_t axis = n->attr_int("axis", -1);
    if (!is_rank(scores, 4) || (axis != -1 && axis != 3)) continue;  // not attention probabilities
    found.push_back(matcher.match_layer(*n));
  }
  CB_CHECK(!found.empty(), "no attention found: no Softmax over [B,H,T,T] scores in graph '"
                               << g.name << "', so it is not a transformer this matcher understands");

  // Order the layers along the residual stream: output L is input L+1.
  std::map<const Value*, size_t> by_input;
  for (size_t i = 0; i < found.size(); ++i) {
    CB_CHECK(by_input.emplace(found[i].input, i).second,
             "attentions " << found[by_input[found[i].input]].softmax->describe() << " and "
                           << found[i].softmax->describe() << " read the same block input " << vname(found[i].input));
  }
  std::set<const Value*> outputs;
  for (auto& l : found) outputs.insert(l.output);
  std::vector<size_t> firsts;
  for (size_t i = 0; i < found.size(); ++i)
    if (!outputs.count(found[i].input)) firsts.push_back(i);
  CB_CHECK(firsts.size() == 1, "the residual stream is broken: "
                                   << firsts.size()
                                   << " layers have a block input that is no other layer's output (expected 1)");
  for (size_t i = firsts[0]; a.layers.size() < found.size();) {
    a.layers.push_back(found[i]);
    LayerSites& l = a.layers.back();
    l.index = int64_t(a.layers.size()) - 1;
    if (a.layers.size() == found.size()) break;
    auto next = by_input.find(l.output);
    CB_CHECK(next != by_input.end(), "the residual stream is broken after layer "
                                         << l.index << ": its output " << vname(l.output)
                                         << " is not the input of another layer");
    i = next->second;
  }

  // Widths and heads, the same in every layer.
  a.d_model = last_dim(a.layers[0].input);
  CB_CHECK(a.d_model > 0, "layer 0: the block input " << vname(a.layers[0].input) << " has no static width");
  a.d_mlp = last_dim(a.layers[0].mlp_mid);
  CB_CHECK(a.d_mlp > 0, "layer 0: mlp_mid " << vname(a.layers[0].mlp_mid) << " has no static width");
  for (const LayerSites& l : a.layers) {
    check_site(l, "input", l.input, a.d_model);
    check_site(l, "attn_preproj", l.attn_preproj, a.d_model);
    check_site(l, "attn", l.attn, a.d_model);
    check_site(l, "mlp_mid", l.mlp_mid, a.d_mlp);
    check_site(l, "mlp", l.mlp, a.d_model);
    check_site(l, "output", l.output, a.d_model);
    CB_CHECK(l.qkv.size() == a.layers[0].qkv.size(),
             "layer " << l.index << ": " << l.qkv.size() << " QKV projections, layer 0 has " << a.layers[0].qkv.size());
    for (const Value* v : l.qkv) check_site(l, "qkv", v, l.qkv.size() == 1 ? 3 * a.d_model : a.d_model);
    const Dim& heads = l.softmax->inputs[0]->type.shape[1];
    if (heads.is_static()) {
      CB_CHECK(a.num_heads < 0 || a.num_heads == heads.value,
               "layer " << l.index << ": " << heads.value << " attention heads, an earlier layer has " << a.num_heads);
      a.num_heads = heads.value;
    }
  }
  find_readout(g, a);
  return a;
}

std::optional<LinearWeight> linear_weight(const Value* y) {
  if (!y || !linear_ending_at(const_cast<Value*>(y))) return std::nullopt;  // it only reads
  // The MatMul or Gemm behind the Linear's output (see linear_ending_at).
  const Node* n = y->producer;
  if (n->op_type == "Add") {
    const Node* add = n;
    n = nullptr;
    for (int i = 0; i < 2 && !n; ++i)
      if (is_const(add->inputs[1 - i])) n = producer_of(add->inputs[i], "MatMul");
  } else if (n->op_type == "Reshape") {
    n = n->input(0)->producer;
  }
  const Value* w = n ? n->input(1) : nullptr;
  if (!is_const(w) || w->constant->dtype() != DType::f32 || w->constant->rank() != 2) return std::nullopt;
  LinearWeight lw;
  lw.matrix = &*w->constant;
  if (n->op_type == "Gemm") {
    lw.transposed = n->attr_int("transB", 0) != 0;
    lw.alpha = n->attr_float("alpha", 1.f);
  }
  return lw;
}

namespace {

// Temporarily rewires a compiled graph so that it reads like its plain model:
// the users of each codebook's output read its input instead, the codebooks
// (and the Concat that feeds the one on separate q, k, v) read nothing, and the
// Split after such a codebook is bypassed to the Concat's inputs. The
// destructor puts every edge back.
class CodebookBypass {
 public:
  explicit CodebookBypass(Graph& g) : g_(g) {
    std::map<Value*, Value*> to;  // codebook output (or split part) -> value it stands for
    for (auto& n : g.nodes()) {
      if (!is_codebook_node(*n) || !n->inputs[0] || !n->outputs[0]) continue;
      to[n->outputs[0]] = n->inputs[0];
      if (auto [concat, split] = separate_qkv_codebook(g, *n); concat) {
        for (size_t i = 0; i < 3; ++i) to[split->outputs[i]] = concat->inputs[i];
        detach(*split);
        detach(*concat);
      }
      detach(*n);
    }
    for (auto& n : g.nodes())
      for (size_t i = 0; i < n->inputs.size(); ++i)
        if (auto it = to.find(n->inputs[i]); it != to.end()) set(*n, i, it->second);
    for (size_t i = 0; i < g.outputs.size(); ++i)
      if (auto it = to.find(g.outputs[i]); it != to.end()) {
        saved_outputs_.push_back({i, g.outputs[i]});
        g.outputs[i] = it->second;
      }
  }
  ~CodebookBypass() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) it->node->inputs[it->index] = it->value;
    for (auto& [i, v] : saved_outputs_) g_.outputs[i] = v;
  }

 private:
  struct Edge {
    Node* node;
    size_t index;
    Value* value;
  };
  void set(Node& n, size_t i, Value* v) {
    saved_.push_back({&n, i, n.inputs[i]});
    n.inputs[i] = v;
  }
  void detach(Node& n) {
    for (size_t i = 0; i < n.inputs.size(); ++i)
      if (n.inputs[i] && !n.inputs[i]->is_constant()) set(n, i, nullptr);
  }
  Graph& g_;
  std::vector<Edge> saved_;
  std::vector<std::pair<size_t, Value*>> saved_outputs_;
};

}  // namespace

SeparateQkvCodebook separate_qkv_codebook(const Graph& g, const Node& codebook) {
  Node* concat = codebook.inputs[0] ? codebook.inputs[0]->producer : nullptr;
  if (!concat || concat->op_type != "Concat" || concat->inputs.size() != 3) return {};
  for (auto& user : g.nodes())
    if (user->op_type == "Split" && !user->inputs.empty() && user->inputs[0] == codebook.outputs[0] &&
        user->outputs.size() == 3)
      return {concat, user.get()};
  return {};
}

ModelAnatomy analyze_model(Graph& g) {
  expose_merged_heads(g);
  FuseLayerNormPass fuse_layer_norm;  // opset < 17 exports spell LayerNorm out; layers are found by their norms
  PassManager().run(fuse_layer_norm, g);
  CodebookBypass bypass(g);
  return find_anatomy(g);
}

}  // namespace cb
