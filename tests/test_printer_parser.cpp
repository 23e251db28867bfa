// Tests of the IR's text form: graphs built through the C++ API print, parse
// back to the same structure and print to the same text; handwritten text
// parses to the expected graph; malformed text fails naming line:column.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "ir/parser.h"
#include "ir/printer.h"
#include "support/error.h"

using namespace cb;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

Tensor half_tensor(const std::vector<float>& v) {
  Tensor t = Tensor::empty(DType::f16, {int64_t(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data<Half>()[i].bits = float_to_half(v[i]);
  return t;
}

Tensor bf16_tensor(const std::vector<float>& v) {
  Tensor t = Tensor::empty(DType::bf16, {int64_t(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data<BFloat16>()[i].bits = float_to_bf16(v[i]);
  return t;
}

// A graph that uses every feature of the format.
std::unique_ptr<Graph> make_feature_graph() {
  auto g = std::make_unique<Graph>();
  g->name = "main";
  Value* ids = g->add_input("input_ids", {DType::i64, Shape({Dim::sym("batch"), Dim::sym("seq")})});
  Value* x = g->add_input("x", {DType::f32, Shape({Dim::sym("batch"), Dim::unknown(), Dim::fixed(4)})});
  Value* odd = g->add_input("onnx::Odd name", {DType::f16, Shape::unknown_rank()});
  Value* dflt = g->add_input("dflt", {DType::f32, Shape::of({2})});
  dflt->constant = Tensor::from_vector<float>({0.5f, -1.25f}, {2});

  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-3, 3);
  std::vector<float> w(20);
  for (auto& e : w) e = u(rng);
  Value* cw = g->add_constant("w", Tensor::from_vector<float>(w, {4, 5}));
  Value* cspecial = g->add_constant(
      "special", Tensor::from_vector<float>({kNaN, kInf, -kInf, -0.0f, 1e-45f, 0.1f, 3.4028235e38f}, {7}));
  Value* chalf = g->add_constant("h", half_tensor({1.0f, -2.5f, 65504.0f, kNaN, -kInf, 6.1e-5f}));
  Value* cbf = g->add_constant("b16", bf16_tensor({3.140625f, -kInf, kNaN, 1e-20f}));
  Value* cf64 = g->add_constant("d", Tensor::from_vector<double>({0.1, -1e300, 5e-324}, {3}));
  Value* ci64 = g->add_constant(
      "i", Tensor::from_vector<int64_t>(
               {std::numeric_limits<int64_t>::min(), -1, 0, std::numeric_limits<int64_t>::max()}, {2, 2}));
  Value* ci8 = g->add_constant("i8", Tensor::from_vector<int8_t>({-128, 127, 3}, {3}));
  Value* cu64 = g->add_constant("u", Tensor::from_vector<uint64_t>({~uint64_t(0), 1}, {2}));
  Value* cu8 = g->add_constant("u8", Tensor::from_vector<uint8_t>({255, 0}, {2}));
  Value* cbool = g->add_constant("flags", Tensor::from_vector<bool>({true, false, true}, {3}));
  Value* cscalar = g->add_constant("s", Tensor::scalar<int32_t>(-7));
  Value* cempty = g->add_constant("empty", Tensor::empty(DType::f32, {0, 3}));
  (void)cspecial, (void)chalf, (void)cbf, (void)cf64, (void)ci8, (void)cu64, (void)cu8, (void)cbool, (void)cscalar,
      (void)cempty;

  Value* e = g->add_value("0", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(5)})});
  g->add_node("Gather", {cw, ids}, {e}, {{"axis", int64_t(0)}}, "embed");
  Value* y = g->add_value("y", {DType::f32, Shape::unknown_rank()});
  Value* mask = g->add_value("mask");
  g->add_node("Dropout", {x, nullptr, nullptr}, {y, mask}, {{"seed", int64_t(1)}})->name = "";
  Value* y2 = g->add_value("y2", {DType::undefined, Shape({Dim::sym("weird dim + 1"), Dim::fixed(0)})});
  Node* every = g->add_node("Every", {y, odd, nullptr, dflt}, {y2, nullptr},
                            {{"i", int64_t(-3)},
                             {"f", 1.0f},
                             {"small", 1e-5f},
                             {"fnan", kNaN},
                             {"finf", -kInf},
                             {"s", std::string("say \"hi\"\n\ttab \\ done")},
                             {"ints", std::vector<int64_t>{1, -2, 3}},
                             {"floats", std::vector<float>{0.5f, 2.0f, -0.0f}},
                             {"strings", std::vector<std::string>{"a", "b c", ""}},
                             {"no_ints", std::vector<int64_t>{}},
                             {"no_floats", std::vector<float>{}},
                             {"no_strings", std::vector<std::string>{}},
                             {"tensor", Tensor::from_vector<int64_t>({4, 5, 6}, {3, 1})},
                             {"weird key", int64_t(2)}},
                            "  a \"quoted\" name  ", "com.example");
  (void)every;

  // A nested graph that reads an outer value (%w) and has its own inputs.
  auto body = std::make_shared<Graph>();
  body->name = "body";
  Value* bi = body->add_input("i", {DType::i64, Shape()});
  Value* bo = body->add_value("o", {DType::f32, Shape({Dim::fixed(5)})});
  body->add_node("Gather", {cw, bi}, {bo}, {{"axis", int64_t(0)}}, "inner");
  body->outputs.push_back(bo);
  Value* loop_out = g->add_value("loop_out");
  g->add_node("Loop", {ci64}, {loop_out}, {{"body", body}}, "loop");

  Value* logits = g->add_value("logits", {DType::f32, Shape({Dim::sym("batch"), Dim::sym("seq"), Dim::fixed(5)})});
  g->add_node("Add", {e, e}, {logits}, {}, "add");
  g->outputs = {logits, y2, e};
  return g;
}

void expect_same_graph(const Graph& a, const Graph& b) {
  ASSERT_EQ(a.inputs.size(), b.inputs.size());
  ASSERT_EQ(a.outputs.size(), b.outputs.size());
  ASSERT_EQ(a.num_nodes(), b.num_nodes());
  for (size_t i = 0; i < a.inputs.size(); ++i) {
    EXPECT_EQ(a.inputs[i]->name, b.inputs[i]->name);
    EXPECT_EQ(a.inputs[i]->type, b.inputs[i]->type);
    EXPECT_EQ(a.inputs[i]->is_constant(), b.inputs[i]->is_constant());
  }
  for (size_t i = 0; i < a.outputs.size(); ++i) EXPECT_EQ(a.outputs[i]->name, b.outputs[i]->name);
  for (auto& v : a.values()) {
    if (!v->constant) continue;
    Value* w = b.find_value(v->name);
    ASSERT_TRUE(w && w->constant) << v->name;
    EXPECT_TRUE(v->constant->bitwise_equal(*w->constant))
        << v->name << ": " << v->constant->str() << " vs " << w->constant->str();
  }
  for (size_t i = 0; i < a.num_nodes(); ++i) {
    const Node& n = *a.nodes()[i];
    const Node& m = *b.nodes()[i];
    EXPECT_EQ(n.op_type, m.op_type);
    EXPECT_EQ(n.domain, m.domain);
    EXPECT_EQ(n.name, m.name);
    ASSERT_EQ(n.inputs.size(), m.inputs.size());
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      ASSERT_EQ(n.inputs[k] == nullptr, m.inputs[k] == nullptr);
      if (n.inputs[k]) {
        EXPECT_EQ(n.inputs[k]->name, m.inputs[k]->name);
      }
    }
    ASSERT_EQ(n.outputs.size(), m.outputs.size());
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      ASSERT_EQ(n.outputs[k] == nullptr, m.outputs[k] == nullptr);
      if (!n.outputs[k]) continue;
      EXPECT_EQ(n.outputs[k]->name, m.outputs[k]->name);
      EXPECT_EQ(n.outputs[k]->type, m.outputs[k]->type);
      EXPECT_EQ(m.outputs[k]->producer, &m);
    }
    ASSERT_EQ(n.attrs.size(), m.attrs.size());
    for (auto& [k, va] : n.attrs) {
      ASSERT_TRUE(m.attrs.count(k)) << k;
      const AttrValue& vb = m.attrs.at(k);
      ASSERT_EQ(va.index(), vb.index()) << k;
      if (auto f = std::get_if<float>(&va)) {
        float g2 = std::get<float>(vb);
        EXPECT_EQ(std::memcmp(f, &g2, 4), 0) << k;
      } else if (auto t = std::get_if<Tensor>(&va)) {
        EXPECT_TRUE(t->bitwise_equal(std::get<Tensor>(vb))) << k;
      } else if (auto fs = std::get_if<std::vector<float>>(&va)) {
        auto& gs = std::get<std::vector<float>>(vb);
        ASSERT_EQ(fs->size(), gs.size());
        EXPECT_TRUE(fs->empty() || std::memcmp(fs->data(), gs.data(), 4 * fs->size()) == 0) << k;
      } else if (auto sg = std::get_if<std::shared_ptr<Graph>>(&va)) {
        expect_same_graph(**sg, *std::get<std::shared_ptr<Graph>>(vb));
      } else if (auto i = std::get_if<int64_t>(&va)) {
        EXPECT_EQ(*i, std::get<int64_t>(vb)) << k;
      } else if (auto str = std::get_if<std::string>(&va)) {
        EXPECT_EQ(*str, std::get<std::string>(vb)) << k;
      } else if (auto is = std::get_if<std::vector<int64_t>>(&va)) {
        EXPECT_EQ(*is, std::get<std::vector<int64_t>>(vb)) << k;
      } else {
        EXPECT_EQ(std::get<std::vector<std::string>>(va), std::get<std::vector<std::string>>(vb)) << k;
      }
    }
  }
}

}  // namespace

