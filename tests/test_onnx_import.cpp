// ONNX import and export: small ModelProtos built with the protobuf API, run on
// the reference backend and checked against independent computations.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "backends/backend.h"
#include "frontend/npy.h"
#include "frontend/onnx_export.h"
#include "frontend/onnx_import.h"
#include "frontend/onnx_opset_upgrade.h"
#include "onnx/onnx.pb.h"
#include "runtime/executable.h"

using namespace cb;
namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------------------
// Building models

using DimSpec = std::variant<int64_t, std::string>;  // "" = unknown dim

onnx::ModelProto new_model(int64_t opset) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("test");
  auto* o = m.add_opset_import();
  o->set_domain("");
  o->set_version(opset);
  m.mutable_graph()->set_name("g");
  return m;
}

void set_type(onnx::ValueInfoProto* vi, const std::string& name, int elem, const std::vector<DimSpec>& dims) {
  vi->set_name(name);
  auto* tt = vi->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem);
  auto* shape = tt->mutable_shape();
  for (auto& d : dims) {
    auto* dim = shape->add_dim();
    if (auto v = std::get_if<int64_t>(&d))
      dim->set_dim_value(*v);
    else if (!std::get<std::string>(d).empty())
      dim->set_dim_param(std::get<std::string>(d));
  }
}

void add_input(onnx::GraphProto* g, const std::string& name, int elem, const std::vector<DimSpec>& dims) {
  set_type(g->add_input(), name, elem, dims);
}
void add_output(onnx::GraphProto* g, const std::string& name, int elem = 1) {
  auto* vi = g->add_output();
  vi->set_name(name);
  vi->mutable_type()->mutable_tensor_type()->set_elem_type(elem);
}

onnx::NodeProto* add_node(onnx::GraphProto* g, const std::string& op, std::vector<std::string> ins,
                          std::vector<std::string> outs, const std::string& name = "") {
  auto* n = g->add_node();
  n->set_op_type(op);
  if (!name.empty()) n->set_name(name);
  for (auto& i : ins) n->add_input(i);
  for (auto& o : outs) n->add_output(o);
  return n;
}

onnx::AttributeProto* attr(onnx::NodeProto* n, const std::string& name, onnx::AttributeProto::AttributeType t) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(t);
  return a;
}
void attr_int(onnx::NodeProto* n, const std::string& k, int64_t v) { attr(n, k, onnx::AttributeProto::INT)->set_i(v); }
void attr_float(onnx::NodeProto* n, const std::string& k, float v) {
  attr(n, k, onnx::AttributeProto::FLOAT)->set_f(v);
}
void attr_ints(onnx::NodeProto* n, const std::string& k, const std::vector<int64_t>& v) {
  auto* a = attr(n, k, onnx::AttributeProto::INTS);
  for (auto x : v) a->add_ints(x);
}

template <typename T>
onnx::TensorProto raw_tensor(const std::string& name, int elem, const std::vector<T>& v,
                             const std::vector<int64_t>& dims) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(elem);
  for (auto d : dims) t.add_dims(d);
  t.set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
  return t;
}

std::vector<float> random_floats(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-2.0f, 2.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::string serialize(const onnx::ModelProto& m) {
  std::string s;
  EXPECT_TRUE(m.SerializeToString(&s));
  return s;
}

std::shared_ptr<Graph> import(const onnx::ModelProto& m, bool canonicalize = false, const std::string& base_dir = ".") {
  ImportOptions o;
  o.canonicalize = canonicalize;
  return import_onnx_bytes(serialize(m), base_dir, "test model", o);
}

std::vector<Tensor> run(std::shared_ptr<Graph> g, const std::map<std::string, Tensor>& inputs) {
  auto backend = make_backend("reference");
  auto exe = Executable::compile(g, *backend);
  return exe->run(inputs);
}

std::vector<float> floats(const Tensor& t) {
  EXPECT_EQ(t.dtype(), DType::f32);
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

// Expects cb::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, std::vector<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "expected cb::Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("cb_onnx_test_" + std::to_string(getpid()) + "_" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// The file whose mapping contains `p` (from /proc/self/maps), or "".
std::string mapped_file_of(const void* p) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  auto addr = reinterpret_cast<uintptr_t>(p);
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2 || addr < lo || addr >= hi) continue;
    size_t slash = line.find('/');
    return slash == std::string::npos ? "" : line.substr(slash);
  }
  return "";
}

// ---------------------------------------------------------------------------

TEST(OnnxImport, InputsOutputsAndSymbolicDims) {
  auto m = new_model(17);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {std::string("batch"), std::string(""), int64_t(4)});
  add_node(g, "Relu", {"x"}, {"y"});
  add_output(g, "y");
  auto graph = import(m);
  ASSERT_EQ(graph->inputs.size(), 1u);
  const Shape& s = graph->inputs[0]->type.shape;
  ASSERT_EQ(s.rank(), 3u);
  EXPECT_EQ(s[0], Dim::sym("batch"));
  EXPECT_EQ(s[1], Dim::sym("x_dim1"));  // unnamed input dims get names
  EXPECT_EQ(s[2], Dim::fixed(4));
  EXPECT_EQ(graph->outputs[0]->type.dtype, DType::f32);
  EXPECT_EQ(graph->opsets.at(""), 17);
  EXPECT_EQ(graph->producer, "test");

  ImportOptions keep_unknown;
  keep_unknown.name_unknown_input_dims = false;
  keep_unknown.canonicalize = false;
  auto g2 = import_onnx_bytes(serialize(m), ".", "m", keep_unknown);
  EXPECT_TRUE(g2->inputs[0]->type.shape[1].is_unknown());
}

