// The cpu backend's fast kernels of the codebook.grad ops
// (backends/cpu/grad_kernels.cpp) and of Transpose, Slice, Split and Concat
// (backends/cpu/layout_kernels.cpp) against the reference backend on random
// nonzero inputs of many shapes (odd sizes, sizes that take the threaded and
// tiled paths), on 1, 2 and 3 threads. Data-movement results must equal the
// reference bit for bit; float results agree to 1e-5 relative, and every
// result is bitwise the same for any thread count. StridedCopy, the copy
// engine of the data-movement kernels, is also checked directly: its work
// units, cut anywhere, copy what one element loop copies.
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <optional>
#include <random>
#include <sstream>

#include "backends/backend.h"
#include "backends/cpu/layout_kernels.h"
#include "support/error.h"
#include "ir/graph.h"
#include "ir/ops/grad.h"
#include "ir/verifier.h"
#include "runtime/executable.h"

using namespace cb;

namespace {

using Dims = std::vector<int64_t>;
using Attrs = std::map<std::string, AttrValue>;
using Inputs = std::vector<std::optional<Tensor>>;

std::mt19937& rng() {
  static std::mt19937 r(20240611);
  return r;
}

// Uniform in [lo, hi] with a random sign (never zero for lo > 0); integer
// dtypes get small nonzero integers, bool random values.
Tensor random_tensor(DType dt, Dims dims, double lo = 0.1, double hi = 2.0, bool signs = true) {
  Tensor t = Tensor::empty(dt, dims);
  std::uniform_real_distribution<double> mag(lo, hi);
  std::bernoulli_distribution negative(signs ? 0.5 : 0.0);
  std::uniform_int_distribution<int> small(1, 1000);
  dtype_dispatch(dt, [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) {
      double v = dtype_is_float(dt) ? mag(rng()) : double(small(rng()) % (dt == DType::boolean ? 2 : 1000));
      if (negative(rng()) && dt != DType::boolean) v = -v;
      p[i] = from_double<T>(v);
    }
  });
  return t;
}

Tensor ints(std::vector<int64_t> v) { return Tensor::from_vector<int64_t>(v, {int64_t(v.size())}); }

// Runs one node on `backend`; outputs[i] false omits output i. Returns the
// present outputs in order.
std::vector<Tensor> run_node(const std::string& backend, const std::string& op, const std::string& domain,
                             const Inputs& inputs, const Attrs& attrs, const std::vector<bool>& outputs,
                             int threads) {
  auto g = std::make_shared<Graph>();
  std::vector<Value*> ins;
  std::map<std::string, Tensor> feed;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!inputs[i]) {
      ins.push_back(nullptr);
      continue;
    }
    const std::string name = "in" + std::to_string(i);
    ins.push_back(g->add_input(name, {inputs[i]->dtype(), Shape::of(inputs[i]->dims())}));
    feed[name] = *inputs[i];
  }
  std::vector<Value*> outs, present;
  for (size_t i = 0; i < outputs.size(); ++i) {
    outs.push_back(outputs[i] ? g->add_value("out" + std::to_string(i)) : nullptr);
    if (outputs[i]) present.push_back(outs.back());
  }
  g->add_node(op, ins, outs, attrs, "node", domain);
  g->outputs = present;
  infer_types(*g);
  CompileOptions opts;
  opts.num_threads = threads;
  return Executable::compile(g, *make_backend(backend), opts)->run(feed);
}

// |a - b| <= rtol * (|b| + rms(b)) element by element: relative, with the
// tensor's scale as the floor for elements that cancel to near zero.
void expect_close(const Tensor& a, const Tensor& b, double rtol, const std::string& what) {
  ASSERT_EQ(a.dims(), b.dims()) << what;
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  double sq = 0;
  for (int64_t i = 0; i < b.numel(); ++i) sq += b.get_double(i) * b.get_double(i);
  const double rms = b.numel() ? std::sqrt(sq / double(b.numel())) : 0.0;
  int bad = 0;
  for (int64_t i = 0; i < b.numel() && bad < 5; ++i) {
    const double x = a.get_double(i), y = b.get_double(i);
    if (!(std::fabs(x - y) <= rtol * (std::fabs(y) + rms))) {
      ADD_FAILURE() << what << ": element " << i << " is " << x << ", reference " << y << " (rms " << rms << ")";
      ++bad;
    }
  }
}