TEST(PrinterParser, RoundTripsEveryFeature) {
  auto g = make_feature_graph();
  std::string text = print_graph(*g);
  SCOPED_TRACE(text);
  std::unique_ptr<Graph> back = parse_graph(text);
  expect_same_graph(*g, *back);
  EXPECT_EQ(print_graph(*back), text);
  // The nested graph's use of the outer %w resolves to the outer value itself.
  const Node* loop = back->nodes()[back->num_nodes() - 2].get();
  ASSERT_EQ(loop->op_type, "Loop");
  EXPECT_EQ(loop->attr_graph("body")->nodes()[0]->inputs[0], back->find_value("w"));
}

TEST(PrinterParser, PrintsReadableText) {
  auto g = make_feature_graph();
  std::string text = print_graph(*g);
  SCOPED_TRACE(text);
  EXPECT_NE(text.find("graph main(%input_ids: i64[batch,seq], %x: f32[batch,?,4], "
                      "%\"onnx::Odd name\": f16[*], %dflt: f32[2] = const {0.5, -1.25}) -> "
                      "(%logits, %y2, %0) {\n"),
            std::string::npos);
  EXPECT_NE(text.find("  %special: f32[7] = const {nan, inf, -inf, -0, 1e-45, 0.1, 3.4028235e+38}\n"),
            std::string::npos);
  // 16-bit floats print their shortest decimal that reads back to the same bits
  // (like numpy: f16 65504 prints as 65500).
  EXPECT_NE(text.find("  %h: f16[6] = const {1, -2.5, 65500, nan, -inf, 6.1e-05}\n"), std::string::npos);
  EXPECT_NE(text.find("  %b16: bf16[4] = const {3.14, -inf, nan, 1e-20}\n"), std::string::npos);
  EXPECT_NE(text.find("  %flags: bool[3] = const {true, false, true}\n"), std::string::npos);
  EXPECT_NE(text.find("  %s: i32[] = const {-7}\n"), std::string::npos);
  EXPECT_NE(text.find("  %empty: f32[0,3] = const {}\n"), std::string::npos);
  EXPECT_NE(text.find("  %0: f32[batch,seq,5] = Gather(%w, %input_ids) {axis = 0} # embed\n"), std::string::npos);
  EXPECT_NE(text.find("  %y: f32[*], %mask = Dropout(%x, _, _) {seed = 1}\n"), std::string::npos);
  EXPECT_NE(text.find("%y2: ?[\"weird dim + 1\",0], _ = com.example.Every(%y, %\"onnx::Odd name\", _, %dflt) "
                      "{f = 1.0, finf = -inf, floats = [0.5, 2.0, -0.0], fnan = nan, i = -3, "
                      "ints = [1, -2, 3], no_floats = floats[], no_ints = ints[], no_strings = strings[], "
                      "s = \"say \\\"hi\\\"\\n\\ttab \\\\ done\", small = 1e-05, "
                      "strings = [\"a\", \"b c\", \"\"], tensor = i64[3,1] {4, 5, 6}, \"weird key\" = 2} "
                      "# \"  a \\\"quoted\\\" name  \"\n"),
            std::string::npos);
  EXPECT_NE(text.find("  %loop_out = Loop(%i) {body = graph body(%i: i64[]) -> (%o) {\n"
                      "    %o: f32[5] = Gather(%w, %i) {axis = 0} # inner\n"
                      "  }} # loop\n"),
            std::string::npos);
}