TEST(OnnxImport, AttributesOfEveryKind) {
  auto m = new_model(17);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(2)});
  auto* n = add_node(g, "Identity", {"x"}, {"y"}, "id");
  attr_int(n, "i", -7);
  attr_float(n, "f", 2.5f);
  attr(n, "s", onnx::AttributeProto::STRING)->set_s("hello");
  attr_ints(n, "is", {1, -2, 3});
  auto* fs_ = attr(n, "fs", onnx::AttributeProto::FLOATS);
  fs_->add_floats(0.5f);
  fs_->add_floats(-1.5f);
  auto* ss = attr(n, "ss", onnx::AttributeProto::STRINGS);
  ss->add_strings("a");
  ss->add_strings("bc");
  *attr(n, "t", onnx::AttributeProto::TENSOR)->mutable_t() = raw_tensor<int32_t>("", 6, {4, 5, 6}, {3});
  auto* untyped = n->add_attribute();  // old models may leave the type unset
  untyped->set_name("untyped");
  untyped->set_i(42);
  add_output(g, "y");

  auto graph = import(m);
  ASSERT_EQ(graph->num_nodes(), 1u);
  const Node& node = *graph->nodes()[0];
  EXPECT_EQ(node.name, "id");
  EXPECT_EQ(node.attr_int("i", 0), -7);
  EXPECT_EQ(node.attr_float("f", 0), 2.5f);
  EXPECT_EQ(node.attr_string("s", ""), "hello");
  EXPECT_EQ(node.attr_ints("is"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(node.attr_floats("fs"), (std::vector<float>{0.5f, -1.5f}));
  EXPECT_EQ(std::get<std::vector<std::string>>(node.attrs.at("ss")), (std::vector<std::string>{"a", "bc"}));
  const Tensor* t = node.attr_tensor("t");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->dtype(), DType::i32);
  EXPECT_EQ(t->to_int_vector(), (std::vector<int64_t>{4, 5, 6}));
  EXPECT_EQ(node.attr_int("untyped", 0), 42);

  auto* bad = attr(n, "ts", onnx::AttributeProto::TENSORS);
  *bad->add_tensors() = raw_tensor<float>("", 1, {1}, {1});
  expect_error([&] { import(m); }, {"'id'", "'ts'", "TENSORS"});
}

TEST(OnnxImport, InitializersInEveryEncoding) {
  auto m = new_model(17);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(2)});
  add_node(g, "Identity", {"x"}, {"y"});
  add_output(g, "y");
  auto add_init = [&](const std::string& name, int elem, std::vector<int64_t> dims) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(elem);
    for (auto d : dims) t->add_dims(d);
    add_output(g, name, elem);
    return t;
  };
  auto* f = add_init("f", 1, {2});
  f->add_float_data(1.5f);
  f->add_float_data(-3.25f);
  auto* h = add_init("h", 10, {2});  // f16 bit patterns in int32_data
  h->add_int32_data(float_to_half(0.5f));
  h->add_int32_data(float_to_half(-2.0f));
  auto* bf = add_init("bf", 16, {1});
  bf->add_int32_data(float_to_bf16(3.0f));
  auto* b = add_init("b", 9, {3});
  for (int v : {1, 0, 1}) b->add_int32_data(v);
  auto* i8 = add_init("i8", 3, {2});
  i8->add_int32_data(-5);
  i8->add_int32_data(100);
  auto* u64 = add_init("u64", 13, {1});
  u64->add_uint64_data(uint64_t(1) << 63);
  auto* u32 = add_init("u32", 12, {1});
  u32->add_uint64_data(4000000000u);
  auto* d = add_init("d", 11, {1});
  d->add_double_data(0.1);
  auto* i64 = add_init("i64", 7, {2});
  i64->add_int64_data(-1);
  i64->add_int64_data(int64_t(1) << 40);
  *g->add_initializer() = raw_tensor<float>("raw", 1, {7.0f, 8.0f, 9.0f}, {3});
  add_output(g, "raw");

  auto graph = import(m);
  auto c = [&](const std::string& n) -> const Tensor& {
    Value* v = graph->find_value(n);
    EXPECT_TRUE(v && v->constant) << n;
    return *v->constant;
  };
  EXPECT_EQ(floats(c("f")), (std::vector<float>{1.5f, -3.25f}));
  EXPECT_EQ(c("h").dtype(), DType::f16);
  EXPECT_EQ(c("h").get_double(0), 0.5);
  EXPECT_EQ(c("h").get_double(1), -2.0);
  EXPECT_EQ(c("bf").get_double(0), 3.0);
  EXPECT_EQ(c("b").to_int_vector(), (std::vector<int64_t>{1, 0, 1}));
  EXPECT_EQ(c("i8").to_int_vector(), (std::vector<int64_t>{-5, 100}));
  EXPECT_EQ(c("u64").data<uint64_t>()[0], uint64_t(1) << 63);
  EXPECT_EQ(c("u32").data<uint32_t>()[0], 4000000000u);
  EXPECT_EQ(c("d").data<double>()[0], 0.1);
  EXPECT_EQ(c("i64").to_int_vector(), (std::vector<int64_t>{-1, int64_t(1) << 40}));
  EXPECT_EQ(floats(c("raw")), (std::vector<float>{7, 8, 9}));

  f->add_float_data(1.0f);  // 3 values for 2 elements
  expect_error([&] { import(m); }, {"initializer 'f'", "float_data has 3 values"});
  f->mutable_float_data()->RemoveLast();
  auto* f8 = add_init("f8", 17, {1});
  f8->set_raw_data(std::string(1, '\0'));
  expect_error([&] { import(m); }, {"initializer 'f8'", "FLOAT8E4M3FN"});
}

TEST(OnnxImport, OmittedOptionalInputsAndOutputs) {
  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(3), int64_t(4)});
  add_input(g, "hi", 1, {});
  add_node(g, "Clip", {"x", "", "hi"}, {"c"}, "clip");
  add_node(g, "Dropout", {"c"}, {"y", ""}, "drop");
  add_output(g, "y");
  auto graph = import(m);
  const Node& clip = *graph->nodes()[0];
  ASSERT_EQ(clip.inputs.size(), 3u);
  EXPECT_EQ(clip.inputs[1], nullptr);
  EXPECT_EQ(clip.inputs[2]->name, "hi");
  const Node& drop = *graph->nodes()[1];
  for (Value* o : drop.outputs) EXPECT_TRUE(o == nullptr || o->name == "y");

  auto xv = random_floats(12, 1);
  auto out = run(graph, {{"x", Tensor::from_vector(xv, {3, 4})}, {"hi", Tensor::scalar(0.3f)}});
  auto y = floats(out[0]);
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(y[i], std::min(xv[i], 0.3f));
}