// Runs the node on the reference backend and on cpu with 1, 2 and 3
// threads: cpu outputs equal each other bit for bit, and the reference
// exactly (rtol 0) or within rtol.
void check_node(const std::string& op, const std::string& domain, const Inputs& inputs, const Attrs& attrs,
                const std::vector<bool>& outputs, double rtol, const std::string& label) {
  SCOPED_TRACE(op + " " + label);
  const std::vector<Tensor> ref = run_node("reference", op, domain, inputs, attrs, outputs, 1);
  std::vector<Tensor> first;
  for (int threads : {1, 2, 3}) {
    const std::vector<Tensor> got = run_node("cpu", op, domain, inputs, attrs, outputs, threads);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const std::string what = "output " + std::to_string(i) + " on " + std::to_string(threads) + " threads";
      if (rtol == 0)
        EXPECT_TRUE(got[i].bitwise_equal(ref[i])) << what << " differs from the reference";
      else
        expect_close(got[i], ref[i], rtol, what);
      if (!first.empty()) {
        EXPECT_TRUE(got[i].bitwise_equal(first[i])) << what << " differs from 1 thread";
      }
    }
    if (first.empty()) first = got;
  }
}

constexpr double kRtol = 1e-5;

// ---------------------------------------------------------------- SoftmaxGrad

TEST(CpuGradKernels, SoftmaxGrad) {
  struct Case { Dims dims; int64_t axis; };
  for (const Case& c : std::vector<Case>{{{5, 7}, -1},
                                         {{3, 130}, -1},
                                         {{4, 5, 6}, 1},
                                         {{2, 3, 70, 5}, 2},
                                         {{3, 9, 100}, 1},
                                         {{1, 1}, 0},
                                         {{64, 4, 9, 33}, -1},
                                         {{16, 127, 11}, -1}})
    for (int64_t log : {0, 1}) {
      // y: probabilities, or log-probabilities (exp(y) stays small).
      Tensor y = log ? random_tensor(DType::f32, c.dims, 0.05, 6.0, false)
                     : random_tensor(DType::f32, c.dims, 0.01, 1.0, false);
      if (log)
        for (int64_t i = 0; i < y.numel(); ++i) y.data<float>()[i] = -y.data<float>()[i];
      check_node("SoftmaxGrad", kGradDomain, {random_tensor(DType::f32, c.dims), y}, {{"axis", c.axis}, {"log", log}},
                 {true}, kRtol, dims_str(c.dims) + " axis " + std::to_string(c.axis) + " log " + std::to_string(log));
    }
}

// ----------------------------------------------------- LayerNormalizationGrad

TEST(CpuGradKernels, LayerNormalizationGrad) {
  struct Case { Dims x; int64_t axis; Dims scale; };
  const std::vector<Case> cases = {{{7, 13}, -1, {13}},        {{3, 5, 64}, -1, {64}},
                                   {{4, 6, 10}, 1, {6, 10}},   {{4, 6, 10}, 1, {10}},
                                   {{4, 6, 10}, 1, {1, 1, 10}}, {{100, 128}, -1, {128}},
                                   {{2, 1, 33}, 2, {33}},      {{67, 3, 31}, -1, {31}},
                                   {{1, 5}, -1, {5}},          {{16, 64, 96}, -1, {96}}};
  for (const Case& c : cases) {
    Inputs in = {random_tensor(DType::f32, c.x), random_tensor(DType::f32, c.x, 0.1, 3.0),
                 random_tensor(DType::f32, c.scale, 0.5, 1.5)};
    const Attrs attrs = {{"axis", c.axis}, {"epsilon", 1e-5f}};
    const std::string label = dims_str(c.x) + " axis " + std::to_string(c.axis) + " scale " + dims_str(c.scale);
    check_node("LayerNormalizationGrad", kGradDomain, in, attrs, {true, true, true}, kRtol, label);
    check_node("LayerNormalizationGrad", kGradDomain, in, attrs, {true}, kRtol, label + " dx only");
    check_node("LayerNormalizationGrad", kGradDomain, in, attrs, {false, true, true}, kRtol, label + " no dx");
    check_node("LayerNormalizationGrad", kGradDomain, in, attrs, {false, false, true}, kRtol, label + " dbias only");
  }
}

