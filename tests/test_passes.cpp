// Tests of the canonicalisation passes, written as before/after text: parse
// "before", run one pass (or the whole pipeline), and compare the printed
// result with "after" (parsed and printed too, so spacing does not matter).
// The last tests run graphs before and after canonicalize on random inputs at
// two (batch, seq) sizes and require the same outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/backend.h"
#include "ir/parser.h"
#include "ir/printer.h"
#include "ir/verifier.h"
#include "passes/canonicalize.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::random_tensor;

namespace {

PrintOptions no_names() {
  PrintOptions o;
  o.node_names = false;
  return o;
}

std::string normalise(const std::string& text) { return print_graph(*parse_graph(text), no_names()); }

// Runs `pass` on `before`; returns the printed result and whether it changed.
// `verify`: check the result with verify_graph (every op must be registered).
std::pair<std::string, bool> run_pass(const std::string& before, std::unique_ptr<Pass> pass, bool verify = true) {
  auto g = parse_graph(before);
  bool changed = pass->run(*g);
  if (verify) verify_graph(*g);
  return {print_graph(*g, no_names()), changed};
}

// The text of a graph with every type the schemas can infer filled in.
// (A few small test graphs are only shape-plausible; they compare as written.)
std::string typed(std::unique_ptr<Graph> g) {
  try {
    infer_types(*g);
  } catch (const Error&) {
  }
  return print_graph(*g, no_names());
}

// Compares modulo inferable types: passes may (and shape folding does) fill
// in types along the way; the expected texts only spell out the types that
// matter.
void expect_pass(const std::string& before, std::unique_ptr<Pass> pass, const std::string& after) {
  auto [got, changed] = run_pass(before, std::move(pass));
  EXPECT_EQ(typed(parse_graph(got)), typed(parse_graph(after)));
  EXPECT_EQ(changed, normalise(before) != normalise(after));
}

std::string canonicalized(const std::string& before) {
  auto g = parse_graph(before);
  canonicalize(*g);
  verify_graph(*g);
  return print_graph(*g, no_names());
}

}  // namespace

// ------------------------------------------------------------ constant folding

TEST(ConstantFolding, FoldsAConstantChainIncludingAWeightTranspose) {
  expect_pass(R"(
graph main(%x: f32[n,2]) -> (%y) {
  %w: f32[2,3] = const {1, 2, 3, 4, 5, 6}
  %b: f32[2] = const {0.5, -1}
  %wt = Transpose(%w) {perm = [1, 0]}
  %s = Add(%wt, %b)
  %y = MatMul(%x, %s)
})",
              make_constant_folding_pass(), R"(
graph main(%x: f32[n,2]) -> (%y) {
  %w: f32[2,3] = const {1, 2, 3, 4, 5, 6}
  %b: f32[2] = const {0.5, -1}
  %wt: f32[3,2] = const {1, 4, 2, 5, 3, 6}
  %s: f32[3,2] = const {1.5, 3, 2.5, 4, 3.5, 5}
  %y = MatMul(%x, %s)
})");
}

TEST(ConstantFolding, FoldsIntegerShapeArithmeticAndCasts) {
  expect_pass(R"(
graph main(%x: f32[?]) -> (%r) {
  %a: i64[2] = const {6, -3}
  %b: i64[] = const {3}
  %q = Div(%a, %b)
  %c = Cast(%q) {to = 1}
  %r = Mul(%x, %c)
})",
              make_constant_folding_pass(), R"(
graph main(%x: f32[?]) -> (%r) {
  %a: i64[2] = const {6, -3}
  %b: i64[] = const {3}
  %q: i64[2] = const {2, -1}
  %c: f32[2] = const {2, -1}
  %r = Mul(%x, %c)
})");
}

TEST(ConstantFolding, SkipsBlowUpsMissingKernelsRandomOpsAndOverridableInputs) {
  // Expand to 4 MiB from 24 bytes of inputs would bloat the model; an op
  // without a kernel cannot be folded; a graph input's default may be
  // overridden at run time; training-mode Dropout is random.
  const char* text = R"(
graph main(%x: f32[2] = const {1, 2}) -> (%big, %custom, %y, %d) {
  %one: f32[1] = const {1.5}
  %shape: i64[2] = const {1024, 1024}
  %big = Expand(%one, %shape)
  %custom = test.NoKernel(%one)
  %y = Neg(%x)
  %train: bool[] = const {true}
  %d, %mask = Dropout(%one, _, %train)
})";
  auto [got, changed] = run_pass(text, make_constant_folding_pass(), /*verify=*/false);
  EXPECT_FALSE(changed);
  EXPECT_EQ(got, normalise(text));
}

