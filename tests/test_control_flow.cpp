// If and Loop: subgraphs run as nested executables and read outer values.
#include <gtest/gtest.h>

#include "backends/backend.h"
#include "runtime/executable.h"

using namespace cb;

namespace {

TEST(ControlFlow, IfPicksBranchAndReadsOuterValues) {
  auto g = std::make_shared<Graph>();
  Value* c = g->add_input("c", {DType::boolean, Shape::of({})});
  Value* x = g->add_input("x", {DType::f32, Shape::of({3})});
  Value* y = g->add_value("y");
  auto then_g = std::make_shared<Graph>();
  then_g->name = "then";
  Value* t = then_g->add_value("t");
  then_g->add_node("Neg", {x}, {t});  // x is captured from the outer graph
  then_g->outputs.push_back(t);
  auto else_g = std::make_shared<Graph>();
  else_g->name = "else";
  Value* e = else_g->add_value("e");
  else_g->add_node("Add", {x, x}, {e});
  else_g->outputs.push_back(e);
  g->add_node("If", {c}, {y}, {{"then_branch", then_g}, {"else_branch", else_g}});
  g->outputs.push_back(y);
  for (const char* backend : {"reference", "cpu"}) {
    auto ex = Executable::compile(g, *make_backend(backend));
    Tensor xv = Tensor::from_vector<float>({1.5f, -2.0f, 3.0f}, {3});
    Tensor a = ex->run({{"c", Tensor::scalar<bool>(true)}, {"x", xv}})[0];
    Tensor b = ex->run({{"c", Tensor::scalar<bool>(false)}, {"x", xv}})[0];
    EXPECT_EQ(a.data<float>()[1], 2.0f);
    EXPECT_EQ(b.data<float>()[2], 6.0f);
  }
}

TEST(ControlFlow, LoopCarriesStateAndStacksScanOutputs) {
  // acc_{i+1} = acc_i + x * i for i < M; scan output: acc after each step.
  auto g = std::make_shared<Graph>();
  Value* m = g->add_input("m", {DType::i64, Shape::of({})});
  Value* x = g->add_input("x", {DType::f32, Shape::of({2})});
  Value* acc0 = g->add_constant("acc0", Tensor::from_vector<float>({0.5f, 1.0f}, {2}));
  Value* acc = g->add_value("acc");
  Value* scan = g->add_value("scan");
  auto body = std::make_shared<Graph>();
  body->name = "body";
  Value* it = body->add_input("i", {DType::i64, Shape::of({})});
  Value* cin = body->add_input("cond_in", {DType::boolean, Shape::of({})});
  Value* a_in = body->add_input("a_in", {DType::f32, Shape::of({2})});
  Value* itf = body->add_value("itf");
  body->add_node("Cast", {it}, {itf}, {{"to", int64_t(1)}});
  Value* xi = body->add_value("xi");
  body->add_node("Mul", {x, itf}, {xi});
  Value* a_out = body->add_value("a_out");
  body->add_node("Add", {a_in, xi}, {a_out});
  Value* cout = body->add_value("cond_out");
  body->add_node("Identity", {cin}, {cout});
  Value* s_out = body->add_value("s_out");
  body->add_node("Identity", {a_out}, {s_out});
  body->outputs = {cout, a_out, s_out};
  g->add_node("Loop", {m, nullptr, acc0}, {acc, scan}, {{"body", body}});
  g->outputs = {acc, scan};
  auto ex = Executable::compile(g, *make_backend("reference"));
  Tensor xv = Tensor::from_vector<float>({2.0f, -1.0f}, {2});
  auto out = ex->run({{"m", Tensor::scalar<int64_t>(4)}, {"x", xv}});
  // sum of i for i < 4 is 6
  EXPECT_FLOAT_EQ(out[0].data<float>()[0], 0.5f + 12.0f);
  EXPECT_FLOAT_EQ(out[0].data<float>()[1], 1.0f - 6.0f);
  ASSERT_EQ(out[1].dims(), (std::vector<int64_t>{4, 2}));
  EXPECT_FLOAT_EQ(out[1].data<float>()[2 * 2 + 0], 0.5f + 2.0f * 3);  // after i = 0,1,2
  auto zero = ex->run({{"m", Tensor::scalar<int64_t>(0)}, {"x", xv}});
  EXPECT_FLOAT_EQ(zero[0].data<float>()[0], 0.5f);
  EXPECT_EQ(zero[1].dim(0), 0);
}

}  // namespace
