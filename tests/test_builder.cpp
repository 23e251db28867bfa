// The IR builder (ir/builder.h): the insertion point (end, before and after
// an anchor), node / output / constant names in scopes under each naming
// policy, explicit names, the constant helpers, immediate type inference on
// and off, omitted inputs and outputs.
#include <gtest/gtest.h>

#include "ir/builder.h"
#include "support/error.h"

namespace cb {
namespace {

std::vector<std::string> node_names(const Graph& g) {
  std::vector<std::string> names;
  for (auto& n : g.nodes()) names.push_back(n->name);
  return names;
}

TEST(Builder, NamesNodesAndOutputsInScopes) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, Shape::of({2, 3})});
  Builder b(g);
  Value* a = nullptr;
  {
    auto s = b.scope("block.0");
    a = b.add(x, x);
    EXPECT_EQ(b.scope_name(), "block.0");
    {
      auto inner = b.scope("block.0.mlp");
      b.relu(a);
    }
    EXPECT_EQ(b.scope_name(), "block.0");  // the guard restores the scope
  }
  EXPECT_EQ(b.scope_name(), "");
  std::vector<Value*> parts = b.split(a, 1, {1, 2});  // the counter runs on across scopes
  EXPECT_EQ(a->name, "block.0/Add_1");
  EXPECT_EQ(node_names(g), (std::vector<std::string>{"block.0/Add_1", "block.0.mlp/Relu_2", "Split_3"}));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0]->name, "Split_3_0");
  EXPECT_EQ(parts[1]->name, "Split_3_1");
  EXPECT_EQ(parts[1]->producer, g.nodes()[2].get());
  EXPECT_EQ(parts[1]->producer_output, 1);
  // Unnamed constants are "<scope>/const", made unique by the graph.
  b.set_scope("block.1");
  Value* c1 = b.f32(1.0f);
  Value* c2 = b.i64(2);
  EXPECT_EQ(c1->name, "block.1/const");
  EXPECT_NE(c2->name, c1->name);
  EXPECT_EQ(c2->name.rfind("block.1/const_", 0), 0u) << c2->name;
  EXPECT_EQ(b.created_nodes().size(), 3u);
  EXPECT_EQ(b.created_nodes()[1]->op_type, "Relu");
}

TEST(Builder, NamingPolicies) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, Shape::of({4})});
  BuilderOptions o;
  o.naming.output_suffix = "_out";
  o.naming.suffix_single_output = true;
  o.naming.numbered_constants = true;
  Builder b(g, o);
  b.set_scope("site");
  Value* y = b.neg(x);
  Value* c = b.f32(0.5f);  // numbered with the nodes
  std::vector<Value*> two = b.op_n("TopK", {x, b.i64s({2})}, 2);
  EXPECT_EQ(y->name, "site/Neg_1_out0");
  EXPECT_EQ(g.nodes()[0]->name, "site/Neg_1");
  EXPECT_EQ(c->name, "site/const_2");
  EXPECT_EQ(two[0]->name, "site/TopK_4_out0");  // the i64s constant took 3
  EXPECT_EQ(two[1]->name, "site/TopK_4_out1");
  // Explicit names: node and output "<scope>/<name>", unique among values.
  b.set_scope("step");
  Value* n1 = b.named_op("Identity", {x}, "copy");
  Value* n2 = b.mul(x, x, "copy");
  Value* k = b.i64s({1, 2}, "bounds");
  EXPECT_EQ(n1->name, "step/copy");
  EXPECT_EQ(n1->producer->name, "step/copy");
  EXPECT_NE(n2->name, "step/copy");
  EXPECT_EQ(n2->name.rfind("step/copy_", 0), 0u) << n2->name;
  EXPECT_EQ(n2->producer->name, n2->name);
  EXPECT_EQ(n2->producer->op_type, "Mul");
  EXPECT_EQ(k->name, "step/bounds");
  // create: given outputs, a given or a numbered node name, a domain.
  Value* out = g.add_value("result");
  Node* n = b.create("Custom", {x}, {out}, {{"k", int64_t(3)}}, "", "my.domain");
  EXPECT_EQ(n->name, "step/Custom_5");
  EXPECT_EQ(n->domain, "my.domain");
  EXPECT_EQ(n->attr_int("k", 0), 3);
  EXPECT_EQ(out->producer, n);
  EXPECT_EQ(b.create("Neg", {x}, {g.add_value("z")}, {}, "exact")->name, "exact");
}