TEST(ConstantFolding, FoldsLargeTransposesThatDoNotGrow) {
  Graph g;
  std::vector<float> w(512 * 1024);
  for (size_t i = 0; i < w.size(); ++i) w[i] = float(i % 977) * 0.5f;
  Value* c = g.add_constant("w", Tensor::from_vector<float>(w, {512, 1024}));
  Value* t = g.add_value("t");
  g.add_node("Transpose", {c}, {t}, {{"perm", std::vector<int64_t>{1, 0}}});
  g.outputs = {t};
  ASSERT_TRUE(make_constant_folding_pass()->run(g));
  EXPECT_EQ(g.num_nodes(), 0u);
  ASSERT_TRUE(t->constant);
  EXPECT_EQ(t->constant->dims(), (std::vector<int64_t>{1024, 512}));
  EXPECT_EQ(t->constant->data<float>()[3 * 512 + 7], w[7 * 1024 + 3]);
}

// ---------------------------------------------------------------- shape folding

namespace {
// GPT-2's split-heads view as exported by torch: the target shape is built
// from the input's own (symbolic) dims.
const char* kSplitHeads = R"(
graph main(%x: f32[batch,seq,768]) -> (%y) {
  %c0: i64[] = const {0}
  %c1: i64[] = const {1}
  %axes: i64[1] = const {0}
  %heads: i64[1] = const {12}
  %hd: i64[1] = const {64}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %s = Gather(%shape, %c1) {axis = 0}
  %bu = Unsqueeze(%b, %axes)
  %su = Unsqueeze(%s, %axes)
  %target = Concat(%bu, %su, %heads, %hd) {axis = 0}
  %y = Reshape(%x, %target)
})";
}  // namespace

TEST(ShapeFolding, GPT2SplitHeadsBecomesAConstantReshape) {
  expect_pass(kSplitHeads, make_shape_folding_pass(), R"(
graph main(%x: f32[batch,seq,768]) -> (%y) {
  %c0: i64[] = const {0}
  %c1: i64[] = const {1}
  %axes: i64[1] = const {0}
  %heads: i64[1] = const {12}
  %hd: i64[1] = const {64}
  %y_shape: i64[4] = const {0, 0, 12, 64}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %s = Gather(%shape, %c1) {axis = 0}
  %bu = Unsqueeze(%b, %axes)
  %su = Unsqueeze(%s, %axes)
  %target = Concat(%bu, %su, %heads, %hd) {axis = 0}
  %y: f32[batch,seq,12,64] = Reshape(%x, %y_shape)
})");
  EXPECT_EQ(canonicalized(kSplitHeads), normalise(R"(
graph main(%x: f32[batch,seq,768]) -> (%y) {
  %y_shape: i64[4] = const {0, 0, 12, 64}
  %y: f32[batch,seq,12,64] = Reshape(%x, %y_shape)
})"));
}

TEST(ShapeFolding, StaticShapesBecomeConstants) {
  expect_pass(R"(
graph main(%x: f32[2,batch,5]) -> (%n, %tail) {
  %c0: i64[1] = const {0}
  %c1: i64[1] = const {1}
  %shape = Shape(%x)
  %first = Slice(%shape, %c0, %c1)
  %n = Cast(%first) {to = 6}
  %tail = Shape(%x) {start = -1}
})",
              make_shape_folding_pass(), R"(
graph main(%x: f32[2,batch,5]) -> (%n, %tail) {
  %c0: i64[1] = const {0}
  %c1: i64[1] = const {1}
  %first: i64[1] = const {2}
  %n: i32[1] = const {2}
  %tail: i64[1] = const {5}
  %shape = Shape(%x)
})");
}