// ----------------------------------------------------------------- GatherGrad

TEST(CpuGradKernels, GatherGrad) {
  struct Case { Dims data; Dims idx; int64_t axis; DType idx_type; };
  const std::vector<Case> cases = {{{11, 128}, {64, 37}, 0, DType::i64},  {{5, 7, 9}, {4}, 1, DType::i64},
                                   {{5, 7, 9}, {3, 2}, 2, DType::i32},    {{3, 200}, {50}, 0, DType::i64},
                                   {{6, 5, 130}, {9}, 1, DType::i32},     {{50, 64}, {64, 128}, 0, DType::i64},
                                   {{4, 3}, {}, -1, DType::i64}};
  for (const Case& c : cases) {
    const int64_t r = int64_t(c.data.size()), axis = c.axis < 0 ? c.axis + r : c.axis, A = c.data[size_t(axis)];
    Tensor idx = Tensor::empty(c.idx_type, c.idx);
    std::uniform_int_distribution<int64_t> pick(-A, A - 1);  // negative ones count from the end; repeats add
    for (int64_t i = 0; i < idx.numel(); ++i) {
      if (c.idx_type == DType::i64) idx.data<int64_t>()[i] = pick(rng());
      else idx.data<int32_t>()[i] = int32_t(pick(rng()));
    }
    Dims dy(c.data.begin(), c.data.begin() + axis);
    dy.insert(dy.end(), c.idx.begin(), c.idx.end());
    dy.insert(dy.end(), c.data.begin() + axis + 1, c.data.end());
    check_node("GatherGrad", kGradDomain, {random_tensor(DType::f32, dy), idx, ints(c.data)}, {{"axis", c.axis}},
               {true}, kRtol, dims_str(c.data) + " by " + dims_str(c.idx) + " axis " + std::to_string(c.axis));
  }
}