TEST(OnnxImport, NodesOutOfOrderAndUnnamed) {
  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(5)});
  add_node(g, "Neg", {"a"}, {"y"});
  add_node(g, "Abs", {"x"}, {"a"});
  add_output(g, "y");
  auto graph = import(m);
  ASSERT_EQ(graph->num_nodes(), 2u);
  EXPECT_EQ(graph->nodes()[0]->op_type, "Abs");
  EXPECT_NE(graph->nodes()[0]->name, graph->nodes()[1]->name);
  auto xv = random_floats(5, 2);
  auto y = floats(run(graph, {{"x", Tensor::from_vector(xv, {5})}})[0]);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(y[i], -std::fabs(xv[i]));
}

TEST(OnnxImport, ConstantNodes) {
  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(2)});
  auto* c = add_node(g, "Constant", {}, {"k"});
  *attr(c, "value", onnx::AttributeProto::TENSOR)->mutable_t() = raw_tensor<float>("", 1, {10.0f, 20.0f}, {2});
  auto* s = add_node(g, "Constant", {}, {"s"});
  attr_float(s, "value_float", 0.5f);
  add_node(g, "Add", {"x", "k"}, {"t"});
  add_node(g, "Mul", {"t", "s"}, {"y"});
  add_output(g, "y");
  auto graph = import(m);
  EXPECT_EQ(graph->num_nodes(), 2u);  // constants are values, not nodes
  ASSERT_TRUE(graph->find_value("k")->constant);
  auto y = floats(run(graph, {{"x", Tensor::from_vector<float>({1, 2}, {2})}})[0]);
  EXPECT_EQ(y, (std::vector<float>{5.5f, 11.0f}));
}

// Runs a one-node model at `opset` with input x [2,3,4] (random) and returns its first output.
Tensor run_single(int64_t opset, const std::function<void(onnx::GraphProto*)>& build, const std::vector<float>& xv,
                  std::vector<int64_t> xdims = {2, 3, 4}) {
  auto m = new_model(opset);
  auto* g = m.mutable_graph();
  std::vector<DimSpec> dims(xdims.begin(), xdims.end());
  add_input(g, "x", 1, dims);
  build(g);
  add_output(g, "y");
  auto graph = import(m);
  return run(graph, {{"x", Tensor::from_vector(xv, xdims)}})[0];
}

TEST(OnnxOpsetUpgrade, UnsqueezeAxesAttributeMatchesOpset13) {
  auto xv = random_floats(24, 3);
  Tensor old = run_single(
      11,
      [](onnx::GraphProto* g) {
        attr_ints(add_node(g, "Unsqueeze", {"x"}, {"y"}), "axes", {0, 3});
      },
      xv);
  Tensor now = run_single(
      13,
      [](onnx::GraphProto* g) {
        *g->add_initializer() = raw_tensor<int64_t>("axes", 7, {0, 3}, {2});
        add_node(g, "Unsqueeze", {"x", "axes"}, {"y"});
      },
      xv);
  EXPECT_EQ(old.dims(), (std::vector<int64_t>{1, 2, 3, 1, 4}));
  EXPECT_TRUE(old.bitwise_equal(now));
  EXPECT_EQ(floats(old), xv);
}

TEST(OnnxOpsetUpgrade, SqueezeAndReduceAxesAttributes) {
  auto xv = random_floats(24, 4);
  // ReduceSum axes=[1] keepdims=0 at opset 11; then ReduceMean at 17 (attr) vs 18 (input).
  Tensor sum = run_single(
      11,
      [](onnx::GraphProto* g) {
        auto* n = add_node(g, "ReduceSum", {"x"}, {"y"});
        attr_ints(n, "axes", {1});
        attr_int(n, "keepdims", 0);
      },
      xv);
  ASSERT_EQ(sum.dims(), (std::vector<int64_t>{2, 4}));
  for (int a = 0; a < 2; ++a)
    for (int c = 0; c < 4; ++c) {
      double want = 0;
      for (int b = 0; b < 3; ++b) want += xv[size_t(a * 12 + b * 4 + c)];
      EXPECT_NEAR(sum.data<float>()[a * 4 + c], want, 1e-5);
    }
  Tensor mean17 = run_single(
      17, [](onnx::GraphProto* g) { attr_ints(add_node(g, "ReduceMean", {"x"}, {"y"}), "axes", {-1}); }, xv);
  Tensor mean18 = run_single(
      18,
      [](onnx::GraphProto* g) {
        *g->add_initializer() = raw_tensor<int64_t>("axes", 7, {-1}, {1});
        add_node(g, "ReduceMean", {"x", "axes"}, {"y"});
      },
      xv);
  EXPECT_EQ(mean17.dims(), (std::vector<int64_t>{2, 3, 1}));
  EXPECT_TRUE(mean17.bitwise_equal(mean18));
  Tensor squeezed =
      run_single(11, [](onnx::GraphProto* g) { attr_ints(add_node(g, "Squeeze", {"x"}, {"y"}), "axes", {0}); },
                 random_floats(4, 5), {1, 4});
  EXPECT_EQ(squeezed.dims(), (std::vector<int64_t>{4}));
}