TEST(ShapeFolding, MergeHeadsWithSliceOfShape) {
  // x.size()[:-2] + (768,) on [batch,seq,12,64]: [batch,seq,768] -> [0,0,768].
  expect_pass(R"(
graph main(%x: f32[batch,seq,12,64]) -> (%y) {
  %s0: i64[1] = const {0}
  %s1: i64[1] = const {-2}
  %hidden: i64[1] = const {768}
  %shape = Shape(%x)
  %lead = Slice(%shape, %s0, %s1)
  %target = Concat(%lead, %hidden) {axis = 0}
  %y = Reshape(%x, %target)
})",
              make_shape_folding_pass(), R"(
graph main(%x: f32[batch,seq,12,64]) -> (%y) {
  %s0: i64[1] = const {0}
  %s1: i64[1] = const {-2}
  %hidden: i64[1] = const {768}
  %y_shape: i64[3] = const {0, 0, 768}
  %shape = Shape(%x)
  %lead = Slice(%shape, %s0, %s1)
  %target = Concat(%lead, %hidden) {axis = 0}
  %y: f32[batch,seq,768] = Reshape(%x, %y_shape)
})");
}

TEST(ShapeFolding, MinusOneOnlyWhenTheElementCountProvesIt) {
  // [batch,12,seq,64] -> [batch,seq,768]: seq is not x's dim 1, but the
  // element count proves it is the rest, so it becomes -1.
  const char* proven = R"(
graph main(%x: f32[batch,12,seq,64]) -> (%y) {
  %c0: i64[1] = const {0}
  %c2: i64[1] = const {2}
  %hidden: i64[1] = const {768}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %s = Gather(%shape, %c2) {axis = 0}
  %target = Concat(%b, %s, %hidden) {axis = 0}
  %y: f32[batch,seq,768] = Reshape(%x, %target)
})";
  EXPECT_EQ(canonicalized(proven), normalise(R"(
graph main(%x: f32[batch,12,seq,64]) -> (%y) {
  %y_shape: i64[3] = const {0, -1, 768}
  %y: f32[batch,seq,768] = Reshape(%x, %y_shape)
})"));
  // Two entries that are not x's dims at their positions: left alone.
  const char* two_unknown = R"(
graph main(%x: f32[batch,12,seq,64]) -> (%y) {
  %c0: i64[1] = const {0}
  %c2: i64[1] = const {2}
  %hidden: i64[1] = const {768}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %s = Gather(%shape, %c2) {axis = 0}
  %target = Concat(%s, %hidden, %b) {axis = 0}
  %y = Reshape(%x, %target)
})";
  // (The output's type is still refined from the shape's known content.)
  expect_pass(two_unknown, make_shape_folding_pass(), R"(
graph main(%x: f32[batch,12,seq,64]) -> (%y) {
  %c0: i64[1] = const {0}
  %c2: i64[1] = const {2}
  %hidden: i64[1] = const {768}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %s = Gather(%shape, %c2) {axis = 0}
  %target = Concat(%s, %hidden, %b) {axis = 0}
  %y: f32[seq,768,batch] = Reshape(%x, %target)
})");
  // One unknown entry that the element count does not prove (another input's dim).
  const char* unproven = R"(
graph main(%x: f32[batch,seq,768], %z: f32[other]) -> (%y) {
  %c0: i64[1] = const {0}
  %half: i64[1] = const {384}
  %bs = Shape(%x) {end = 1}
  %o = Shape(%z)
  %target = Concat(%bs, %half, %o) {axis = 0}
  %y = Reshape(%x, %target)
})";
  expect_pass(unproven, make_shape_folding_pass(), R"(
graph main(%x: f32[batch,seq,768], %z: f32[other]) -> (%y) {
  %c0: i64[1] = const {0}
  %half: i64[1] = const {384}
  %bs = Shape(%x) {end = 1}
  %o = Shape(%z)
  %target = Concat(%bs, %half, %o) {axis = 0}
  %y: f32[batch,384,other] = Reshape(%x, %target)
})");
}

TEST(ShapeFolding, ReshapeToOwnShapeBecomesIdentity) {
  // [-1, 0] on a 2-D input, and x's own Shape, keep the shape.
  expect_pass(R"(
graph main(%x: i64[batch,seq], %z: f32[batch,seq,8]) -> (%y, %w) {
  %flat: i64[2] = const {-1, 0}
  %y = Reshape(%x, %flat)
  %s = Shape(%z)
  %w0 = Reshape(%z, %s)
  %w = Neg(%w0)
})",
              make_shape_folding_pass(), R"(
graph main(%x: i64[batch,seq], %z: f32[batch,seq,8]) -> (%y, %w) {
  %flat: i64[2] = const {-1, 0}
  %y: i64[batch,seq] = Identity(%x)
  %s = Shape(%z)
  %w0: f32[batch,seq,8] = Identity(%z)
  %w = Neg(%w0)
})");
}