TEST(CpuGradKernels, GatherGradIndexOutOfRange) {
  Tensor idx = ints({0, 3, 1});
  try {
    run_node("cpu", "GatherGrad", kGradDomain, {random_tensor(DType::f32, {3, 4}), idx, ints({3, 4})},
             {{"axis", int64_t(0)}}, {true}, 2);
    ADD_FAILURE() << "expected a cb::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("node"), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------ SliceGrad

// A Slice of a tensor of `dims` by starts, ends and optional axes and steps.
struct SliceSpec {
  Dims dims;
  std::vector<int64_t> starts, ends;
  std::optional<std::vector<int64_t>> axes, steps;
};

// Slice's inputs after the data: starts, ends, then axes and steps when given.
Inputs slice_args(const SliceSpec& c) {
  Inputs args;
  args.push_back(ints(c.starts));
  args.push_back(ints(c.ends));
  if (c.axes || c.steps) args.push_back(c.axes ? std::optional<Tensor>(ints(*c.axes)) : std::nullopt);
  if (c.steps) args.push_back(ints(*c.steps));
  return args;
}

// The dims Slice(zeros(shape), ...) produces, from the reference backend.
Dims slice_dims(const Dims& shape, const Inputs& args) {
  Inputs in;
  in.push_back(Tensor::zeros(DType::f32, shape));
  for (const std::optional<Tensor>& a : args) in.push_back(a);
  return run_node("reference", "Slice", "", in, {}, {true}, 1)[0].dims();
}

TEST(CpuGradKernels, SliceGrad) {
  const int64_t kEnd = INT64_MAX;
  const std::vector<SliceSpec> cases = {
      {{64, 128, 11}, {0}, {-1}, std::vector<int64_t>{1}, std::nullopt},
      {{6, 4, 5, 32}, {8}, {kEnd}, std::vector<int64_t>{3}, std::nullopt},
      {{6, 4, 5, 8}, {4}, {8}, std::vector<int64_t>{3}, std::vector<int64_t>{1}},
      {{64, 4, 33, 8}, {0}, {4}, std::vector<int64_t>{-1}, std::nullopt},
      {{9, 10}, {1}, {8}, std::nullopt, std::nullopt},
      {{9, 10, 7}, {1, 2}, {kEnd, 9}, std::vector<int64_t>{0, 2}, std::vector<int64_t>{2, 3}},
      {{9, 10, 7}, {-1, 6}, {-100, 0}, std::vector<int64_t>{1, 2}, std::vector<int64_t>{-1, -2}},
      {{300, 301}, {5}, {290}, std::vector<int64_t>{0}, std::nullopt},
      {{3, 1, 40}, {0, 3}, {1, 37}, std::vector<int64_t>{1, 2}, std::nullopt},
      {{5, 6}, {0}, {kEnd}, std::vector<int64_t>{1}, std::nullopt},
      {{5, 6}, {2}, {2}, std::vector<int64_t>{1}, std::nullopt}};
  for (const SliceSpec& c : cases) {
    const Dims dy = slice_dims(c.dims, slice_args(c));
    for (DType dt : {DType::f32, DType::f64, DType::f16}) {
      Inputs in;
      in.push_back(random_tensor(dt, dy));
      in.push_back(ints(c.dims));
      for (const std::optional<Tensor>& a : slice_args(c)) in.push_back(a);
      check_node("SliceGrad", kGradDomain, in, {}, {true}, 0,
                 dims_str(dy) + " into " + dims_str(c.dims) + " " + std::string(dtype_name(dt)));
    }
  }
}

// --------------------------------------------------------------- CodebookGrad

TEST(CpuGradKernels, CodebookGrad) {
  struct Case { int64_t B, T, G, K, Dg, k; };
  const std::vector<Case> cases = {{2, 5, 1, 7, 16, 1},  {3, 33, 4, 50, 32, 1}, {2, 17, 2, 9, 12, 3},
                                   {1, 1, 1, 3, 5, 2},   {4, 64, 1, 200, 128, 1}, {2, 40, 3, 5, 7, 4}};
  const std::vector<std::string> losses = {"base", "aeloss", "fullaeloss", "vqvae-0.5", "fullaeloss-0.1"};
  const std::vector<std::vector<bool>> output_sets = {
      {true, true, true, true}, {true}, {false, true}, {true, false, true, true}, {false, false, false, true}};
  for (const Case& c : cases) {
    const int64_t D = c.G * c.Dg;
    Tensor ids = Tensor::empty(DType::i64, {c.B, c.T, c.G, c.k});
    std::uniform_int_distribution<int64_t> code(0, c.K - 1);
    std::bernoulli_distribution blocked(0.1);
    for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = blocked(rng()) ? -1 : code(rng());
    Inputs in = {random_tensor(DType::f32, {c.B, c.T, D}), random_tensor(DType::f32, {c.B, c.T, D}),
                 random_tensor(DType::f32, {c.G, c.K, c.Dg}), random_tensor(DType::f32, {c.G, c.Dg}, 0.5, 1.5),
                 random_tensor(DType::f32, {c.G, c.Dg}, 0.01, 0.3), ids};
    for (const std::string& loss : losses)
      for (const std::vector<bool>& outs : output_sets) {
        std::ostringstream label;
        label << "B" << c.B << " T" << c.T << " G" << c.G << " K" << c.K << " Dg" << c.Dg << " k" << c.k << " "
              << loss << " outputs";
        for (bool o : outs) label << (o ? " 1" : " 0");
        check_node("CodebookGrad", kGradDomain, in, {{"k", c.k}, {"epsilon", 1e-5f}, {"loss", loss}}, outs, kRtol,
                   label.str());
      }
  }
}

// Big enough that the code-gradient sums are threaded too (from
// kParallelCopyBytes of contributions on).
TEST(CpuGradKernels, CodebookGradLarge) {
  const int64_t B = 8, T = 512, G = 8, K = 64, Dg = 128, D = G * Dg;
  ASSERT_GE(size_t(B * T * D) * sizeof(float), kParallelCopyBytes);
  Tensor ids = Tensor::empty(DType::i64, {B, T, G, 2});
  std::uniform_int_distribution<int64_t> code(-1, K - 1);  // some slots blocked
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = code(rng());
  check_node("CodebookGrad", kGradDomain,
             {random_tensor(DType::f32, {B, T, D}), random_tensor(DType::f32, {B, T, D}),
              random_tensor(DType::f32, {G, K, Dg}), random_tensor(DType::f32, {G, Dg}, 0.5, 1.5),
              random_tensor(DType::f32, {G, Dg}, 0.01, 0.3), ids},
             {{"k", int64_t(2)}, {"loss", std::string("fullaeloss")}}, {true, true, true, true}, kRtol, "large");
}

TEST(CpuGradKernels, CodebookGradBadId) {
  Tensor ids = Tensor::from_vector<int64_t>({0, 7}, {1, 2, 1, 1});
  try {
    run_node("cpu", "CodebookGrad", kGradDomain,
             {random_tensor(DType::f32, {1, 2, 4}), random_tensor(DType::f32, {1, 2, 4}),
              random_tensor(DType::f32, {1, 5, 4}), random_tensor(DType::f32, {1, 4}),
              random_tensor(DType::f32, {1, 4}), ids},
             {{"k", int64_t(1)}}, {true, true}, 2);
    ADD_FAILURE() << "expected a cb::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("id 7"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("node"), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------ Transpose

TEST(CpuLayoutKernels, Transpose) {
  struct Case { Dims dims; std::vector<int64_t> perm; };
  const std::vector<Case> cases = {{{64, 4, 9, 33}, {0, 1, 3, 2}}, {{8, 4, 130, 33}, {0, 1, 3, 2}},
                                   {{8, 33, 4, 24}, {0, 2, 1, 3}}, {{6, 4, 33, 24}, {0, 2, 1, 3}},
                                   {{37, 53}, {1, 0}},             {{512, 129}, {1, 0}},
                                   {{5, 6, 7, 8}, {3, 1, 0, 2}},   {{5, 6, 7, 8}, {}},
                                   {{3, 1, 9}, {2, 1, 0}},         {{1, 1, 1}, {0, 2, 1}},
                                   {{4, 0, 3}, {2, 0, 1}},         {{2, 3, 2}, {1, 2, 0}},
                                   {{16, 3, 16}, {2, 1, 0}},       {{7}, {0}}};
  for (const Case& c : cases)
    for (DType dt : {DType::f32, DType::i64, DType::f16, DType::u8}) {
      Attrs attrs;
      if (!c.perm.empty()) attrs["perm"] = c.perm;
      check_node("Transpose", "", {random_tensor(dt, c.dims)}, attrs, {true}, 0,
                 dims_str(c.dims) + " perm " + dims_str(c.perm) + " " + std::string(dtype_name(dt)));
    }
}

// ------------------------------------------------------------ Slice, Split, Concat

TEST(CpuLayoutKernels, Slice) {
  const int64_t kEnd = INT64_MAX;
  const std::vector<SliceSpec> cases = {
      {{64, 4, 33, 32}, {8}, {kEnd}, std::vector<int64_t>{3}, std::nullopt},
      {{64, 4, 33, 8}, {0}, {4}, std::vector<int64_t>{3}, std::nullopt},
      {{64, 128, 11}, {0}, {-1}, std::vector<int64_t>{1}, std::nullopt},
      {{64, 128}, {1}, {kEnd}, std::vector<int64_t>{1}, std::vector<int64_t>{1}},
      {{9, 10}, {1}, {8}, std::nullopt, std::nullopt},
      {{9, 10, 7}, {1, 2}, {kEnd, 9}, std::vector<int64_t>{0, 2}, std::vector<int64_t>{2, 3}},
      {{9, 10, 7}, {-1, 6}, {-100, 0}, std::vector<int64_t>{1, 2}, std::vector<int64_t>{-1, -2}},
      {{300, 301}, {5, 3}, {290, 300}, std::vector<int64_t>{0, 1}, std::nullopt},
      {{5, 6}, {2}, {2}, std::vector<int64_t>{1}, std::nullopt},
      {{5, 6}, {0}, {kEnd}, std::vector<int64_t>{0}, std::nullopt}};
  for (const SliceSpec& c : cases)
    for (DType dt : {DType::f32, DType::i64, DType::f16}) {
      Inputs in;
      in.push_back(random_tensor(dt, c.dims));
      for (const std::optional<Tensor>& a : slice_args(c)) in.push_back(a);
      check_node("Slice", "", in, {}, {true}, 0, dims_str(c.dims) + " " + std::string(dtype_name(dt)));
    }
}

TEST(CpuLayoutKernels, Split) {
  struct Case { Dims dims; int64_t axis; std::optional<std::vector<int64_t>> sizes; size_t outputs; };
  const std::vector<Case> cases = {{{6, 4, 33, 96}, 3, std::vector<int64_t>{32, 32, 32}, 3},
                                   {{7, 10}, 1, std::vector<int64_t>{3, 0, 7}, 3},
                                   {{10, 7}, 0, std::nullopt, 3},
                                   {{2, 3, 5}, -1, std::nullopt, 2},
                                   {{400, 300}, 0, std::vector<int64_t>{1, 399}, 2}};
  for (const Case& c : cases)
    for (DType dt : {DType::f32, DType::i64}) {
      Inputs in = {random_tensor(dt, c.dims)};
      if (c.sizes) in.push_back(ints(*c.sizes));
      Attrs attrs = {{"axis", c.axis}};
      if (!c.sizes) attrs["num_outputs"] = int64_t(c.outputs);
      check_node("Split", "", in, attrs, std::vector<bool>(c.outputs, true), 0,
                 dims_str(c.dims) + " axis " + std::to_string(c.axis) + " " + std::string(dtype_name(dt)));
    }
}

TEST(CpuLayoutKernels, Concat) {
  struct Case { std::vector<Dims> inputs; int64_t axis; };
  const std::vector<Case> cases = {{{{64, 4, 33, 4}, {64, 4, 33, 4}}, 3},
                                   {{{6, 4, 33, 32}, {6, 4, 33, 32}, {6, 4, 33, 32}}, -1},
                                   {{{2}, {1}}, 0},
                                   {{{3, 5}, {0, 5}, {4, 5}}, 0},
                                   {{{3, 5, 2}, {3, 1, 2}, {3, 7, 2}}, 1},
                                   {{{300, 200}, {300, 100}}, 1}};
  for (const Case& c : cases)
    for (DType dt : {DType::f32, DType::i64}) {
      Inputs in;
      for (const Dims& d : c.inputs) in.push_back(random_tensor(dt, d));
      check_node("Concat", "", in, {{"axis", c.axis}}, {true}, 0,
                 std::to_string(c.inputs.size()) + " inputs axis " + std::to_string(c.axis) + " " +
                     std::string(dtype_name(dt)));
    }
}

// Copies (and GatherGrad's scatter-add) big enough to be threaded: from
// kParallelCopyBytes on.
TEST(CpuLayoutKernels, LargeCopies) {
  const Dims big = {2048, 2100};  // 17 MB of f32
  ASSERT_GE(size_t(big[0] * big[1]) * sizeof(float), kParallelCopyBytes);
  const Tensor x = random_tensor(DType::f32, big);
  check_node("Transpose", "", {x}, {{"perm", std::vector<int64_t>{1, 0}}}, {true}, 0, "2-D");
  check_node("Transpose", "", {random_tensor(DType::f32, {64, 128, 4, 140})},
             {{"perm", std::vector<int64_t>{0, 2, 1, 3}}}, {true}, 0, "blocks");
  check_node("Slice", "", {x, ints({3}), ints({2090}), ints({1})}, {}, {true}, 0, "columns");
  check_node("Split", "", {x, ints({1000, 1100})}, {{"axis", int64_t(1)}}, {true, true}, 0, "columns");
  check_node("Concat", "", {x, random_tensor(DType::f32, {2048, 7})}, {{"axis", int64_t(1)}}, {true}, 0, "columns");
  check_node("SliceGrad", kGradDomain, {random_tensor(DType::f32, {2048, 2090}), ints(big), ints({3}), ints({2093}),
             ints({1})}, {}, {true}, 0, "columns");
  Tensor idx = Tensor::empty(DType::i64, {2100});
  for (int64_t i = 0; i < idx.numel(); ++i) idx.data<int64_t>()[i] = (i * 7919) % 50 - 25;
  check_node("GatherGrad", kGradDomain, {random_tensor(DType::f32, {2100, 2048}), idx, ints({50, 2048})},
             {{"axis", int64_t(0)}}, {true}, kRtol, "rows");
}

// Naive element-by-element copy: the oracle of StridedCopy.
void naive_copy(const float* src, const Dims& dims, const Dims& src_strides, const Dims& dst_strides, float* dst) {
  int64_t total = 1;
  for (int64_t d : dims) total *= d;
  Dims idx(dims.size(), 0);
  for (int64_t n = 0; n < total; ++n) {
    int64_t s = 0, d = 0;
    for (size_t k = 0; k < dims.size(); ++k) {
      s += idx[k] * src_strides[k];
      d += idx[k] * dst_strides[k];
    }
    dst[d] = src[s];
    for (size_t k = dims.size(); k-- > 0;) {
      if (++idx[k] < dims[k]) break;
      idx[k] = 0;
    }
  }
}

TEST(CpuLayoutKernels, StridedCopyUnitsCutAnywhere) {
  struct Case { Dims dims, src_strides, dst_strides; int64_t src_offset; };
  const std::vector<Case> cases = {
      {{6, 5, 7}, {35, 7, 1}, {35, 7, 1}, 0},                       // one run
      {{6, 5, 7}, {70, 14, 1}, {35, 7, 1}, 3},                      // runs of 7
      {{5, 6, 9}, {54, 1, 6}, {54, 9, 1}, 0},                       // 2-D transposes in tiles
      {{4, 37, 19}, {703, 1, 37}, {703, 19, 1}, 0},                 // tiles with edges
      {{3, 4, 5}, {1, 3, 12}, {20, 5, 1}, 0},                       // reversed: elements
      {{7, 6}, {-6, 1}, {6, 1}, 36},                                // negative stride
      {{5, 9}, {0, 1}, {9, 1}, 0},                                  // broadcast rows
      {{2, 40000}, {80000, 2}, {40000, 1}, 1},                      // strided elements
      {{3, 50000}, {50000, 1}, {50000, 1}, 0}};                     // runs cut into pieces
  std::mt19937 r(7);
  for (const Case& c : cases) {
    int64_t total = 1, src_extent = c.src_offset + 1, dst_extent = 1;
    for (size_t k = 0; k < c.dims.size(); ++k) {
      total *= c.dims[k];
      src_extent += (c.dims[k] - 1) * std::abs(c.src_strides[k]);
      dst_extent += (c.dims[k] - 1) * c.dst_strides[k];
    }
    std::vector<float> src(static_cast<size_t>(src_extent));
    for (size_t i = 0; i < src.size(); ++i) src[i] = float(i) + 0.5f;
    std::vector<float> want(static_cast<size_t>(dst_extent), -1.0f), got = want;
    naive_copy(src.data() + c.src_offset, c.dims, c.src_strides, c.dst_strides, want.data());
    const StridedCopy copy(c.dims, c.src_strides, c.dst_strides, sizeof(float));
    EXPECT_EQ(copy.bytes(), size_t(total) * sizeof(float));
    // Cut the units at random points and copy the pieces in reverse order.
    std::vector<int64_t> cuts = {0, copy.units()};
    std::uniform_int_distribution<int64_t> at(0, copy.units());
    for (int i = 0; i < 5; ++i) cuts.push_back(at(r));
    std::sort(cuts.begin(), cuts.end());
    const auto* s = reinterpret_cast<const uint8_t*>(src.data() + c.src_offset);
    for (size_t i = cuts.size() - 1; i-- > 0;)
      copy.run_units(s, reinterpret_cast<uint8_t*>(got.data()), cuts[i], cuts[i + 1]);
    EXPECT_EQ(got, want) << dims_str(c.dims) << " from strides " << dims_str(c.src_strides);
    std::vector<float> threaded(want.size(), -1.0f);
    copy.run(s, reinterpret_cast<uint8_t*>(threaded.data()), 3);
    EXPECT_EQ(threaded, want) << dims_str(c.dims) << " on 3 threads";
  }
}

}  // namespace