TEST(OnnxOpsetUpgrade, SplitAttributeAndEqualParts) {
  auto xv = random_floats(24, 6);
  auto m = new_model(11);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(2), int64_t(3), int64_t(4)});
  auto* s1 = add_node(g, "Split", {"x"}, {"a", "b"});
  attr_int(s1, "axis", 2);
  attr_ints(s1, "split", {1, 3});
  auto* s2 = add_node(g, "Split", {"x"}, {"c", "d"});  // equal parts, no split given
  attr_int(s2, "axis", 0);
  for (auto n : {"a", "b", "c", "d"}) add_output(g, n);
  auto out = run(import(m), {{"x", Tensor::from_vector(xv, {2, 3, 4})}});
  EXPECT_EQ(out[0].dims(), (std::vector<int64_t>{2, 3, 1}));
  EXPECT_EQ(out[1].dims(), (std::vector<int64_t>{2, 3, 3}));
  EXPECT_EQ(out[1].data<float>()[0], xv[1]);
  EXPECT_EQ(out[2].dims(), (std::vector<int64_t>{1, 3, 4}));
  EXPECT_EQ(floats(out[3]), std::vector<float>(xv.begin() + 12, xv.end()));
}

TEST(OnnxOpsetUpgrade, LegacySoftmaxFlattensAtAxis) {
  auto xv = random_floats(24, 7);
  for (const char* op : {"Softmax", "LogSoftmax"}) {
    Tensor y = run_single(
        11, [&](onnx::GraphProto* g) { attr_int(add_node(g, op, {"x"}, {"y"}), "axis", 1); }, xv);
    ASSERT_EQ(y.dims(), (std::vector<int64_t>{2, 3, 4})) << op;
    for (int row = 0; row < 2; ++row) {  // coerced to 2-D: rows of 12 elements
      double sum = 0;
      for (int i = 0; i < 12; ++i) sum += std::exp(double(xv[size_t(row * 12 + i)]));
      for (int i = 0; i < 12; ++i) {
        double p = std::exp(double(xv[size_t(row * 12 + i)])) / sum;
        double want = std::string(op) == "Softmax" ? p : std::log(p);
        EXPECT_NEAR(y.data<float>()[row * 12 + i], want, 1e-5) << op;
      }
    }
  }
  // On the last axis the legacy form is a single latest-opset node.
  auto m = new_model(11);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(2), int64_t(3), int64_t(4)});
  attr_int(add_node(g, "Softmax", {"x"}, {"y"}), "axis", 2);
  add_output(g, "y");
  auto graph = import(m);
  ASSERT_EQ(graph->num_nodes(), 1u);
  EXPECT_EQ(graph->nodes()[0]->attr_int("axis", 0), -1);
}

TEST(OnnxOpsetUpgrade, PadClipSliceTopKDropoutAttributes) {
  auto xv = random_floats(24, 8);
  Tensor pad = run_single(
      10,
      [](onnx::GraphProto* g) {
        auto* n = add_node(g, "Pad", {"x"}, {"y"});
        attr_ints(n, "pads", {0, 0, 1, 0, 0, 0});
        attr_float(n, "value", 9.0f);
      },
      xv);
  ASSERT_EQ(pad.dims(), (std::vector<int64_t>{2, 3, 5}));
  EXPECT_EQ(pad.data<float>()[0], 9.0f);
  EXPECT_EQ(pad.data<float>()[1], xv[0]);

  Tensor clip = run_single(
      6,
      [](onnx::GraphProto* g) {
        auto* n = add_node(g, "Clip", {"x"}, {"y"});
        attr_float(n, "min", -0.5f);
        attr_float(n, "max", 0.25f);
      },
      xv);
  for (size_t i = 0; i < 24; ++i) EXPECT_EQ(clip.data<float>()[i], std::clamp(xv[i], -0.5f, 0.25f));

  Tensor slice = run_single(
      9,
      [](onnx::GraphProto* g) {
        auto* n = add_node(g, "Slice", {"x"}, {"y"});
        attr_ints(n, "starts", {1, 1});
        attr_ints(n, "ends", {3, 100});
        attr_ints(n, "axes", {1, 2});
      },
      xv);
  ASSERT_EQ(slice.dims(), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(slice.data<float>()[0], xv[5]);

  auto m = new_model(9);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(2), int64_t(3), int64_t(4)});
  auto* topk = add_node(g, "TopK", {"x"}, {"v", "i"});
  attr_int(topk, "k", 2);
  add_output(g, "v");
  add_output(g, "i", 7);
  auto out = run(import(m), {{"x", Tensor::from_vector(xv, {2, 3, 4})}});
  ASSERT_EQ(out[0].dims(), (std::vector<int64_t>{2, 3, 2}));
  std::vector<float> row(xv.begin(), xv.begin() + 4);
  std::sort(row.rbegin(), row.rend());
  EXPECT_EQ(out[0].data<float>()[0], row[0]);
  EXPECT_EQ(out[0].data<float>()[1], row[1]);

  Tensor drop = run_single(
      10, [](onnx::GraphProto* g) { attr_float(add_node(g, "Dropout", {"x"}, {"y"}), "ratio", 0.3f); }, xv);
  EXPECT_EQ(floats(drop), xv);  // inference: identity
}

TEST(OnnxOpsetUpgrade, VersionTable) {
  EXPECT_EQ(onnx_op_version("Unsqueeze", 12), 11);
  EXPECT_EQ(onnx_op_version("Unsqueeze", 13), 13);
  EXPECT_EQ(onnx_op_version("Gelu", 19), 0);
  EXPECT_EQ(onnx_op_version("NoSuchOp", 19), -1);
}

TEST(OnnxImport, UnknownOpsAreReportedWithNodeAndOpset) {
  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(2)});
  add_node(g, "FrobnicateX", {"x"}, {"y"}, "frob");
  add_output(g, "y");
  expect_error([&] { import(m); }, {"FrobnicateX", "'frob'", "opset 13"});

  g->mutable_node(0)->set_op_type("Gelu");  // exists only from opset 20
  expect_error([&] { import(m); }, {"Gelu", "'frob'", "opset 13", "opset 20"});

  g->mutable_node(0)->set_op_type("FusedGemm");
  g->mutable_node(0)->set_domain("com.microsoft");
  expect_error([&] { import(m); }, {"FusedGemm", "'frob'", "com.microsoft"});

  auto bad = new_model(99);
  add_input(bad.mutable_graph(), "x", 1, {int64_t(2)});
  add_node(bad.mutable_graph(), "Relu", {"x"}, {"y"});
  add_output(bad.mutable_graph(), "y");
  expect_error([&] { import(bad); }, {"opset 99"});

  auto undefined = new_model(13);
  add_input(undefined.mutable_graph(), "x", 1, {int64_t(2)});
  add_node(undefined.mutable_graph(), "Add", {"x", "nowhere"}, {"y"}, "add");
  add_output(undefined.mutable_graph(), "y");
  expect_error([&] { import(undefined); }, {"'add'", "'nowhere'", "not defined"});
}