TEST(Builder, InsertionPointBeforeAndAfterAnAnchor) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, Shape::of({4})});
  Builder b(g);
  Value* v1 = b.neg(x);
  Value* v2 = b.relu(v1);
  b.op("Sqrt", {v2});
  Node* first = g.nodes()[0].get();
  Node* second = g.nodes()[1].get();
  Node* third = g.nodes()[2].get();

  b.set_insertion_point_before(second);  // each new node just before the anchor
  b.op("Exp", {v1});
  b.op("Log", {v1});
  EXPECT_EQ(node_names(g), (std::vector<std::string>{"Neg_1", "Exp_4", "Log_5", "Relu_2", "Sqrt_3"}));

  b.set_insertion_point_after(first);  // each new node after the previous one
  b.op("Sin", {v1});
  b.op("Cos", {v1});
  EXPECT_EQ(node_names(g), (std::vector<std::string>{"Neg_1", "Sin_6", "Cos_7", "Exp_4", "Log_5", "Relu_2", "Sqrt_3"}));

  b.set_insertion_point_after(third);  // after the last node: appended
  b.op("Tanh", {v2});
  b.set_insertion_point_to_end();
  b.op("Abs", {v2});
  EXPECT_EQ(node_names(g).back(), "Abs_9");
  EXPECT_EQ(node_names(g)[g.num_nodes() - 2], "Tanh_8");
  EXPECT_EQ(first->name, "Neg_1");
  EXPECT_EQ(b.created_nodes().size(), 9u);
}

TEST(Builder, Constants) {
  Graph g;
  Builder b(g);
  Value* f = b.f32(2.5f);
  Value* i = b.i64(-3);
  Value* is = b.i64s({4, 5, 6});
  Value* filled = b.filled(DType::f16, {2, 2}, 1.5);
  Value* s = b.scalar(DType::i32, 7);
  Value* t = b.constant(Tensor::from_vector<float>({1, 2}, {2, 1}), "table");
  EXPECT_EQ(f->type.str(), "f32[]");
  EXPECT_EQ(f->constant->get_double(0), 2.5);
  EXPECT_EQ(i->type.str(), "i64[]");
  EXPECT_EQ(i->constant->get_double(0), -3);
  EXPECT_EQ(is->type.str(), "i64[3]");
  EXPECT_EQ(is->constant->to_int_vector(), (std::vector<int64_t>{4, 5, 6}));
  EXPECT_EQ(filled->type.str(), "f16[2,2]");
  for (int64_t k = 0; k < 4; ++k) EXPECT_EQ(filled->constant->get_double(k), 1.5);
  EXPECT_EQ(s->type.str(), "i32[]");
  EXPECT_EQ(s->constant->get_double(0), 7);
  EXPECT_EQ(t->name, "table");
  EXPECT_EQ(t->type.str(), "f32[2,1]");
  // Parameters keep their exact name; a taken one is refused.
  Value* w = b.parameter("h.0.mlp.weight", Tensor::zeros(DType::f32, {3}));
  EXPECT_EQ(w->name, "h.0.mlp.weight");
  EXPECT_TRUE(w->is_constant());
  EXPECT_THROW(b.parameter("h.0.mlp.weight", Tensor::zeros(DType::f32, {3})), Error);
  EXPECT_EQ(g.num_nodes(), 0u);
}

TEST(Builder, ImmediateTypeInferenceIsAnOption) {
  for (bool infer : {false, true}) {
    Graph g;
    Value* x = g.add_input("x", {DType::f32, Shape::of({2, 3})});
    Value* bias = g.add_input("bias", {DType::f32, Shape::of({3})});
    BuilderOptions o;
    o.infer_types = infer;
    Builder b(g, o);
    Value* y = b.add(x, bias);
    Value* r = b.reshape(y, {3, 2});
    if (infer) {
      EXPECT_EQ(y->type.str(), "f32[2,3]");
      EXPECT_EQ(r->type.str(), "f32[3,2]");
    } else {
      EXPECT_EQ(y->type.dtype, DType::undefined);
      EXPECT_FALSE(y->type.shape.rank_known);
    }
  }
}

TEST(Builder, OmittedInputsAndOutputs) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, Shape::of({2, 3})});
  Value* s = g.add_input("s", {DType::f32, Shape::of({3})});
  Builder strict(g);
  const size_t values = g.values().size();
  EXPECT_THROW(strict.op("LayerNormalization", {x, s, nullptr}), Error);
  EXPECT_EQ(g.values().size(), values);  // nothing half-made
  EXPECT_EQ(g.num_nodes(), 0u);

  BuilderOptions o;
  o.allow_omitted_inputs = true;
  o.infer_types = true;
  Builder b(g, o);
  // Output 1 unused (null), output 2 used; an unused last output is dropped from the node.
  std::vector<Value*> outs = b.op_n("LayerNormalization", {x, s, nullptr}, 3, {}, "", {true, false, true});
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_NE(outs[0], nullptr);
  EXPECT_EQ(outs[1], nullptr);
  EXPECT_NE(outs[2], nullptr);
  EXPECT_EQ(outs[0]->producer->outputs.size(), 3u);
  EXPECT_EQ(outs[0]->type.str(), "f32[2,3]");
  std::vector<Value*> first_only = b.op_n("LayerNormalization", {x, s}, 3, {}, "", {true, false, false});
  EXPECT_EQ(first_only[0]->producer->outputs.size(), 1u);
  // declared_like: the output starts with that value's type.
  Value* shape = b.op("Shape", {x});
  BuilderOptions plain;
  Builder lazy(g, plain);
  Value* z = lazy.op_n("ConstantOfShape", {shape}, 1, {}, "", {}, {x})[0];
  EXPECT_EQ(z->type.str(), "f32[2,3]");
}

}  // namespace
}  // namespace cb
