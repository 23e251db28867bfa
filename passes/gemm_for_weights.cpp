// Products by a weight matrix as Gemms (passes/gemm_for_weights.h).
#include "passes/gemm_for_weights.h"

#include <set>
#include <vector>

#include "ir/builder.h"
#include "ir/verifier.h"
#include "passes/canonicalize.h"

namespace cb {

namespace {

using pass_util::is_onnx_op;

bool f32_rank(const Value* v, size_t rank) {
  return v && v->type.dtype == DType::f32 && v->type.shape.rank_known && v->type.shape.rank() == rank;
}

// One product to rewrite: out = A W (+ bias), W [K, N] or, transposed, [N, K].
struct Product {
  Node* matmul = nullptr;
  Node* add = nullptr;  // the bias Add, when taken in
  Value *a = nullptr, *w = nullptr, *bias = nullptr, *out = nullptr;
  bool trans_b = false;
  int64_t K = 0, N = 0;
};

}  // namespace

int gemm_for_weights(Graph& g) {
  const auto users = g.users();
  const std::set<const Value*> external = pass_util::externally_read_values(g);
  std::vector<Product> products;
  for (auto& n : g.nodes()) {
    Node* mm = n.get();
    if (!is_onnx_op(mm, "MatMul") || mm->inputs.size() != 2 || mm->outputs.size() != 1 || !mm->outputs[0]) continue;
    Product p{mm};
    p.a = mm->input(0);
    Value* b = mm->input(1);
    const Node* t = b ? b->producer : nullptr;
    if (is_onnx_op(t, "Transpose") && t->input(0) && t->attr_ints("perm", {1, 0}) == std::vector<int64_t>{1, 0}) {
      p.w = t->input(0);
      p.trans_b = true;
    } else {
      p.w = b;
    }
    if (!p.a || !p.w || p.a->type.dtype != DType::f32 || !p.a->type.shape.rank_known || p.a->type.shape.rank() < 2 ||
        !f32_rank(p.w, 2) || !p.w->type.shape.is_static() || !p.a->type.shape.dims.back().is_static())
      continue;
    p.K = p.w->type.shape.dims[p.trans_b ? 1 : 0].value;
    p.N = p.w->type.shape.dims[p.trans_b ? 0 : 1].value;
    if (p.a->type.shape.dims.back().value != p.K) continue;
    p.out = mm->outputs[0];
    // The bias: the product's only reader adds an f32 [N] value to it.
    auto it = users.find(p.out);
    if (!external.count(p.out) && it != users.end() && it->second.size() == 1 && is_onnx_op(it->second[0], "Add")) {
      Node* add = it->second[0];
      Value* other = add->input(0) == p.out ? add->input(1) : add->input(0);
      if (add->inputs.size() == 2 && add->input(0) != add->input(1) && f32_rank(other, 1) &&
          other->type.shape.dims[0].is_static() && other->type.shape.dims[0].value == p.N && add->outputs.size() == 1 &&
          add->outputs[0]) {
        p.add = add;
        p.bias = other;
        p.out = add->outputs[0];
      }
    }
    if (p.trans_b || p.add) products.push_back(p);
  }
  std::set<const Node*> replaced;
  for (Product& p : products) {
    Node* last = p.add ? p.add : p.matmul;
    Builder b(g);
    b.set_insertion_point_before(last);
    auto scope = b.scope(p.matmul->name);
    std::vector<Value*> in = {p.a, p.w};
    if (p.bias) in.push_back(p.bias);
    Builder::Attrs attrs;
    if (p.trans_b) attrs["transB"] = int64_t(1);
    last->outputs[0] = nullptr;  // p.out is the rewrite's now
    const size_t rank = p.a->type.shape.rank();
    if (rank == 2) {
      b.create("Gemm", in, {p.out}, attrs);
    } else {
      in[0] = b.reshape(p.a, {-1, p.K});
      Value* y = b.op("Gemm", in, attrs);
      Value* lead = b.slice(b.shape_of(p.a), {0}, {int64_t(rank) - 1}, {0});
      b.create("Reshape", {y, b.concat({lead, b.i64s({p.N})}, 0)}, {p.out});
    }
    replaced.insert(p.matmul);
    if (p.add) replaced.insert(p.add);
  }
  if (!products.empty()) {
    g.remove_nodes_if([&](const Node& n) { return replaced.count(&n) != 0; });
    g.remove_unused_values();
    infer_types(g);
  }
  return int(products.size());
}

}  // namespace cb