TEST(ShapeFolding, ExpandToOwnShapeBecomesIdentity) {
  expect_pass(R"(
graph main(%x: f32[batch,1,seq]) -> (%y, %z) {
  %shape = Shape(%x)
  %y = Expand(%x, %shape)
  %ones: i64[2] = const {1, 1}
  %z = Expand(%x, %ones)
})",
              make_shape_folding_pass(), R"(
graph main(%x: f32[batch,1,seq]) -> (%y, %z) {
  %ones: i64[2] = const {1, 1}
  %shape = Shape(%x)
  %y: f32[batch,1,seq] = Identity(%x)
  %z: f32[batch,1,seq] = Expand(%x, %ones)
})");
  // A new leading symbolic dim cannot be written as a constant: left alone.
  expect_pass(R"(
graph main(%x: f32[batch,1,seq]) -> (%y) {
  %c2: i64[1] = const {2}
  %shape = Shape(%x)
  %s = Gather(%shape, %c2) {axis = 0}
  %target = Concat(%shape, %s) {axis = 0}
  %y = Expand(%x, %target)
})",
              make_shape_folding_pass(), R"(
graph main(%x: f32[batch,1,seq]) -> (%y) {
  %c2: i64[1] = const {2}
  %shape = Shape(%x)
  %s = Gather(%shape, %c2) {axis = 0}
  %target = Concat(%shape, %s) {axis = 0}
  %y: f32[batch,batch,seq,seq] = Expand(%x, %target)
})");
}

TEST(ShapeFolding, ExpandKeepsOnesWhereTheInputDimIsKept) {
  expect_pass(R"(
graph main(%x: f32[batch,1,seq]) -> (%y) {
  %c0: i64[1] = const {0}
  %c2: i64[1] = const {2}
  %four: i64[1] = const {4}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %s = Gather(%shape, %c2) {axis = 0}
  %target = Concat(%b, %four, %s) {axis = 0}
  %y = Expand(%x, %target)
})",
              make_shape_folding_pass(), R"(
graph main(%x: f32[batch,1,seq]) -> (%y) {
  %c0: i64[1] = const {0}
  %c2: i64[1] = const {2}
  %four: i64[1] = const {4}
  %y_shape: i64[3] = const {1, 4, 1}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %s = Gather(%shape, %c2) {axis = 0}
  %target = Concat(%b, %four, %s) {axis = 0}
  %y: f32[batch,4,seq] = Expand(%x, %y_shape)
})");
}

TEST(ShapeFolding, TorchExpandPatternWithWhereAndEqual) {
  // torch's expand(-1, -1, seq): Where(Equal(target, -1), ones, target).
  const char* text = R"(
graph main(%x: f32[batch,1,seq]) -> (%y) {
  %c2: i64[1] = const {2}
  %minus1: i64[2] = const {-1, -1}
  %shape = Shape(%x)
  %s = Gather(%shape, %c2) {axis = 0}
  %target = Concat(%minus1, %s) {axis = 0}
  %neg: i64[] = const {-1}
  %is_neg = Equal(%target, %neg)
  %ones: i64[3] = const {1, 1, 1}
  %fixed = Where(%is_neg, %ones, %target)
  %y = Expand(%x, %fixed)
})";
  // The expansion is provably a no-op; the Identity that replaces it stays
  // because it passes a graph input to a graph output under another name.
  EXPECT_EQ(canonicalized(text), normalise(R"(
graph main(%x: f32[batch,1,seq]) -> (%y) {
  %y: f32[batch,1,seq] = Identity(%x)
})"));
}

TEST(ShapeFolding, SliceThatKeepsEverythingBecomesIdentity) {
  // GPT-2's mask[:, :, :, :key_length] where key_length is the mask's own dim.
  const char* text = R"(
graph main(%m: bool[batch,1,seq,seq], %q: f32[batch,4,seq,16]) -> (%y, %z) {
  %c2: i64[] = const {2}
  %ax: i64[1] = const {0}
  %zero: i64[1] = const {0}
  %one: i64[1] = const {1}
  %three: i64[1] = const {3}
  %s = Shape(%q)
  %n = Gather(%s, %c2) {axis = 0}
  %end = Unsqueeze(%n, %ax)
  %y = Slice(%m, %zero, %end, %three, %one)
  %z = Slice(%m, %one, %end, %three, %one)
})";
  expect_pass(text, make_shape_folding_pass(), R"(
graph main(%m: bool[batch,1,seq,seq], %q: f32[batch,4,seq,16]) -> (%y, %z) {
  %c2: i64[] = const {2}
  %ax: i64[1] = const {0}
  %zero: i64[1] = const {0}
  %one: i64[1] = const {1}
  %three: i64[1] = const {3}
  %s = Shape(%q)
  %n = Gather(%s, %c2) {axis = 0}
  %end = Unsqueeze(%n, %ax)
  %y = Identity(%m)
  %z = Slice(%m, %one, %end, %three, %one)
})");
}