TEST(PrinterParser, ParsesHandwrittenText) {
  const char* text = R"(
// A comment line.
graph "torch-jit"(%ids: i64[batch, seq]) -> (%out) {
  %out: f32[batch,seq,2] = Gather(%table, %ids) {axis = 0}   # the gather
  %table: f32[3,2] = const {1, 2, 3, 4.5, -5e-1, +6}  // trailing comment
}
)";
  auto g = parse_graph(text);
  EXPECT_EQ(g->name, "torch-jit");
  ASSERT_EQ(g->inputs.size(), 1u);
  EXPECT_EQ(g->inputs[0]->type.str(), "i64[batch,seq]");
  ASSERT_EQ(g->num_nodes(), 1u);
  const Node& n = *g->nodes()[0];
  EXPECT_EQ(n.name, "the gather");
  EXPECT_EQ(n.attr_int("axis", -1), 0);
  Value* table = g->find_value("table");
  ASSERT_TRUE(table && table->constant);
  EXPECT_EQ(n.inputs[0], table);  // a use before the definition resolves
  EXPECT_EQ(table->constant->get_double(3), 4.5);
  EXPECT_EQ(table->constant->get_double(4), -0.5);
  EXPECT_EQ(table->constant->get_double(5), 6.0);
  EXPECT_EQ(g->outputs[0], n.outputs[0]);
  // Printing normalises spacing and moves constants first.
  EXPECT_EQ(print_graph(*g),
            "graph \"torch-jit\"(%ids: i64[batch,seq]) -> (%out) {\n"
            "  %table: f32[3,2] = const {1, 2, 3, 4.5, -0.5, 6}\n"
            "  %out: f32[batch,seq,2] = Gather(%table, %ids) {axis = 0} # the gather\n"
            "}\n");
}