TEST(OnnxImport, InferenceErrorsNameTheNodeAndFile) {
  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(2), int64_t(3)});
  add_input(g, "z", 1, {int64_t(4), int64_t(5)});
  add_node(g, "MatMul", {"x", "z"}, {"y"}, "mm");
  add_output(g, "y");
  expect_error([&] { import_onnx_bytes(serialize(m), ".", "my_model.onnx"); }, {"my_model.onnx", "'mm'"});
}

TEST(OnnxImport, BrokenFilesGiveErrorsNotCrashes) {
  TempDir dir;
  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(64)});
  *g->add_initializer() = raw_tensor<float>("w", 1, random_floats(64, 9), {64});
  add_node(g, "Add", {"x", "w"}, {"y"});
  add_output(g, "y");
  std::string bytes = serialize(m);
  fs::path good = dir.path / "good.onnx";
  write_bytes(good, bytes);
  EXPECT_EQ(import_onnx(good.string())->num_nodes(), 1u);

  for (size_t cut : {bytes.size() / 2, bytes.size() - 1, size_t(3)}) {
    fs::path p = dir.path / "truncated.onnx";
    write_bytes(p, bytes.substr(0, cut));
    expect_error([&] { import_onnx(p.string()); }, {p.string(), "not a valid ONNX model"});
  }
  std::mt19937 rng(10);
  for (int trial = 0; trial < 20; ++trial) {
    std::string garbage(200 + trial * 37, '\0');
    for (auto& c : garbage) c = char(rng());
    fs::path p = dir.path / "garbage.onnx";
    write_bytes(p, garbage);
    expect_error([&] { import_onnx(p.string()); }, {p.string()});
  }
  fs::path empty = dir.path / "empty.onnx";
  write_bytes(empty, "");
  expect_error([&] { import_onnx(empty.string()); }, {"not a valid ONNX model"});
  expect_error([&] { import_onnx((dir.path / "missing.onnx").string()); }, {"missing.onnx"});

  onnx::ModelProto no_outputs = new_model(13);
  add_input(no_outputs.mutable_graph(), "x", 1, {int64_t(2)});
  expect_error([&] { import(no_outputs); }, {"empty"});
}

// Hostile sizes and types (docs/reliability.md, "Hostile input files"): each
// once crashed or was accepted.
TEST(OnnxImport, HostileSizesAndTypesAreErrors) {
  const int64_t big = int64_t(1) << 32;
  {  // an initializer whose dims multiply past 2^64 (wraps to 0 bytes: the empty raw_data "fits")
    auto m = new_model(13);
    auto* g = m.mutable_graph();
    add_input(g, "x", 1, {int64_t(2)});
    *g->add_initializer() = raw_tensor<float>("w", 1, std::vector<float>{}, {big, big});
    add_node(g, "Add", {"x", "w"}, {"y"});
    add_output(g, "y");
    expect_error([&] { import(m); }, {"initializer 'w'", "more than 2^62"});
  }
  {  // an initializer claiming 2^40 floats in float_data that holds one
    auto m = new_model(13);
    auto* g = m.mutable_graph();
    add_input(g, "x", 1, {int64_t(2)});
    auto* t = g->add_initializer();
    t->set_name("w");
    t->set_data_type(1);
    t->add_dims(int64_t(1) << 40);
    t->add_float_data(1.0f);
    add_node(g, "Add", {"x", "w"}, {"y"});
    add_output(g, "y");
    expect_error([&] { import(m); }, {"initializer 'w'", "float_data has 1 values"});
  }
  {  // a graph input of element type UNDEFINED
    auto m = new_model(13);
    auto* g = m.mutable_graph();
    add_input(g, "x", 0, {int64_t(2)});
    add_node(g, "Relu", {"x"}, {"y"});
    add_output(g, "y");
    expect_error([&] { import(m); }, {"graph input 'x'", "UNDEFINED"});
    g->mutable_input(0)->clear_type();  // no type at all
    expect_error([&] { import(m); }, {"graph input 'x' has no type"});
  }
  {  // a graph input declared [2^32, 2^32]
    auto m = new_model(13);
    auto* g = m.mutable_graph();
    add_input(g, "x", 1, {big, big});
    add_node(g, "Relu", {"x"}, {"y"});
    add_output(g, "y");
    expect_error([&] { import(m); }, {"'x'", "more than 2^62"});
  }
  {  // a Reshape whose target overflows
    auto m = new_model(13);
    auto* g = m.mutable_graph();
    add_input(g, "x", 1, {int64_t(4)});
    *g->add_initializer() = raw_tensor<int64_t>("s", 7, std::vector<int64_t>{big, big, 0}, {3});
    add_node(g, "Reshape", {"x", "s"}, {"y"}, "reshape");
    add_output(g, "y");
    expect_error([&] { import(m); }, {"'reshape'"});
  }
}