TEST(ShapeFolding, RefinesTypesOfRangeAndConstantOfShape) {
  // Their schemas only see constant inputs; the pass knows the symbolic content.
  expect_pass(R"(
graph main(%x: f32[batch,seq]) -> (%r, %z, %d) {
  %c0: i64[] = const {0}
  %c1: i64[] = const {1}
  %s = Shape(%x)
  %n = Gather(%s, %c1) {axis = 0}
  %r = Range(%c0, %n, %c1)
  %z = ConstantOfShape(%s) {value = f16[1] {0.5}}
  %d = Sub(%n, %n)
})",
              make_shape_folding_pass(), R"(
graph main(%x: f32[batch,seq]) -> (%r, %z, %d) {
  %c0: i64[] = const {0}
  %c1: i64[] = const {1}
  %d: i64[] = const {0}
  %s = Shape(%x)
  %n = Gather(%s, %c1) {axis = 0}
  %r: i64[seq] = Range(%c0, %n, %c1)
  %z: f16[batch,seq] = ConstantOfShape(%s) {value = f16[1] {0.5}}
})");
}

// ------------------------------------------------------------------------ DCE

TEST(DeadCodeElimination, RemovesUnreachableNodesAndUnusedValues) {
  expect_pass(R"(
graph main(%x: f32[4], %unused_input: f32[4]) -> (%y) {
  %c: f32[4] = const {1, 2, 3, 4}
  %dead_c: f32[1] = const {9}
  %a = Add(%x, %c)
  %dead1 = Mul(%a, %dead_c)
  %dead2 = Relu(%dead1)
  %y = Neg(%a)
})",
              make_dead_code_elimination_pass(), R"(
graph main(%x: f32[4], %unused_input: f32[4]) -> (%y) {
  %c: f32[4] = const {1, 2, 3, 4}
  %a = Add(%x, %c)
  %y = Neg(%a)
})");
}

TEST(DeadCodeElimination, KeepsValuesReadBySubgraphs) {
  const char* text = R"(
graph main(%x: f32[4], %n: i64[]) -> (%out) {
  %w: f32[4] = const {1, 2, 3, 4}
  %captured = Neg(%w)
  %out = Loop(%n) {body = graph body(%i: i64[]) -> (%r) {
    %r = Add(%x, %captured)
  }}
})";
  auto g = parse_graph(text);  // (Loop has no schema yet: no verify_graph here)
  EXPECT_FALSE(make_dead_code_elimination_pass()->run(*g));
  EXPECT_EQ(print_graph(*g, no_names()), normalise(text));
}

// ------------------------------------------------------------------------ CSE

TEST(CommonSubexpressionElimination, MergesIdenticalMatMulsAndTheirUsers) {
  expect_pass(R"(
graph main(%x: f32[n,4], %w: f32[4,4]) -> (%out) {
  %b1: f32[2] = const {0.5, 1}
  %b2: f32[2] = const {0.5, 1}
  %m1 = MatMul(%x, %w)
  %m2 = MatMul(%x, %w)
  %r1 = Relu(%m1)
  %r2 = Relu(%m2)
  %t1 = Transpose(%r1) {perm = [1, 0]}
  %t2 = Transpose(%r2) {perm = [0, 1]}
  %a1 = Add(%b1, %b1)
  %a2 = Add(%b2, %b2)
  %s = Sum(%t1, %t2, %a1, %a2)
  %out = Identity(%s)
})",
              make_common_subexpression_elimination_pass(), R"(
graph main(%x: f32[n,4], %w: f32[4,4]) -> (%out) {
  %b1: f32[2] = const {0.5, 1}
  %b2: f32[2] = const {0.5, 1}
  %m1 = MatMul(%x, %w)
  %r1 = Relu(%m1)
  %t1 = Transpose(%r1) {perm = [1, 0]}
  %t2 = Transpose(%r1) {perm = [0, 1]}
  %a1 = Add(%b1, %b1)
  %a2 = Add(%b2, %b2)
  %s = Sum(%t1, %t2, %a1, %a2)
  %out = Identity(%s)
})");
}