TEST(PrinterParser, NodesWithoutNamesOrOutputs) {
  auto g = parse_graph("graph g(%x: f32[2]) -> (%x) {\n  Print(%x)\n  %a, _ = Split(%x)\n}\n");
  ASSERT_EQ(g->num_nodes(), 2u);
  EXPECT_TRUE(g->nodes()[0]->outputs.empty());
  EXPECT_EQ(g->nodes()[0]->name, "");
  EXPECT_EQ(g->nodes()[1]->outputs[1], nullptr);
  EXPECT_EQ(print_graph(*g), "graph g(%x: f32[2]) -> (%x) {\n  Print(%x)\n  %a, _ = Split(%x)\n}\n");
  PrintOptions no_names;
  no_names.node_names = false;
  auto g2 = parse_graph("graph g(%x: f32[2]) -> (%y) {\n  %y = Neg(%x) # n\n}\n");
  EXPECT_EQ(print_graph(*g2, no_names), "graph g(%x: f32[2]) -> (%y) {\n  %y = Neg(%x)\n}\n");
}

TEST(PrinterParser, ElidesLargeConstantsForHumans) {
  Graph g;
  std::vector<float> big(100);
  for (size_t i = 0; i < big.size(); ++i) big[i] = float(i) * 0.25f + 1;
  Value* c = g.add_constant("big", Tensor::from_vector<float>(big, {10, 10}));
  Value* small = g.add_constant("small", Tensor::from_vector<float>({1, 2}, {2}));
  Value* y = g.add_value("y");
  g.add_node("Add", {c, small}, {y}, {{"t", Tensor::from_vector<float>(big, {100})}});
  g.outputs = {y};
  std::string text = print_graph(g, {.elide_large_constants = true});
  EXPECT_NE(text.find("%big: f32[10,10] = const dense<400 bytes, fnv1a 0x"), std::string::npos) << text;
  EXPECT_NE(text.find("%small: f32[2] = const {1, 2}"), std::string::npos) << text;
  EXPECT_NE(text.find("t = f32[100] dense<400 bytes, fnv1a 0x"), std::string::npos) << text;
  // The hash tells different contents apart.
  big[50] += 1;
  Graph g2;
  g2.add_constant("big", Tensor::from_vector<float>(big, {10, 10}));
  std::string text2 = print_graph(g2, {.elide_large_constants = true});
  EXPECT_EQ(text2.find(text.substr(text.find("dense<"), 40)), std::string::npos);
  // The elided form does not read back, and says so.
  try {
    parse_graph(text);
    FAIL() << "parsed an elided constant";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("elide_large_constants"), std::string::npos) << e.what();
  }
  // The full form does.
  auto back = parse_graph(print_graph(g));
  EXPECT_TRUE(back->find_value("big")->constant->bitwise_equal(*c->constant));
}