// Opset 13-17 Split takes its sizes as an input; sizes that do not add up to
// the split dim are an error, found at import when the dim is static and at
// run time when it is symbolic.
TEST(OnnxImport, SplitSizesMustAddUp) {
  for (bool symbolic : {false, true}) {
    SCOPED_TRACE(symbolic ? "symbolic dim" : "static dim");
    auto m = new_model(17);
    auto* g = m.mutable_graph();
    if (symbolic)
      add_input(g, "x", 1, {std::string("n"), int64_t(2)});
    else
      add_input(g, "x", 1, {int64_t(6), int64_t(2)});
    *g->add_initializer() = raw_tensor<int64_t>("sizes", 7, std::vector<int64_t>{2, 2}, {2});
    add_node(g, "Split", {"x", "sizes"}, {"a", "b"}, "split");
    add_output(g, "a");
    add_output(g, "b");
    expect_error(
        [&] {
          auto graph = import(m);
          run(graph, {{"x", Tensor::zeros(DType::f32, {6, 2})}});
        },
        {"'split'", "does not add up"});
  }
  {  // the opset-11 'split' attribute in an opset-17 model (where sizes are an input)
    auto m = new_model(17);
    auto* g = m.mutable_graph();
    add_input(g, "x", 1, {int64_t(6), int64_t(2)});
    attr_ints(add_node(g, "Split", {"x"}, {"a", "b"}, "split"), "split", {2, 2});
    add_output(g, "a");
    add_output(g, "b");
    expect_error([&] { import(m); }, {"'split'", "split"});
  }
}

// Byte flips and truncations of a valid model: each either imports or throws
// cb::Error; nothing else (no crash, no other exception type).
TEST(OnnxImport, MutatedModelsGiveErrorsNotCrashes) {
  auto m = new_model(11);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {std::string("n"), int64_t(4)});
  *g->add_initializer() = raw_tensor<float>("w", 1, random_floats(4, 20), {4});
  auto* t = g->add_initializer();
  t->set_name("h");
  t->set_data_type(10);
  t->add_dims(2);
  t->add_int32_data(1);
  t->add_int32_data(2);
  auto* c = add_node(g, "Constant", {}, {"k"});
  attr_ints(c, "value_ints", {1, 2});
  add_node(g, "Add", {"x", "w"}, {"a"}, "add");
  attr_ints(add_node(g, "Unsqueeze", {"a"}, {"u"}, "unsq"), "axes", {0});
  attr_int(add_node(g, "Softmax", {"u"}, {"y"}, "sm"), "axis", 1);
  add_output(g, "y");
  add_output(g, "k", 7);
  add_output(g, "h", 10);
  std::string bytes = serialize(m);
  import_onnx_bytes(bytes, ".", "original", ImportOptions{false, true});

  std::mt19937 rng(21);
  int errors = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string b = bytes;
    int flips = 1 + int(rng() % 4);
    for (int f = 0; f < flips; ++f) b[rng() % b.size()] = char(rng());
    if (trial % 5 == 0) b.resize(rng() % b.size());
    try {
      import_onnx_bytes(b, ".", "mutated", ImportOptions{false, true});
    } catch (const Error&) {
      ++errors;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "trial " << trial << ": not a cb::Error: " << e.what();
    }
  }
  EXPECT_GT(errors, 0);
}

TEST(OnnxImport, ExternalDataIsMemoryMapped) {
  TempDir dir;
  auto w = random_floats(1000, 11);
  std::string data(128, 'x');  // the tensor starts at offset 128
  data.append(reinterpret_cast<const char*>(w.data()), w.size() * 4);
  write_bytes(dir.path / "weights.bin", data);

  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(1000)});
  auto* t = g->add_initializer();
  t->set_name("w");
  t->set_data_type(1);
  t->add_dims(1000);
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto kv = [&](const char* k, const std::string& v) {
    auto* e = t->add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  kv("location", "weights.bin");
  kv("offset", "128");
  kv("length", "4000");
  add_node(g, "Mul", {"x", "w"}, {"y"});
  add_output(g, "y");
  fs::path model = dir.path / "model.onnx";
  write_bytes(model, serialize(m));

  auto graph = import_onnx(model.string(), ImportOptions{false, true});
  const Tensor& c = *graph->find_value("w")->constant;
  EXPECT_EQ(floats(c), w);
  std::string mapped = mapped_file_of(c.raw());
  EXPECT_NE(mapped.find("weights.bin"), std::string::npos) << "not memory-mapped: " << mapped;
  auto xv = random_floats(1000, 12);
  auto y = floats(run(graph, {{"x", Tensor::from_vector(xv, {1000})}})[0]);
  for (size_t i = 0; i < 1000; ++i) EXPECT_EQ(y[i], xv[i] * w[i]);

  auto with = [&](const char* key, const std::string& value) {
    auto m2 = m;
    auto* ed = m2.mutable_graph()->mutable_initializer(0)->mutable_external_data();
    for (auto& e : *ed)
      if (e.key() == key) e.set_value(value);
    fs::path p = dir.path / "model2.onnx";
    write_bytes(p, serialize(m2));
    return p.string();
  };
  expect_error([&] { import_onnx(with("offset", "200")); }, {"initializer 'w'", "outside"});
  expect_error([&] { import_onnx(with("length", "400")); }, {"initializer 'w'", "length 400"});
  expect_error([&] { import_onnx(with("location", "../weights.bin")); }, {"'w'", ".."});
  expect_error([&] { import_onnx(with("location", "/etc/passwd")); }, {"'w'", "absolute"});
  expect_error([&] { import_onnx(with("location", "nothere.bin")); }, {"'w'", "nothere.bin"});
}