TEST(CommonSubexpressionElimination, KeepsGraphOutputNamesAndSkipsRandomOps) {
  // Both duplicates are graph outputs: the second keeps its name through an
  // Identity, which the pipeline then folds into the producer.
  const char* text = R"(
graph main(%x: f32[3]) -> (%y1, %y2, %r1, %r2) {
  %y1 = Relu(%x)
  %y2 = Relu(%x)
  %train: bool[] = const {true}
  %r1, %m1 = Dropout(%x, _, %train)
  %r2, %m2 = Dropout(%x, _, %train)
})";
  expect_pass(text, make_common_subexpression_elimination_pass(), R"(
graph main(%x: f32[3]) -> (%y1, %y2, %r1, %r2) {
  %train: bool[] = const {true}
  %y1 = Relu(%x)
  %y2 = Identity(%y1)
  %r1, %m1 = Dropout(%x, _, %train)
  %r2, %m2 = Dropout(%x, _, %train)
})");
}

TEST(CommonSubexpressionElimination, NeverMergesNodesWithSubgraphs) {
  const char* text = R"(
graph main(%n: i64[]) -> (%a, %b) {
  %a = Loop(%n) {body = graph body(%i: i64[]) -> (%i) {
  }}
  %b = Loop(%n) {body = graph body(%i: i64[]) -> (%i) {
  }}
})";
  auto [got, changed] = run_pass(text, make_common_subexpression_elimination_pass(), /*verify=*/false);
  EXPECT_FALSE(changed);
  EXPECT_EQ(got, normalise(text));
}

// --------------------------------------------------------- Identity elimination

TEST(IdentityElimination, RewiresUsesButKeepsInterfaceNames) {
  expect_pass(R"(
graph main(%x: f32[3]) -> (%passthrough, %y, %k) {
  %c: f32[1] = const {2}
  %passthrough = Identity(%x)
  %i1 = Identity(%x)
  %a = Mul(%i1, %c)
  %y = Identity(%a)
  %k = Identity(%c)
})",
              make_identity_elimination_pass(), R"(
graph main(%x: f32[3]) -> (%passthrough, %y, %k) {
  %c: f32[1] = const {2}
  %k: f32[1] = const {2}
  %passthrough = Identity(%x)
  %y = Mul(%x, %c)
})");
}

// ---------------------------------------------------------------- the pipeline

TEST(Canonicalize, RunsToAFixedPoint) {
  // Folding turns both weight transposes into equal constants, which CSE
  // keeps apart (float tensors may be trainable parameters); shape folding
  // gives the Reshape
  // a constant shape and DCE drops the chain; the Identity to the output is
  // folded into the Add.
  const char* text = R"(
graph main(%x: f32[batch,8]) -> (%y) {
  %w: f32[2,4] = const {1, 2, 3, 4, 5, 6, 7, 8}
  %wt1 = Transpose(%w) {perm = [1, 0]}
  %wt2 = Transpose(%w) {perm = [1, 0]}
  %c0: i64[1] = const {0}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %rest: i64[2] = const {2, 4}
  %target = Concat(%b, %rest) {axis = 0}
  %r = Reshape(%x, %target)
  %p1 = MatMul(%r, %wt1)
  %p2 = MatMul(%r, %wt2)
  %sum = Add(%p1, %p2)
  %y = Identity(%sum)
})";
  EXPECT_EQ(canonicalized(text), normalise(R"(
graph main(%x: f32[batch,8]) -> (%y) {
  %wt1: f32[4,2] = const {1, 5, 2, 6, 3, 7, 4, 8}
  %wt2: f32[4,2] = const {1, 5, 2, 6, 3, 7, 4, 8}
  %r_shape: i64[3] = const {0, 2, 4}
  %r: f32[batch,2,4] = Reshape(%x, %r_shape)
  %p1: f32[batch,2,2] = MatMul(%r, %wt1)
  %p2: f32[batch,2,2] = MatMul(%r, %wt2)
  %y: f32[batch,2,2] = Add(%p1, %p2)
})"));
}

// --------------------------------------------------- run equivalence on random inputs