TEST(PrinterParser, TypesPrintAndParse) {
  for (const char* t : {"f32[batch,seq,768]", "i64[]", "bool[?,3]", "f16[*]", "?[2,?]", "bf16[\"a b\",1]"}) {
    TensorType ty = parse_type(t);
    EXPECT_EQ(print_type(ty), t);
  }
  EXPECT_EQ(parse_type("f32[batch, 4]").shape.dims[0].symbol, "batch");
  EXPECT_TRUE(parse_type("f32[*]").shape == Shape::unknown_rank());
}

TEST(PrinterParser, FloatsRoundTripExactly) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> v;
  for (int i = 0; i < 2000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (std::isnan(f)) continue;
    v.push_back(f);
  }
  std::vector<double> d;
  std::uniform_int_distribution<uint64_t> bits64;
  for (int i = 0; i < 2000; ++i) {
    uint64_t b = bits64(rng);
    double x;
    std::memcpy(&x, &b, 8);
    if (!std::isnan(x)) d.push_back(x);
  }
  // Every non-NaN 16-bit pattern, as f16 and as bf16.
  std::vector<uint16_t> half_bits, bf16_bits;
  for (uint32_t b = 0; b < 65536; ++b) {
    if (!std::isnan(half_to_float(uint16_t(b)))) half_bits.push_back(uint16_t(b));
    if (!std::isnan(bf16_to_float(uint16_t(b)))) bf16_bits.push_back(uint16_t(b));
  }
  Tensor halves = Tensor::empty(DType::f16, {int64_t(half_bits.size())});
  Tensor bhalves = Tensor::empty(DType::bf16, {int64_t(bf16_bits.size())});
  std::memcpy(halves.raw(), half_bits.data(), halves.nbytes());
  std::memcpy(bhalves.raw(), bf16_bits.data(), bhalves.nbytes());
  Graph g;
  g.add_constant("c", Tensor::from_vector<float>(v, {int64_t(v.size())}));
  g.add_constant("d", Tensor::from_vector<double>(d, {int64_t(d.size())}));
  g.add_constant("h", halves);
  g.add_constant("b", bhalves);
  auto back = parse_graph(print_graph(g));
  for (const char* name : {"c", "d", "h", "b"})
    EXPECT_TRUE(back->find_value(name)->constant->bitwise_equal(*g.find_value(name)->constant)) << name;
}

