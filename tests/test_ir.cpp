#include <gtest/gtest.h>

#include "ir/dtype.h"
#include "ir/graph.h"

using namespace cb;

TEST(DType, HalfRoundTrip) {
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.1f}) {
    float back = half_to_float(float_to_half(f));
    EXPECT_NEAR(back, f, std::abs(f) * 1e-3 + 1e-8) << f;
  }
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // overflows to inf
}

TEST(DType, BFloat16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_FLOAT_EQ(bf16_to_float(float_to_bf16(3.140625f)), 3.140625f);
}

TEST(Graph, ToposortOrdersProducersFirst) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, Shape::of({2})});
  Value* a = g.add_value("a");
  Value* b = g.add_value("b");
  g.add_node("Neg", {a}, {b});
  g.add_node("Abs", {x}, {a});
  g.outputs.push_back(b);
  g.toposort();
  EXPECT_EQ(g.nodes()[0]->op_type, "Abs");
  EXPECT_EQ(g.nodes()[1]->op_type, "Neg");
}