namespace {

// A GPT-2-like attention block as torch exports it: shape chains around the
// head split/merge, a transposed weight, a causal mask built from shapes.
const char* kAttentionBlock = R"(
graph main(%x: f32[batch,seq,8]) -> (%out) {
  %w_qkv: f32[24,8] = const {)";

std::string attention_block_text() {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  auto values = [&](int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += (i ? ", " : "") + format_float(u(rng), true);
    return s;
  };
  std::string t = kAttentionBlock;
  t += values(24 * 8) + "}\n";
  t += "  %w_out: f32[8,8] = const {" + values(64) + "}\n";
  t += "  %bias: f32[8] = const {" + values(8) + "}\n";
  t += R"(
  %c0: i64[] = const {0}
  %c1: i64[] = const {1}
  %ax0: i64[1] = const {0}
  %heads: i64[1] = const {2}
  %hd: i64[1] = const {4}
  %split: i64[3] = const {8, 8, 8}
  %scale: f32[] = const {0.5}
  %wt = Transpose(%w_qkv) {perm = [1, 0]}
  %qkv = MatMul(%x, %wt)
  %q, %k, %v = Split(%qkv, %split) {axis = 2}
  %shape = Shape(%x)
  %b = Gather(%shape, %c0) {axis = 0}
  %s = Gather(%shape, %c1) {axis = 0}
  %bu = Unsqueeze(%b, %ax0)
  %su = Unsqueeze(%s, %ax0)
  %hshape = Concat(%bu, %su, %heads, %hd) {axis = 0}
  %q4 = Reshape(%q, %hshape)
  %k4 = Reshape(%k, %hshape)
  %v4 = Reshape(%v, %hshape)
  %qt = Transpose(%q4) {perm = [0, 2, 1, 3]}
  %kt = Transpose(%k4) {perm = [0, 2, 3, 1]}
  %vt = Transpose(%v4) {perm = [0, 2, 1, 3]}
  %scores = MatMul(%qt, %kt)
  %scaled = Mul(%scores, %scale)
  %probs = Softmax(%scaled) {axis = -1}
  %ctx = MatMul(%probs, %vt)
  %ctx_t = Transpose(%ctx) {perm = [0, 2, 1, 3]}
  %cshape = Shape(%ctx_t)
  %s0: i64[1] = const {0}
  %s2: i64[1] = const {-2}
  %lead = Slice(%cshape, %s0, %s2)
  %hidden: i64[1] = const {8}
  %mshape = Concat(%lead, %hidden) {axis = 0}
  %merged = Reshape(%ctx_t, %mshape)
  %proj = MatMul(%merged, %w_out)
  %out = Add(%proj, %bias)
}
)";
  return t;
}

}  // namespace

// Compiles `text` before and after canonicalize and runs both on the same
// random x: f32[batch,seq,features] at two sizes; the outputs must agree.
void expect_same_outputs(const std::string& text, int64_t features) {
  std::shared_ptr<Graph> before(parse_graph(text).release());
  std::shared_ptr<Graph> after(parse_graph(text).release());
  canonicalize(*after);
  auto backend = make_reference_backend();
  auto ex_before = Executable::compile(before, *backend);
  auto ex_after = Executable::compile(after, *backend);
  std::mt19937 rng(5);
  for (auto [batch, seq] : {std::pair<int64_t, int64_t>{1, 5}, {3, 2}}) {
    Tensor x = random_tensor(DType::f32, {batch, seq, features}, test::uniform(-1, 1), rng);
    std::vector<Tensor> a = ex_before->run({{"x", x}});
    std::vector<Tensor> b = ex_after->run({{"x", x}});
    ASSERT_EQ(a.size(), b.size());
    for (size_t k = 0; k < a.size(); ++k) {
      ASSERT_EQ(a[k].dims(), b[k].dims());
      ASSERT_EQ(a[k].dims()[0], batch);
      double max_abs = 0;
      for (int64_t i = 0; i < a[k].numel(); ++i) {
        EXPECT_NEAR(a[k].get_double(i), b[k].get_double(i), 1e-6) << i;
        max_abs = std::max(max_abs, std::fabs(a[k].get_double(i)));
      }
      EXPECT_GT(max_abs, 1e-3);  // the graph computes something
    }
  }
}