namespace {
// The message of the cb::Error that parsing `text` throws.
std::string parse_error(const std::string& text) {
  try {
    parse_graph(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}
}  // namespace

TEST(PrinterParser, ErrorsNameLineColumnAndWhatWasExpected) {
  EXPECT_EQ(parse_error("graph g(%x: f32[2]) -> (%y) {\n  %y = Neg(%x {\n}\n"),
            "parse error at 2:15: expected ')' to close the inputs of Neg, found '{'");
  EXPECT_EQ(parse_error("graph g(%x: f33[2]) -> (%x) {}"),
            "parse error at 1:13: expected a dtype (f32, f16, bf16, f64, i64, i32, i16, i8, u64, u32, "
            "u16, u8, bool or ?), found 'f33'");
  EXPECT_EQ(parse_error("graph g(%x: f32[2]) -> (%y) {\n  %y = Neg(%z)\n}"), "parse error at 2:12: undefined value %z");
  EXPECT_EQ(parse_error("graph g(%x: f32[2]) -> (%x) {\n  %x = Neg(%x)\n}"),
            "parse error at 2:3: value %x is defined twice (first at 1:9)");
  EXPECT_EQ(parse_error("graph g() -> (%c) {\n  %c: f32[3] = const {1, 2}\n}"),
            "parse error at 2:27: expected 3 elements for f32[3], got 2, found '}'");
  EXPECT_EQ(parse_error("graph g() -> (%c) {\n  %c: i8[1] = const {300}\n}"),
            "parse error at 2:22: expected an integer in range of i8, found '300'");
  EXPECT_EQ(parse_error("graph g() -> () {\n  %c: f32[batch] = const {1}\n}"),
            "parse error at 2:3: a constant needs a dtype and static dimensions, got f32[batch]");
  EXPECT_EQ(parse_error("graph g() -> () {\n  %y = Foo() {a = [1, \"x\"]}\n}"),
            "parse error at 2:23: a list mixes strings and numbers");
  EXPECT_EQ(parse_error("graph g() -> () {\n  %y = Foo() {s = \"abc\n}"), "parse error at 2:19: unterminated string");
  EXPECT_EQ(parse_error("graph g() -> () {\n  %y = Foo()\n"),
            "parse error at 3:1: expected '}' to close graph 'g', found end of input");
  EXPECT_EQ(parse_error("graph g() -> () {} extra"),
            "parse error at 1:20: expected end of input after the graph, found 'extra'");
  EXPECT_EQ(parse_error("graph g() -> () {\n  %y = Foo() {a = 1, a = 2}\n}"),
            "parse error at 2:22: attribute 'a' is given twice");
  EXPECT_EQ(parse_error("graph g() -> () {\n  %y = @Foo()\n}"), "parse error at 2:8: unexpected character '@'");
}

TEST(PrinterParser, MutatedTextParsesOrFailsCleanly) {
  // Random edits of a valid text must give a graph or a cb::Error, nothing else.
  const std::string text = print_graph(*make_feature_graph());
  const std::string alphabet = "%_:,=(){}[]<>#\"\\/.-+*?0123456789abcfgiknst \n";
  std::mt19937 rng(17);
  int parsed = 0, rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string t = text;
    int edits = 1 + int(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t pos = rng() % t.size();
      switch (rng() % 3) {
        case 0: t.erase(pos, 1 + rng() % 4); break;
        case 1: t.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        default: t[pos] = alphabet[rng() % alphabet.size()]; break;
      }
    }
    try {
      auto g = parse_graph(t);
      ++parsed;
      EXPECT_EQ(print_graph(*parse_graph(print_graph(*g))), print_graph(*g));
    } catch (const Error& e) {
      ++rejected;
      EXPECT_EQ(std::string(e.what()).rfind("parse error at ", 0), 0u) << e.what();
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_GT(parsed, 0);
}

TEST(PrinterParser, AbsurdConstantSizesFailBeforeAllocating) {
  EXPECT_EQ(parse_error("graph g() -> () {\n  %c: f32[100000000000,100000000000] = const {1}\n}"),
            "parse error at 2:46: the text has fewer elements than f32[100000000000,100000000000] "
            "needs, found '{'");
}