// A model-local function Scaled(a, b) = (a + b) * alpha with alpha defaulting
// to 2.0, called twice (once with alpha = 3).
TEST(OnnxImport, FunctionsAreInlined) {
  auto m = new_model(18);
  auto* o = m.add_opset_import();
  o->set_domain("local");
  o->set_version(1);
  auto* f = m.add_functions();
  f->set_name("Scaled");
  f->set_domain("local");
  f->add_input("a");
  f->add_input("b");
  f->add_output("out");
  f->add_attribute("alpha");
  auto* fo = f->add_opset_import();
  fo->set_domain("");
  fo->set_version(18);
  auto* sum = f->add_node();
  sum->set_op_type("Add");
  sum->add_input("a");
  sum->add_input("b");
  sum->add_output("s");
  auto* k = f->add_node();
  k->set_op_type("Constant");
  k->add_output("k");
  auto* ref = k->add_attribute();
  ref->set_name("value_float");
  ref->set_type(onnx::AttributeProto::FLOAT);
  ref->set_ref_attr_name("alpha");
  auto* mul = f->add_node();
  mul->set_op_type("Mul");
  mul->add_input("s");
  mul->add_input("k");
  mul->add_output("out");
  {  // default alpha = 2 in FunctionProto.attribute_proto (field 11), newer than our onnx.proto
    onnx::AttributeProto dflt;
    dflt.set_name("alpha");
    dflt.set_type(onnx::AttributeProto::FLOAT);
    dflt.set_f(2.0f);
    std::string payload = dflt.SerializeAsString();
    std::string field;
    field.push_back(char((11 << 3) | 2));
    field.push_back(char(payload.size()));  // < 128 bytes: one-byte varint
    field += payload;
    f->mutable_unknown_fields()->append(field);
  }
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {int64_t(4)});
  add_input(g, "z", 1, {int64_t(4)});
  auto* c1 = add_node(g, "Scaled", {"x", "z"}, {"y1"}, "call1");
  c1->set_domain("local");
  auto* c2 = add_node(g, "Scaled", {"y1", "z"}, {"y2"}, "call2");
  c2->set_domain("local");
  attr_float(c2, "alpha", 3.0f);
  add_output(g, "y1");
  add_output(g, "y2");

  auto graph = import(m);
  for (auto& n : graph->nodes()) EXPECT_TRUE(n->domain.empty()) << n->op_type;
  EXPECT_EQ(graph->num_nodes(), 4u);  // Add, Mul per call
  auto xv = random_floats(4, 13), zv = random_floats(4, 14);
  auto out = run(graph, {{"x", Tensor::from_vector(xv, {4})}, {"z", Tensor::from_vector(zv, {4})}});
  for (size_t i = 0; i < 4; ++i) {
    float y1 = (xv[i] + zv[i]) * 2.0f;
    EXPECT_EQ(out[0].data<float>()[i], y1);
    EXPECT_EQ(out[1].data<float>()[i], (y1 + zv[i]) * 3.0f);
  }
}

onnx::GraphProto branch(const std::string& name, const std::string& op, const std::string& outer) {
  onnx::GraphProto b;
  b.set_name(name);
  auto* n = b.add_node();
  n->set_op_type(op);
  n->add_input(outer);
  n->add_output(name + "_out");
  add_output(&b, name + "_out");
  return b;
}

TEST(OnnxImport, SubgraphsSeeOuterValues) {
  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "cond", 9, {});
  add_input(g, "x", 1, {int64_t(3)});
  add_node(g, "Abs", {"x"}, {"ax"}, "abs");
  auto* n = add_node(g, "If", {"cond"}, {"y"}, "if");
  *attr(n, "then_branch", onnx::AttributeProto::GRAPH)->mutable_g() = branch("then", "Neg", "ax");
  *attr(n, "else_branch", onnx::AttributeProto::GRAPH)->mutable_g() = branch("else", "Sqrt", "ax");
  add_output(g, "y");

  auto graph = import(m);
  const Node& node = *graph->nodes()[1];
  auto then_g = node.attr_graph("then_branch");
  ASSERT_TRUE(then_g);
  ASSERT_EQ(then_g->num_nodes(), 1u);
  EXPECT_EQ(then_g->nodes()[0]->inputs[0], graph->find_value("ax"));  // the outer Value itself

  auto xv = random_floats(3, 15);
  for (bool c : {true, false}) {
    auto y = floats(run(graph, {{"cond", Tensor::scalar(c)}, {"x", Tensor::from_vector(xv, {3})}})[0]);
    for (size_t i = 0; i < 3; ++i) EXPECT_FLOAT_EQ(y[i], c ? -std::fabs(xv[i]) : std::sqrt(std::fabs(xv[i])));
  }

  *n->mutable_attribute(1)->mutable_g() = branch("else", "Sqrt", "undefined_name");
  expect_error([&] { import(m); }, {"'if'", "else_branch", "undefined_name"});
}

// Same kind and value (tensors bitwise; subgraphs by node count).
bool attr_equal(const AttrValue& a, const AttrValue& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](auto& x) {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(b);
        if constexpr (std::is_same_v<T, Tensor>)
          return x.bitwise_equal(y);
        else if constexpr (std::is_same_v<T, std::shared_ptr<Graph>>)
          return x->num_nodes() == y->num_nodes();
        else
          return x == y;
      },
      a);
}