TEST(Canonicalize, FlatteningGemmStillTypesItsUsers) {
  // HF GPT-2's Conv1D as torch exports it: flatten to [-1, 4], Gemm, and view
  // back to [batch, seq, 6] from the input's shape. The view back cannot be a
  // constant Reshape ([batch*seq] splits into two symbolic dims), but its type
  // is refined, so the next view (split the last dim into 2x3) folds.
  const char* text = R"(
graph main(%x: f32[batch,seq,4]) -> (%y) {
  %w: f32[4,6] = const {0.5, -1, 2, 0.25, 1, -0.5, 1.5, 0.75, -2, 1, 0.5, 0.125, -1, 2, 0.5, 1, -0.25, 3, 1, 1, -1, 0.5, 2, -3}
  %b: f32[6] = const {0.1, 0.2, 0.3, -0.1, -0.2, -0.3}
  %flat: i64[2] = const {-1, 4}
  %c0: i64[] = const {0}
  %c1: i64[] = const {1}
  %ax: i64[1] = const {0}
  %six: i64[1] = const {6}
  %x2 = Reshape(%x, %flat)
  %g = Gemm(%x2, %w, %b)
  %shape = Shape(%x)
  %d0 = Gather(%shape, %c0) {axis = 0}
  %d1 = Gather(%shape, %c1) {axis = 0}
  %u0 = Unsqueeze(%d0, %ax)
  %u1 = Unsqueeze(%d1, %ax)
  %target = Concat(%u0, %u1, %six) {axis = 0}
  %y3 = Reshape(%g, %target)
  %s2 = Shape(%y3)
  %start: i64[1] = const {0}
  %end: i64[1] = const {-1}
  %lead = Slice(%s2, %start, %end)
  %tail: i64[2] = const {2, 3}
  %t2 = Concat(%lead, %tail) {axis = 0}
  %y = Reshape(%y3, %t2)
})";
  std::string got = canonicalized(text);
  EXPECT_NE(got.find("%x2: f32[\"batch*seq\",4] = Reshape(%x, %flat)"), std::string::npos) << got;
  EXPECT_NE(got.find("%y3: f32[batch,seq,6] = Reshape(%g, %target)"), std::string::npos) << got;
  EXPECT_NE(got.find("%y_shape: i64[4] = const {0, 0, 2, 3}"), std::string::npos) << got;
  EXPECT_NE(got.find("%y: f32[batch,seq,2,3] = Reshape(%y3, %y_shape)"), std::string::npos) << got;
  EXPECT_EQ(got.find("Slice"), std::string::npos) << got;
  expect_same_outputs(text, 4);
}

TEST(Canonicalize, SameOutputsBeforeAndAfterOnRandomInputs) {
  std::string text = attention_block_text();
  auto after = parse_graph(text);
  canonicalize(*after);
  std::string printed = print_graph(*after, {.elide_large_constants = true});
  // The shape chains are gone: only compute ops remain.
  for (const char* op : {"Shape", "Gather", "Unsqueeze", "Concat", "Slice", "Transpose(%w_qkv"})
    EXPECT_EQ(printed.find(std::string(" = ") + op), std::string::npos) << op << "\n" << printed;
  EXPECT_NE(printed.find("const {0, 0, 2, 4}"), std::string::npos) << printed;
  EXPECT_NE(printed.find("const {0, 0, 8}"), std::string::npos) << printed;
  EXPECT_NE(printed.find("%out: f32[batch,seq,8] = Add("), std::string::npos) << printed;

  expect_same_outputs(text, 8);
}

TEST(Canonicalize, SplitHeadsChainRunsTheSameAtTwoSizes) {
  std::shared_ptr<Graph> before(parse_graph(kSplitHeads).release());
  std::shared_ptr<Graph> after(parse_graph(kSplitHeads).release());
  canonicalize(*after);
  EXPECT_EQ(after->num_nodes(), 1u);
  auto backend = make_reference_backend();
  auto ex_before = Executable::compile(before, *backend);
  auto ex_after = Executable::compile(after, *backend);
  std::mt19937 rng(9);
  for (auto [batch, seq] : {std::pair<int64_t, int64_t>{2, 3}, {1, 7}}) {
    Tensor x = random_tensor(DType::f32, {batch, seq, 768}, test::uniform(-1, 1), rng);
    Tensor a = ex_before->run({{"x", x}})[0];
    Tensor b = ex_after->run({{"x", x}})[0];
    EXPECT_EQ(a.dims(), (std::vector<int64_t>{batch, seq, 12, 64}));
    EXPECT_TRUE(a.bitwise_equal(b));
    EXPECT_TRUE(a.bitwise_equal(x.reshaped({batch, seq, 12, 64})));
  }
}
