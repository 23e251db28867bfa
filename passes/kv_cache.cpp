// The kv-cache pass (see kv_cache.h for the contract and the algorithm).
#include "passes/kv_cache.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <set>

#include "backends/backend.h"
#include "ir/builder.h"
#include "ir/graph_clone.h"
#include "ir/verifier.h"
#include "passes/canonicalize.h"
#include "passes/transformer_anatomy.h"
#include "runtime/executable.h"
#include "support/error.h"

namespace cb {

std::string past_key_name(int64_t layer) { return "past." + std::to_string(layer) + ".key"; }
std::string past_value_name(int64_t layer) { return "past." + std::to_string(layer) + ".value"; }
std::string present_key_name(int64_t layer) { return "present." + std::to_string(layer) + ".key"; }
std::string present_value_name(int64_t layer) { return "present." + std::to_string(layer) + ".value"; }

namespace {

using pass_util::is_onnx_op;

const char* const kLmInputs[] = {"input_ids", "attention_mask", "position_ids"};

// Range(0, n, 1) with constant start and delta: a run of positions.
bool is_position_range(const Node& n) {
  if (!is_onnx_op(&n, "Range") || n.inputs.size() != 3) return false;
  const Value* start = n.inputs[0];
  const Value* delta = n.inputs[2];
  return start && delta && start->is_constant() && delta->is_constant() && start->constant->numel() == 1 &&
         delta->constant->numel() == 1 && start->constant->get_double(0) == 0 && delta->constant->get_double(0) == 1;
}

// The non-constant values the path from the scores MatMul to the Softmax
// reads besides the scores, with the (node, input index) pairs that read them.
std::map<Value*, std::vector<std::pair<Node*, size_t>>> score_side_inputs(const Graph& g, const LayerSites& l) {
  static const std::set<std::string> kScoreOps = {"Add", "Sub", "Mul", "Div", "Where", "Cast", "Identity"};
  const auto users = g.users();
  // Values derived from the scores through score ops.
  std::set<const Value*> derived{l.scores_matmul->outputs[0]};
  std::deque<const Value*> todo{l.scores_matmul->outputs[0]};
  while (!todo.empty()) {
    const Value* v = todo.front();
    todo.pop_front();
    auto it = users.find(v);
    if (it == users.end()) continue;
    for (Node* u : it->second)
      if (u->domain.empty() && kScoreOps.count(u->op_type) && u->outputs.size() == 1 && u->outputs[0] &&
          derived.insert(u->outputs[0]).second)
        todo.push_back(u->outputs[0]);
  }
  Value* start = l.softmax->inputs[0];
  CB_CHECK(derived.count(start), "kv-cache: " << l.softmax->describe() << " of layer " << l.index
                                              << " does not read the scores of " << l.scores_matmul->describe()
                                              << " through Add/Sub/Mul/Div/Where/Cast");
  std::map<Value*, std::vector<std::pair<Node*, size_t>>> side;
  std::set<const Value*> seen;
  std::deque<Value*> back{start};
  while (!back.empty()) {
    Value* v = back.front();
    back.pop_front();
    if (v == l.scores_matmul->outputs[0] || !seen.insert(v).second) continue;
    Node* p = v->producer;
    for (size_t i = 0; i < p->inputs.size(); ++i) {
      Value* in = p->inputs[i];
      if (!in || in->is_constant()) continue;
      if (derived.count(in))
        back.push_back(in);
      else
        side[in].push_back({p, i});
    }
  }
  return side;
}

// Evaluates `values` of `g` for one unpadded sequence of `context` tokens
// (batch 1): on a copy of the graph cut down to what they need, where every
// Shape whose input's shape is known for that sequence is a constant, so the
// model's layers themselves do not run.
std::vector<Tensor> evaluate_for_full_context(const Graph& g, const std::vector<Value*>& values, int64_t context) {
  std::map<const Value*, Value*> map;
  std::shared_ptr<Graph> eval = clone_graph(g, &map);
  eval->outputs.clear();
  for (Value* v : values) eval->outputs.push_back(map.at(v));
  std::map<std::string, int64_t> bound;  // symbolic dims of the LM inputs: [batch, sequence]
  for (const Value* in : eval->inputs)
    for (const char* name : kLmInputs)
      if (in->name == name && in->type.shape.rank_known && in->type.shape.rank() == 2) {
        if (in->type.shape[0].is_symbolic()) bound[in->type.shape[0].symbol] = 1;
        if (in->type.shape[1].is_symbolic()) bound[in->type.shape[1].symbol] = context;
      }
  std::vector<std::pair<Value*, Tensor>> known_shapes;
  for (auto& n : eval->nodes()) {
    if (!is_onnx_op(n.get(), "Shape") || !n->input(0) || !n->input(0)->type.shape.rank_known) continue;
    std::vector<int64_t> dims;
    for (const Dim& d : n->input(0)->type.shape.dims) {
      auto it = d.is_symbolic() ? bound.find(d.symbol) : bound.end();
      dims.push_back(d.is_static() ? d.value : it != bound.end() ? it->second : -1);
    }
    if (std::find(dims.begin(), dims.end(), -1) != dims.end()) continue;
    const int64_t rank = int64_t(dims.size());
    int64_t start = n->attr_int("start", 0), end = n->attr_int("end", rank);
    start = std::clamp(start < 0 ? start + rank : start, int64_t(0), rank);
    end = std::clamp(end < 0 ? end + rank : end, int64_t(0), rank);
    std::vector<int64_t> part(dims.begin() + start, dims.begin() + std::max(start, end));
    known_shapes.push_back({n->outputs[0], Tensor::from_vector<int64_t>(part, {int64_t(part.size())})});
  }
  for (auto& [v, t] : known_shapes) eval->replace_all_uses(v, eval->add_constant(v->name + "/known", t));
  PassInstrumentation quiet;  // a scratch graph: never printed
  PassManager(quiet).run(*make_dead_code_elimination_pass(), *eval);
  std::set<const Value*> read;
  for (auto& n : eval->nodes())
    for (const Value* v : n->inputs) read.insert(v);
  for (const Value* v : eval->outputs) read.insert(v);
  eval->inputs.erase(
      std::remove_if(eval->inputs.begin(), eval->inputs.end(), [&](const Value* v) { return !read.count(v); }),
      eval->inputs.end());

  std::map<std::string, Tensor> feeds;
  std::vector<int64_t> zeros(size_t(context), 0), ones(size_t(context), 1), positions(static_cast<size_t>(context));
  for (int64_t t = 0; t < context; ++t) positions[size_t(t)] = t;
  for (const Value* in : eval->inputs) {
    const std::vector<int64_t>* data = in->name == "input_ids"        ? &zeros
                                       : in->name == "attention_mask" ? &ones
                                       : in->name == "position_ids"   ? &positions
                                                                      : nullptr;
    CB_CHECK(data, "kv-cache: the attention mask depends on the graph input '"
                       << in->name << "', which is not input_ids, attention_mask or position_ids");
    Tensor t = Tensor::from_vector<int64_t>(*data, {1, context});
    feeds[in->name] = in->type.dtype == DType::i64 || in->type.dtype == DType::undefined ? t : Tensor();
    CB_CHECK(feeds[in->name].defined(), "kv-cache: graph input '" << in->name << "' is " << in->type.str()
                                                                  << "; expected int64 token ids / mask / positions");
  }
  auto backend = make_backend("cpu");
  auto exe = Executable::compile(eval, *backend);
  return exe->run(feeds);
}

// Where past_length.. new positions land; the values the rewrite shares.
struct Common {
  Value* past = nullptr;         // i64 [1]
  Value* past_scalar = nullptr;  // i64 []
  Value* end = nullptr;          // past + N, i64 [1]
  Value* capacity = nullptr;     // C, i64 [1]
  Value* valid = nullptr;        // bool [C + N]: cache slot j < past, or a new key
  Value* lowest = nullptr;       // f32 lowest, what masked scores become
};

}  // namespace

int64_t position_table_rows(const Graph& g) {
  static const std::set<std::string> kValuePreserving = {"Reshape",   "Flatten",  "Cast",   "Squeeze",
                                                         "Unsqueeze", "Identity", "Expand", "Slice"};
  std::set<const Value*> positions;
  for (const Value* v : g.inputs)
    if (v->name == "position_ids") positions.insert(v);
  for (auto& n : g.nodes()) {  // topological order
    if (is_position_range(*n)) positions.insert(n->outputs[0]);
    if (n->inputs.empty() || !n->inputs[0] || n->outputs.empty() || !n->outputs[0] || !n->domain.empty()) continue;
    if (kValuePreserving.count(n->op_type) && positions.count(n->inputs[0])) positions.insert(n->outputs[0]);
    if (n->op_type == "Gather" && n->inputs.size() == 2 && positions.count(n->inputs[1]) &&
        n->inputs[0]->is_constant() && n->attr_int("axis", 0) == 0 && n->inputs[0]->constant->rank() == 2)
      return n->inputs[0]->constant->dim(0);
  }
  return -1;
}

bool KvCachePass::run(Graph& g) {
  CB_CHECK(!g.find_value(kPastLengthInput),
           "kv-cache: the graph already has a value '" << kPastLengthInput << "' (did the pass run twice?)");
  Value* input_ids = nullptr;
  for (Value* v : g.inputs)
    if (v->name == "input_ids") input_ids = v;
  CB_CHECK(input_ids, "kv-cache: the graph has no input_ids input");
  const ModelAnatomy a = analyze_model(g);
  context_ = opts_.context > 0 ? opts_.context : position_table_rows(g);
  CB_CHECK(context_ > 0,
           "kv-cache: the model has no learned position table (rotary positions), so its context "
           "length is not in the graph; give it (--context N)");
  layers_ = int64_t(a.layers.size());
  heads_ = a.num_heads;
  CB_CHECK(heads_ > 0 && a.d_model % heads_ == 0,
           "kv-cache: the attention has no static head count (" << heads_ << ") dividing d_model " << a.d_model);
  head_dim_ = a.d_model / heads_;

  // Positions made in the graph, before anything is added.
  std::vector<Node*> ranges;
  for (auto& n : g.nodes())
    if (is_position_range(*n)) ranges.push_back(n.get());

  // 1. The masks, tabulated over the full context.
  std::vector<std::map<Value*, std::vector<std::pair<Node*, size_t>>>> sides;
  std::vector<Value*> side_values;
  for (const LayerSites& l : a.layers) {
    sides.push_back(score_side_inputs(g, l));
    for (auto& [v, uses] : sides.back())
      if (std::find(side_values.begin(), side_values.end(), v) == side_values.end()) side_values.push_back(v);
  }
  std::vector<Tensor> tables =
      side_values.empty() ? std::vector<Tensor>{} : evaluate_for_full_context(g, side_values, context_);

  Builder b(g);
  b.set_scope("kv_cache");
  Common c;
  c.past = g.add_input(kPastLengthInput, TensorType{DType::i64, Shape::of({1})});
  std::vector<Value*> past_keys, past_values;
  for (const LayerSites& l : a.layers) {
    const Value* kt = l.scores_matmul->inputs[1];
    const Value* v = l.probs_matmul->inputs[1];
    auto batch = [](const Value* x) {
      return x->type.shape.rank_known && x->type.shape.rank() == 4 ? x->type.shape[0] : Dim::sym("batch");
    };
    const Dim cap = Dim::sym("past_capacity");
    past_keys.push_back(
        g.add_input(past_key_name(l.index),
                    TensorType{DType::f32, Shape({batch(kt), Dim::fixed(heads_), Dim::fixed(head_dim_), cap})}));
    past_values.push_back(
        g.add_input(past_value_name(l.index),
                    TensorType{DType::f32, Shape({batch(v), Dim::fixed(heads_), cap, Dim::fixed(head_dim_)})}));
  }
  {
    Value* new_tokens = b.named_op("Slice", {b.shape_of(input_ids), b.i64s({1}), b.i64s({2})}, "new_tokens");
    c.end = b.add(c.past, new_tokens, "end");
    c.capacity = b.named_op("Slice", {b.shape_of(past_keys[0]), b.i64s({3}), b.i64s({4})}, "capacity");
    c.past_scalar = b.named_op("Squeeze", {c.past, b.i64s({0})}, "past_length_scalar");
    Value* keys = b.add(c.capacity, new_tokens, "keys");
    Value* key_index = b.named_op("Range", {b.i64(0), b.op("Squeeze", {keys, b.i64s({0})}), b.i64(1)}, "key_index");
    c.valid = b.named_op("Or",
                         {b.op("Less", {key_index, c.past_scalar}),
                          b.op("GreaterOrEqual", {key_index, b.op("Squeeze", {c.capacity, b.i64s({0})})})},
                         "valid_keys");
    c.lowest = b.f32(std::numeric_limits<float>::lowest(), "masked_score");
  }

  // 2. The mask tables read at the new rows and at the columns [cache | new].
  std::map<Value*, Value*> mask_for;
  for (size_t i = 0; i < side_values.size(); ++i) {
    const Tensor& t = tables[i];
    Value* orig = side_values[i];
    const int64_t r = t.rank();
    auto along = [&](int64_t size) { return size == context_ ? 1 : size == 1 ? 0 : -1; };
    int rows = r >= 2 ? along(t.dim(size_t(r - 2))) : -1, cols = r >= 2 ? along(t.dim(size_t(r - 1))) : -1;
    CB_CHECK(rows >= 0 && cols >= 0, "kv-cache: the attention reads " << orig->name << ", which for a sequence of "
                                                                      << context_ << " tokens is "
                                                                      << dtype_name(t.dtype()) << dims_str(t.dims())
                                                                      << ", not a [.., query, key] mask");
    if (!rows && !cols) continue;  // the same for every length: keep it
    ++tables_;
    auto scope = b.scope("kv_cache/mask" + std::to_string(tables_ - 1));
    Value* m = b.constant(t, "table");
    if (rows) m = b.named_op("Slice", {m, c.past, c.end, b.i64s({r - 2})}, "new_rows");
    if (cols) {
      Value* cache_cols = b.named_op("Slice", {m, b.i64s({0}), c.capacity, b.i64s({r - 1})}, "cache_keys");
      Value* new_cols = b.named_op("Slice", {m, c.past, c.end, b.i64s({r - 1})}, "new_keys");
      m = b.named_op("Concat", {cache_cols, new_cols}, "mask", {{"axis", int64_t(-1)}});
    }
    mask_for[orig] = m;
  }

  // 3. Attention over [cache | new] in every layer.
  for (size_t li = 0; li < a.layers.size(); ++li) {
    const LayerSites& l = a.layers[li];
    auto scope = b.scope("kv_cache/layer" + std::to_string(l.index));
    for (auto& [v, uses] : sides[li]) {
      auto it = mask_for.find(v);
      if (it == mask_for.end()) continue;
      for (auto& [node, index] : uses) node->inputs[index] = it->second;
    }
    Node* mm = const_cast<Node*>(l.scores_matmul);
    Value* q = mm->inputs[0];
    Value* kt = mm->inputs[1];
    Value* scores = mm->outputs[0];
    Value* cache_scores = b.named_op("MatMul", {q, past_keys[li]}, "cache_scores");
    Value* all_scores = b.named_op("Concat", {cache_scores, scores}, "scores", {{"axis", int64_t(-1)}});
    g.replace_all_uses(scores, all_scores);
    all_scores->producer->inputs[1] = scores;

    Node* softmax = const_cast<Node*>(l.softmax);
    softmax->inputs[0] = b.named_op("Where", {c.valid, softmax->inputs[0], c.lowest}, "valid_scores");

    Node* pv = const_cast<Node*>(l.probs_matmul);
    Value* probs = pv->inputs[0];
    Value* v_new = pv->inputs[1];
    Value* cache_probs = b.named_op("Slice", {probs, b.i64s({0}), c.capacity, b.i64s({-1})}, "cache_probs");
    Value* new_probs = b.named_op(
        "Slice", {probs, c.capacity, b.i64s({std::numeric_limits<int64_t>::max()}), b.i64s({-1})}, "new_probs");
    pv->inputs[0] = new_probs;
    Value* from_cache = b.named_op("MatMul", {cache_probs, past_values[li]}, "from_cache");
    Value* out = pv->outputs[0];
    Value* sum = b.named_op("Add", {from_cache, out}, "attention");
    g.replace_all_uses(out, sum);
    sum->producer->inputs[1] = out;

    for (auto [x, name] : {std::pair{kt, present_key_name(l.index)}, std::pair{v_new, present_value_name(l.index)}}) {
      Value* present = g.add_value(name, x->type);
      b.create("Identity", {x}, {present}, {}, b.scoped(name));
      g.outputs.push_back(present);
    }
  }

  // 4. Positions made in the graph start at past_length.
  {
    auto scope = b.scope("kv_cache/positions");
    for (Node* r : ranges) {
      Value* pos = r->outputs[0];
      Value* shifted = b.named_op("Add", {pos, b.cast(c.past_scalar, pos->type.dtype)}, "shifted");
      g.replace_all_uses(pos, shifted);
      shifted->producer->inputs[0] = pos;
    }
  }

  // 5. Order, dead code (the old masks), unread inputs, types.
  g.toposort();
  PassManager(PassInstrumentation{}).run(*make_dead_code_elimination_pass(), g);
  std::set<const Value*> read;
  for (auto& n : g.nodes())
    for (const Value* v : n->inputs) read.insert(v);
  g.inputs.erase(std::remove_if(g.inputs.begin(), g.inputs.end(),
                                [&](const Value* v) { return !read.count(v) && v->name != "input_ids"; }),
                 g.inputs.end());
  std::vector<const Value*> new_inputs;
  for (const Value* v : g.inputs)
    if (v->name == kPastLengthInput || v->name.rfind("past.", 0) == 0) new_inputs.push_back(v);
  pass_util::reinfer_types_from(g, new_inputs);
  g.metadata["codebook.kv_cache.context"] = std::to_string(context_);
  return true;
}

}  // namespace cb