TEST(OnnxExport, RoundTripKeepsGraphAndResults) {
  auto m = new_model(17);
  auto* g = m.mutable_graph();
  add_input(g, "x", 1, {std::string("batch"), int64_t(8)});
  *g->add_initializer() = raw_tensor<float>("w", 1, random_floats(8 * 16, 16), {8, 16});
  *g->add_initializer() = raw_tensor<float>("bias", 1, random_floats(16, 17), {16});
  *g->add_initializer() = raw_tensor<int64_t>("axes", 7, {-1}, {1});
  add_node(g, "MatMul", {"x", "w"}, {"h"}, "mm");
  add_node(g, "Add", {"h", "bias"}, {"hb"}, "add");
  attr_int(add_node(g, "Softmax", {"hb"}, {"p"}, "softmax"), "axis", -1);
  auto* red = add_node(g, "ReduceSum", {"p", "axes"}, {"s"}, "sum");
  attr_int(red, "keepdims", 1);
  auto* cast = add_node(g, "Cast", {"s"}, {"sd"}, "cast");
  attr_int(cast, "to", 11);
  add_output(g, "p");
  add_output(g, "sd", 11);
  m.add_metadata_props()->set_key("k");
  m.mutable_metadata_props(0)->set_value("v");

  auto a = import(m);
  std::string bytes = export_onnx_bytes(*a);
  auto b = import_onnx_bytes(bytes, ".", "round trip", ImportOptions{false, true});

  auto same_graph = [](const Graph& a, const Graph& b) {
    ASSERT_EQ(a.num_nodes(), b.num_nodes());
    for (size_t i = 0; i < a.num_nodes(); ++i) {
      const Node& x = *a.nodes()[i];
      const Node& y = *b.nodes()[i];
      EXPECT_EQ(x.op_type, y.op_type);
      EXPECT_EQ(x.name, y.name);
      EXPECT_EQ(x.attrs.size(), y.attrs.size());
      for (auto& [k, v] : x.attrs) {
        ASSERT_TRUE(y.attrs.count(k)) << k;
        EXPECT_TRUE(attr_equal(v, y.attrs.at(k))) << x.name << "." << k;
      }
      ASSERT_EQ(x.inputs.size(), y.inputs.size());
      for (size_t j = 0; j < x.inputs.size(); ++j) {
        if (!x.inputs[j]) continue;
        EXPECT_EQ(x.inputs[j]->name, y.inputs[j]->name);
        if (x.inputs[j]->constant) EXPECT_TRUE(x.inputs[j]->constant->bitwise_equal(*y.inputs[j]->constant));
      }
    }
    ASSERT_EQ(a.inputs.size(), b.inputs.size());
    EXPECT_EQ(a.inputs[0]->type, b.inputs[0]->type);
    for (size_t i = 0; i < a.outputs.size(); ++i) EXPECT_EQ(a.outputs[i]->type, b.outputs[i]->type);
  };
  same_graph(*a, *b);
  EXPECT_EQ(b->metadata.at("k"), "v");
  EXPECT_GE(b->opsets.at(""), kMinExportOpset);

  auto xv = random_floats(3 * 8, 18);
  auto ra = run(a, {{"x", Tensor::from_vector(xv, {3, 8})}});
  auto rb = run(b, {{"x", Tensor::from_vector(xv, {3, 8})}});
  ASSERT_EQ(ra.size(), 2u);
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_TRUE(ra[i].bitwise_equal(rb[i]));
  EXPECT_EQ(ra[1].dtype(), DType::f64);

  // To a file with the weights in external data, 64-byte aligned.
  TempDir dir;
  fs::path path = dir.path / "m.onnx";
  ExportOptions eo;
  eo.external_data_threshold = 100;
  export_onnx(*a, path.string(), eo);
  // The data file is named by its content hash: m.onnx.<16 hex digits>.data.
  std::string data_name;
  for (auto& e : fs::directory_iterator(dir.path))
    if (e.path().filename() != "m.onnx") data_name = e.path().filename().string();
  ASSERT_TRUE(external_data_hash(data_name)) << data_name;
  ASSERT_EQ(data_name.rfind("m.onnx.", 0), 0u) << data_name;
  auto c = import_onnx(path.string(), ImportOptions{false, true});
  same_graph(*a, *c);
  const Tensor& w = *c->find_value("w")->constant;
  EXPECT_NE(mapped_file_of(w.raw()).find(data_name), std::string::npos);
  auto rc = run(c, {{"x", Tensor::from_vector(xv, {3, 8})}});
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_TRUE(ra[i].bitwise_equal(rc[i]));
  onnx::ModelProto written;
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(written.ParseFromIstream(&in));
  int external = 0;
  for (auto& t : written.graph().initializer()) {
    if (t.data_location() != onnx::TensorProto::EXTERNAL) continue;
    ++external;
    for (auto& e : t.external_data())
      if (e.key() == "offset") EXPECT_EQ(std::stoll(e.value()) % 64, 0);
  }
  EXPECT_EQ(external, 1);  // only w (512 bytes) is over the threshold
}

TEST(OnnxExport, SubgraphsRoundTrip) {
  auto m = new_model(13);
  auto* g = m.mutable_graph();
  add_input(g, "cond", 9, {});
  add_input(g, "x", 1, {int64_t(3)});
  add_node(g, "Abs", {"x"}, {"ax"}, "abs");
  auto* n = add_node(g, "If", {"cond"}, {"y"}, "if");
  *attr(n, "then_branch", onnx::AttributeProto::GRAPH)->mutable_g() = branch("then", "Neg", "ax");
  *attr(n, "else_branch", onnx::AttributeProto::GRAPH)->mutable_g() = branch("else", "Sqrt", "ax");
  add_output(g, "y");
  auto a = import(m);
  auto b = import_onnx_bytes(export_onnx_bytes(*a), ".", "round trip", ImportOptions{false, true});
  auto xv = random_floats(3, 19);
  for (bool c : {true, false}) {
    std::map<std::string, Tensor> in = {{"cond", Tensor::scalar(c)}, {"x", Tensor::from_vector(xv, {3})}};
    EXPECT_TRUE(run(a, in)[0].bitwise_equal(run(b, in)[0]));
  }
}

}  // namespace

namespace {

// A real exported LM (tests/models): import, export, import again; the two
// graphs give bitwise identical logits.
TEST(OnnxExport, ExportedLanguageModelRoundTrips) {
  std::string path = std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not found";
  auto a = import_onnx(path);
  auto b = import_onnx_bytes(export_onnx_bytes(*a), ".", "re-imported gpt2");
  EXPECT_EQ(a->num_nodes(), b->num_nodes());
  std::mt19937 rng(22);
  std::map<std::string, Tensor> in;
  for (Value* v : a->inputs) {
    ASSERT_EQ(v->type.dtype, DType::i64) << v->name;
    std::vector<int64_t> vals(8);
    for (size_t i = 0; i < vals.size(); ++i)
      vals[i] = v->name.find("mask") != std::string::npos       ? 1
                : v->name.find("position") != std::string::npos ? int64_t(i % 4)
                                                                : int64_t(rng() % 100);
    in[v->name] = Tensor::from_vector<int64_t>(vals, {2, 4});
  }
  auto ra = run(a, in);
  auto rb = run(b, in);
  ASSERT_EQ(ra.size(), rb.size());
  for (size_t i = 0; i < ra.size(); ++i) EXPECT_TRUE(ra[i].bitwise_equal(rb[i])) << i;
}

}  // namespace
