// Tests of the tensor and shape ops (ir/ops/tensor.cpp schemas and the
// reference kernels in backends/reference/tensor*.cpp). Each op runs in a small
// graph compiled for the reference backend, twice: once with every input a
// graph input (shapes inferred at run time) and once with the non-data inputs
// as constants (inferred at compile time); results are compared with
// computations written here, index by index. Symbolic shape inference is
// checked through infer_types on graphs with named dims.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <functional>
#include <numeric>
#include <optional>
#include <random>

#include "backends/backend.h"
#include "ir/graph.h"
#include "ir/verifier.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::random_tensor;

namespace {

using Dims = std::vector<int64_t>;
using Attrs = std::map<std::string, AttrValue>;
using Inputs = std::vector<std::optional<Tensor>>;

std::mt19937& rng() {
  static std::mt19937 r(1234);
  return r;
}

// Random nonzero values of any dtype: floats of magnitude 0.5..4, integers
// 1..100 (signed ones with random signs), bools random.
const test::Values kRandom = test::magnitudes(0.5, 4.0).ints(1, 100);

Tensor ints(std::vector<int64_t> v, Dims dims = {-1}) {
  if (dims == Dims{-1}) dims = {int64_t(v.size())};
  return Tensor::from_vector<int64_t>(v, dims);
}
Tensor floats(std::vector<float> v, Dims dims = {-1}) {
  if (dims == Dims{-1}) dims = {int64_t(v.size())};
  return Tensor::from_vector<float>(v, dims);
}

// Builds a one-node graph and runs it on the reference backend. With
// `constants`, inputs 1.. become constants (input 0 stays a graph input).
std::vector<Tensor> run_once(const std::string& op, const Inputs& inputs, const Attrs& attrs, size_t nout,
                             bool constants) {
  std::vector<test::NodeInput> in;
  for (size_t i = 0; i < inputs.size(); ++i)
    in.push_back(inputs[i] ? test::NodeInput(*inputs[i], constants && i > 0) : test::NodeInput());
  return test::run_node("reference", op, "", in, attrs, std::vector<bool>(nout, true));
}

// Runs both ways and checks they agree bit for bit.
std::vector<Tensor> run_op(const std::string& op, const Inputs& inputs, const Attrs& attrs = {}, size_t nout = 1) {
  std::vector<Tensor> a = run_once(op, inputs, attrs, nout, false);
  std::vector<Tensor> b = run_once(op, inputs, attrs, nout, true);
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    EXPECT_TRUE(a[i].bitwise_equal(b[i])) << op << " output " << i << ": " << a[i].str() << " vs " << b[i].str();
  return a;
}

Tensor run1(const std::string& op, const Inputs& inputs, const Attrs& attrs = {}) {
  return run_op(op, inputs, attrs)[0];
}

// Expects that building/compiling/running the op throws cb::Error mentioning `needle`.
void expect_error(const std::string& op, const Inputs& inputs, const Attrs& attrs, const std::string& needle,
                  bool constants = false, size_t nout = 1) {
  try {
    run_once(op, inputs, attrs, nout, constants);
    ADD_FAILURE() << op << ": expected a cb::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("node"), std::string::npos) << "error does not name the node: " << e.what();
  }
}

Dims unravel(int64_t flat, const Dims& dims) {
  Dims idx(dims.size());
  for (int64_t d = int64_t(dims.size()) - 1; d >= 0; --d) {
    idx[size_t(d)] = flat % dims[size_t(d)];
    flat /= dims[size_t(d)];
  }
  return idx;
}
int64_t ravel(const Dims& idx, const Dims& dims) {
  int64_t f = 0;
  for (size_t d = 0; d < dims.size(); ++d) f = f * dims[d] + idx[d];
  return f;
}

// Expected tensor whose element at each output index comes from src at
// source_of(index) (a flat source index).
Tensor gather_expected(const Tensor& src, const Dims& out_dims, const std::function<int64_t(const Dims&)>& source_of) {
  Tensor e = Tensor::empty(src.dtype(), out_dims);
  size_t es = dtype_size(src.dtype());
  for (int64_t f = 0; f < e.numel(); ++f) {
    int64_t s = source_of(unravel(f, out_dims));
    std::memcpy(static_cast<uint8_t*>(e.raw()) + f * es, static_cast<uint8_t*>(src.raw()) + s * es, es);
  }
  return e;
}

void expect_same(const Tensor& got, const Tensor& want, const std::string& what = "") {
  EXPECT_EQ(got.dtype(), want.dtype()) << what;
  EXPECT_EQ(got.dims(), want.dims()) << what;
  EXPECT_TRUE(got.bitwise_equal(want)) << what << ": got " << got.str(16) << " want " << want.str(16);
}

void expect_values(const Tensor& got, const std::vector<double>& want, const Dims& dims) {
  EXPECT_EQ(got.dims(), dims);
  ASSERT_EQ(got.numel(), int64_t(want.size())) << got.str();
  for (size_t i = 0; i < want.size(); ++i) EXPECT_DOUBLE_EQ(got.get_double(int64_t(i)), want[i]) << "element " << i;
}

const DType kAllTypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64, DType::i64, DType::i32,    DType::i16,
                           DType::i8,  DType::u64, DType::u32,  DType::u16, DType::u8,  DType::boolean};

// ------------------------------------------------------------- reshaping

TEST(Reshape, ZeroCopiesDimAndMinusOneIsInferred) {
  Tensor x = random_tensor(DType::f32, {2, 3, 4}, kRandom, rng());
  Tensor y = run1("Reshape", {x, ints({0, -1, 2})});
  EXPECT_EQ(y.dims(), (Dims{2, 6, 2}));
  EXPECT_EQ(y.raw(), x.raw()) << "Reshape should return a view";
  EXPECT_TRUE(y.reshaped({2, 3, 4}).bitwise_equal(x));
  EXPECT_EQ(run1("Reshape", {x, ints({-1})}).dims(), (Dims{24}));
  EXPECT_EQ(run1("Reshape", {x, ints({0, 0, 1, 4})}).dims(), (Dims{2, 3, 1, 4}));
  EXPECT_EQ(run1("Reshape", {random_tensor(DType::f32, {1}, kRandom, rng()), ints({}, {0})}).dims(), Dims{});
}

TEST(Reshape, AllowZeroKeepsZeroDims) {
  Tensor x = random_tensor(DType::f32, {0, 3, 4}, kRandom, rng());
  EXPECT_EQ(run1("Reshape", {x, ints({3, 4, 0})}, {{"allowzero", int64_t(1)}}).dims(), (Dims{3, 4, 0}));
  // Without allowzero the 0 copies input dim 2.
  Tensor z = random_tensor(DType::f32, {2, 3, 4}, kRandom, rng());
  EXPECT_EQ(run1("Reshape", {z, ints({4, 0, -1})}).dims(), (Dims{4, 3, 2}));
  expect_error("Reshape", {x, ints({0, -1})}, {{"allowzero", int64_t(1)}}, "-1");
}

TEST(Reshape, ErrorsNameShapesAndValue) {
  Tensor x = random_tensor(DType::f32, {2, 3, 4}, kRandom, rng());
  expect_error("Reshape", {x, ints({5, -1})}, {}, "[2,3,4]");
  expect_error("Reshape", {x, ints({5, 5})}, {}, "[5,5]");
  expect_error("Reshape", {x, ints({5, 5})}, {}, "[5,5]", true);
  expect_error("Reshape", {x, ints({-1, -1})}, {}, "more than one -1");
  expect_error("Reshape", {x, ints({0, 0, 0, 0})}, {}, "copies dim 3");
}

TEST(Flatten, AllAxes) {
  Tensor x = random_tensor(DType::i16, {2, 3, 4, 5}, kRandom, rng());
  for (int64_t axis = -4; axis <= 4; ++axis) {
    int64_t a = axis < 0 ? axis + 4 : axis;
    int64_t outer = 1;
    for (int64_t i = 0; i < a; ++i) outer *= x.dim(size_t(i));
    Tensor y = run1("Flatten", {x}, {{"axis", axis}});
    EXPECT_EQ(y.dims(), (Dims{outer, 120 / outer})) << axis;
    EXPECT_EQ(y.raw(), x.raw());
  }
  expect_error("Flatten", {x}, {{"axis", int64_t(5)}}, "axis 5");
}

TEST(Squeeze, WithAndWithoutAxes) {
  Tensor x = random_tensor(DType::f32, {1, 3, 1, 5}, kRandom, rng());
  EXPECT_EQ(run1("Squeeze", {x, ints({-2})}).dims(), (Dims{1, 3, 5}));
  EXPECT_EQ(run1("Squeeze", {x, ints({0, 2})}).dims(), (Dims{3, 5}));
  Tensor y = run1("Squeeze", {x});
  EXPECT_EQ(y.dims(), (Dims{3, 5}));
  EXPECT_EQ(y.raw(), x.raw());
  expect_error("Squeeze", {x, ints({1})}, {}, "cannot squeeze axis 1 of size 3");
  expect_error("Squeeze", {x, ints({0, -4})}, {}, "repeat");
}

TEST(Unsqueeze, NegativeAndUnsortedAxes) {
  Tensor x = random_tensor(DType::u8, {3, 4, 5}, kRandom, rng());
  EXPECT_EQ(run1("Unsqueeze", {x, ints({5, 4, 2})}).dims(), (Dims{3, 4, 1, 5, 1, 1}));
  EXPECT_EQ(run1("Unsqueeze", {x, ints({-1})}).dims(), (Dims{3, 4, 5, 1}));
  EXPECT_EQ(run1("Unsqueeze", {x, ints({0, -1})}).dims(), (Dims{1, 3, 4, 5, 1}));
  Tensor y = run1("Unsqueeze", {Tensor::scalar<float>(2.5f), ints({0})});
  EXPECT_EQ(y.dims(), (Dims{1}));
  EXPECT_EQ(y.get_double(0), 2.5);
  expect_error("Unsqueeze", {x, ints({6})}, {}, "out of range");
  expect_error("Unsqueeze", {x, ints({1, 1})}, {}, "repeat");
}

// ---------------------------------------------------------------- Transpose

Tensor transpose_expected(const Tensor& x, const Dims& perm) {
  Dims out;
  for (auto p : perm) out.push_back(x.dim(size_t(p)));
  return gather_expected(x, out, [&](const Dims& o) {
    Dims in(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) in[size_t(perm[i])] = o[i];
    return ravel(in, x.dims());
  });
}

TEST(Transpose, EveryPermutationOfRank4) {
  Tensor x = random_tensor(DType::f32, {2, 3, 4, 5}, kRandom, rng());
  Dims perm = {0, 1, 2, 3};
  do {
    std::vector<int64_t> p(perm.begin(), perm.end());
    expect_same(run1("Transpose", {x}, {{"perm", p}}), transpose_expected(x, perm));
  } while (std::next_permutation(perm.begin(), perm.end()));
}

TEST(Transpose, DefaultReversesAndAllDtypes) {
  for (DType dt : kAllTypes) {
    Tensor x = random_tensor(dt, {3, 1, 4}, kRandom, rng());
    expect_same(run1("Transpose", {x}), transpose_expected(x, {2, 1, 0}), std::string(dtype_name(dt)));
  }
  Tensor s = Tensor::scalar<int32_t>(7);
  expect_same(run1("Transpose", {s}), s);
  Tensor empty = random_tensor(DType::f32, {2, 0, 3}, kRandom, rng());
  EXPECT_EQ(run1("Transpose", {empty}, {{"perm", Dims{2, 0, 1}}}).dims(), (Dims{3, 2, 0}));
}

TEST(Transpose, TiledInnerTransposes) {
  // Sizes that are not multiples of the tile, in 2-, 4- and 8-byte elements.
  for (DType dt : {DType::f16, DType::f32, DType::i64}) {
    Tensor m = random_tensor(dt, {37, 50}, kRandom, rng());
    expect_same(run1("Transpose", {m}), transpose_expected(m, {1, 0}), std::string(dtype_name(dt)));
    Tensor b = random_tensor(dt, {3, 19, 2, 33}, kRandom, rng());
    expect_same(run1("Transpose", {b}, {{"perm", Dims{0, 3, 2, 1}}}), transpose_expected(b, {0, 3, 2, 1}));
    expect_same(run1("Transpose", {b}, {{"perm", Dims{2, 0, 3, 1}}}), transpose_expected(b, {2, 0, 3, 1}));
  }
}

TEST(Transpose, AttentionHeadsLayout) {
  Tensor x = random_tensor(DType::f32, {1, 128, 12, 64}, kRandom, rng());
  expect_same(run1("Transpose", {x}, {{"perm", Dims{0, 2, 1, 3}}}), transpose_expected(x, {0, 2, 1, 3}));
  expect_same(run1("Transpose", {x}, {{"perm", Dims{0, 2, 3, 1}}}), transpose_expected(x, {0, 2, 3, 1}));
  expect_error("Transpose", {x}, {{"perm", Dims{0, 2, 2, 3}}}, "not a permutation");
}

// ------------------------------------------------------------ Concat/Split

TEST(Concat, EveryAxisIncludingNegativeAndEmptyInputs) {
  for (int64_t axis = -3; axis < 3; ++axis) {
    int64_t a = axis < 0 ? axis + 3 : axis;
    std::vector<Tensor> parts;
    for (int64_t len : {2, 0, 3}) {
      Dims d = {2, 3, 4};
      d[size_t(a)] = len;
      parts.push_back(random_tensor(DType::f16, d, kRandom, rng()));
    }
    Dims out = {2, 3, 4};
    out[size_t(a)] = 5;
    Tensor y = run1("Concat", {parts[0], parts[1], parts[2]}, {{"axis", axis}});
    ASSERT_EQ(y.dims(), out);
    for (int64_t f = 0; f < y.numel(); ++f) {
      Dims idx = unravel(f, out);
      const Tensor& src = idx[size_t(a)] < 2 ? parts[0] : parts[2];
      if (idx[size_t(a)] >= 2) idx[size_t(a)] -= 2;
      ASSERT_EQ(y.data<uint16_t>()[f], src.data<uint16_t>()[ravel(idx, src.dims())]) << axis << " " << f;
    }
  }
}

TEST(Concat, MismatchIsAnError) {
  expect_error("Concat",
               {random_tensor(DType::f32, {2, 3}, kRandom, rng()), random_tensor(DType::f32, {3, 3}, kRandom, rng())},
               {{"axis", int64_t(1)}}, "[3,3]");
  expect_error(
      "Concat",
      {random_tensor(DType::f32, {2, 3}, kRandom, rng()), random_tensor(DType::f32, {2, 3, 1}, kRandom, rng())},
      {{"axis", int64_t(0)}}, "rank");
}

void check_split(const Tensor& x, int64_t axis, const std::vector<Tensor>& outs, const Dims& sizes) {
  ASSERT_EQ(outs.size(), sizes.size());
  int64_t a = axis < 0 ? axis + int64_t(x.rank()) : axis, begin = 0;
  for (size_t p = 0; p < outs.size(); ++p) {
    Dims d = x.dims();
    d[size_t(a)] = sizes[p];
    expect_same(outs[p],
                gather_expected(x, d,
                                [&](const Dims& o) {
                                  Dims i = o;
                                  i[size_t(a)] += begin;
                                  return ravel(i, x.dims());
                                }),
                "part " + std::to_string(p));
    begin += sizes[p];
  }
}

TEST(Split, BySizesInput) {
  Tensor x = random_tensor(DType::f32, {4, 6, 3}, kRandom, rng());
  check_split(x, 1, run_op("Split", {x, ints({1, 0, 5})}, {{"axis", int64_t(1)}}, 3), {1, 0, 5});
  check_split(x, -1, run_op("Split", {x, ints({2, 1})}, {{"axis", int64_t(-1)}}, 2), {2, 1});
  expect_error("Split", {x, ints({1, 2})}, {{"axis", int64_t(1)}}, "does not add up", false, 2);
}

TEST(Split, NumOutputsWithSmallerLastChunk) {
  Tensor x = random_tensor(DType::i64, {7, 2}, kRandom, rng());
  check_split(x, 0, run_op("Split", {x}, {{"num_outputs", int64_t(4)}}, 4), {2, 2, 2, 1});
  Tensor y = random_tensor(DType::f32, {2, 8}, kRandom, rng());
  check_split(y, 1, run_op("Split", {y}, {{"axis", int64_t(1)}, {"num_outputs", int64_t(3)}}, 3), {3, 3, 2});
  // Opset-13 form: neither split nor num_outputs: equal parts.
  check_split(y, 1, run_op("Split", {y}, {{"axis", int64_t(1)}}, 4), {2, 2, 2, 2});
  Tensor z = random_tensor(DType::f32, {0}, kRandom, rng());
  check_split(z, 0, run_op("Split", {z, ints({0, 0, 0})}, {}, 3), {0, 0, 0});
  expect_error("Split", {random_tensor(DType::f32, {5}, kRandom, rng())}, {{"num_outputs", int64_t(4)}}, "cannot split",
               false, 4);
}

// -------------------------------------------------------------------- Slice

// The indices a slice visits, written as Python's slice.indices() does it,
// with the one place where ONNX's spec (and onnxruntime) differ from numpy: a
// start below -len with a negative step clamps to 0 (one element), not -1.
std::vector<int64_t> spec_slice(int64_t start, int64_t stop, int64_t step, int64_t len) {
  auto adjust = [&](int64_t v, bool is_start) {
    if (v < 0) {
      v = v < -len ? -1 : v + len;  // avoid overflow for INT64_MIN
      if (v < 0) v = step < 0 && !is_start ? -1 : 0;
    } else if (v >= len) {
      v = step < 0 ? len - 1 : len;
    }
    return v;
  };
  start = adjust(start, true);
  stop = adjust(stop, false);
  std::vector<int64_t> out;
  for (__int128 i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(int64_t(i));
  return out;
}

TEST(Slice, RandomCornersMatchSpecSlicing) {
  Tensor x = random_tensor(DType::f32, {5, 4, 6}, kRandom, rng());
  const int64_t specials[] = {0, 1, 2, 3, 4, 5, 7, -1, -2, -3, -5, -7, INT64_MAX, INT64_MIN, INT32_MAX, INT32_MIN};
  const int64_t steps[] = {1, 1, 2, 3, -1, -1, -2, -4, INT64_MAX, INT64_MIN};
  std::uniform_int_distribution<size_t> pick_v(0, std::size(specials) - 1), pick_s(0, std::size(steps) - 1);
  for (int trial = 0; trial < 60; ++trial) {
    Dims axes = {0, 1, 2};
    std::shuffle(axes.begin(), axes.end(), rng());
    size_t n = size_t(trial % 3) + 1;
    axes.resize(n);
    Dims starts, ends, st;
    for (size_t i = 0; i < n; ++i) {
      starts.push_back(specials[pick_v(rng())]);
      ends.push_back(specials[pick_v(rng())]);
      st.push_back(steps[pick_s(rng())]);
    }
    Dims neg_axes = axes;
    for (auto& a : neg_axes)
      if (trial % 2) a -= 3;
    std::vector<std::vector<int64_t>> picks(3);
    for (size_t d = 0; d < 3; ++d)
      for (int64_t i = 0; i < x.dim(d); ++i) picks[d].push_back(i);
    for (size_t i = 0; i < n; ++i)
      picks[size_t(axes[i])] = spec_slice(starts[i], ends[i], st[i], x.dim(size_t(axes[i])));
    Dims out = {int64_t(picks[0].size()), int64_t(picks[1].size()), int64_t(picks[2].size())};
    Tensor want = gather_expected(x, out, [&](const Dims& o) {
      return ravel({picks[0][size_t(o[0])], picks[1][size_t(o[1])], picks[2][size_t(o[2])]}, x.dims());
    });
    Tensor got = run1("Slice", {x, ints(starts), ints(ends), ints(neg_axes), ints(st)});
    expect_same(got, want,
                "starts " + dims_str(starts) + " ends " + dims_str(ends) + " axes " + dims_str(axes) + " steps " +
                    dims_str(st));
  }
}

TEST(Slice, DefaultAxesAndStepsAndInt32Indices) {
  Tensor x = random_tensor(DType::bf16, {20, 10, 5}, kRandom, rng());
  Tensor y = run1("Slice", {x, ints({0, 0, 3}), ints({20, 10, 4})});
  EXPECT_EQ(y.dims(), (Dims{20, 10, 1}));
  Tensor s32 = Tensor::from_vector<int32_t>({1, -1}, {2});
  Tensor e32 = Tensor::from_vector<int32_t>({1000, -1000}, {2});
  Tensor a32 = Tensor::from_vector<int32_t>({0, 1}, {2});
  Tensor st32 = Tensor::from_vector<int32_t>({1, -2}, {2});
  Tensor z = run1("Slice", {x, s32, e32, a32, st32});
  EXPECT_EQ(z.dims(), (Dims{19, 5, 5}));
  expect_same(z, gather_expected(x, {19, 5, 5}, [&](const Dims& o) {
                return ravel({o[0] + 1, 9 - 2 * o[1], o[2]}, x.dims());
              }));
  // Start out of bounds gives an empty axis.
  EXPECT_EQ(run1("Slice", {x, ints({1000}), ints({1000}), ints({1}), ints({1})}).dims(), (Dims{20, 0, 5}));
  expect_error("Slice", {x, ints({0}), ints({1}), ints({0}), ints({0})}, {}, "contain 0");
  expect_error("Slice", {x, ints({0, 0}), ints({1, 1}), ints({1, -2})}, {}, "repeat");
}

// ----------------------------------------------------------------- Gather

TEST(Gather, EveryAxisWithNegativeIndices) {
  Tensor x = random_tensor(DType::f32, {5, 4, 3}, kRandom, rng());
  Tensor idx = ints({0, -1, 2, -3, 1, 1}, {2, 3});
  for (int64_t axis = -3; axis < 3; ++axis) {
    int64_t a = axis < 0 ? axis + 3 : axis;
    Dims out;
    for (int64_t i = 0; i < a; ++i) out.push_back(x.dim(size_t(i)));
    out.insert(out.end(), {2, 3});
    for (int64_t i = a + 1; i < 3; ++i) out.push_back(x.dim(size_t(i)));
    Tensor want = gather_expected(x, out, [&](const Dims& o) {
      int64_t k = idx.get_int(o[size_t(a)] * 3 + o[size_t(a) + 1]);
      if (k < 0) k += x.dim(size_t(a));
      Dims in;
      for (int64_t i = 0; i < a; ++i) in.push_back(o[size_t(i)]);
      in.push_back(k);
      for (size_t i = size_t(a) + 2; i < o.size(); ++i) in.push_back(o[i]);
      return ravel(in, x.dims());
    });
    expect_same(run1("Gather", {x, idx}, {{"axis", axis}}), want, "axis " + std::to_string(axis));
  }
  Tensor scalar_idx = Tensor::scalar<int32_t>(-2);
  expect_same(run1("Gather", {x, scalar_idx}, {{"axis", int64_t(1)}}), gather_expected(x, {5, 3}, [&](const Dims& o) {
                return ravel({o[0], 2, o[1]}, x.dims());
              }));
}

TEST(Gather, EmbeddingLookup) {
  // A cheap generator: 38M random floats from the default one take seconds.
  Tensor table = Tensor::empty(DType::f32, {50257, 768});
  std::minstd_rand fast(7);
  for (int64_t i = 0; i < table.numel(); ++i) table.data<float>()[i] = float(fast() % 1000 + 1) * 0.25f;
  std::vector<int64_t> ids;
  std::uniform_int_distribution<int64_t> id(0, 50256);
  for (int i = 0; i < 128; ++i) ids.push_back(id(rng()));
  ids[5] = 50256;
  Tensor idx = ints(ids, {1, 128});
  Tensor y = run_once("Gather", {table, idx}, {}, 1, false)[0];
  ASSERT_EQ(y.dims(), (Dims{1, 128, 768}));
  for (int i = 0; i < 128; ++i)
    ASSERT_EQ(0, std::memcmp(y.data<float>() + i * 768, table.data<float>() + ids[size_t(i)] * 768, 768 * 4)) << i;
}

TEST(Gather, OutOfRangeIndexIsAnError) {
  Tensor x = random_tensor(DType::f32, {5, 4}, kRandom, rng());
  expect_error("Gather", {x, ints({1, 5})}, {}, "index 5 is out of range");
  expect_error("Gather", {x, ints({1, 5})}, {}, "index 5 is out of range", true);
  expect_error("Gather", {x, ints({-5})}, {{"axis", int64_t(1)}}, "[5,4]");
}

TEST(GatherElements, BothAxesWithNegativeIndices) {
  Tensor x = random_tensor(DType::i32, {3, 4}, kRandom, rng());
  Tensor idx = ints({0, -1, 2, 1, -3, 0, 1, 2}, {2, 4});
  expect_same(run1("GatherElements", {x, idx}), gather_expected(x, {2, 4}, [&](const Dims& o) {
                int64_t k = idx.get_int(ravel(o, {2, 4}));
                return ravel({k < 0 ? k + 3 : k, o[1]}, x.dims());
              }));
  Tensor idx1 = ints({3, -4, 0, 1, 2, -1}, {3, 2});
  expect_same(run1("GatherElements", {x, idx1}, {{"axis", int64_t(-1)}}),
              gather_expected(x, {3, 2}, [&](const Dims& o) {
                int64_t k = idx1.get_int(ravel(o, {3, 2}));
                return ravel({o[0], k < 0 ? k + 4 : k}, x.dims());
              }));
  expect_error("GatherElements", {x, ints({3}, {1, 1})}, {}, "index 3 is out of range");
}

TEST(GatherND, BatchDims) {
  // Examples from the ONNX spec, then a random batch_dims=1 case.
  Tensor d = Tensor::from_vector<int32_t>({0, 1, 2, 3, 4, 5, 6, 7}, {2, 2, 2});
  expect_values(run1("GatherND", {d, ints({0, 1, 1, 0}, {2, 2})}), {2, 3, 4, 5}, {2, 2});
  expect_values(run1("GatherND", {d, ints({0, 1, 1, 0}, {2, 1, 2})}), {2, 3, 4, 5}, {2, 1, 2});
  expect_values(run1("GatherND", {d, ints({1, 0}, {2, 1})}, {{"batch_dims", int64_t(1)}}), {2, 3, 4, 5}, {2, 2});
  Tensor x = random_tensor(DType::f64, {2, 3, 4, 5}, kRandom, rng());
  Tensor idx = ints({0, -1, 2, 3, 1, 0, -3, 2}, {2, 2, 2});
  expect_same(run1("GatherND", {x, idx}, {{"batch_dims", int64_t(1)}}),
              gather_expected(x, {2, 2, 5}, [&](const Dims& o) {
                int64_t i0 = idx.get_int(ravel({o[0], o[1], 0}, {2, 2, 2}));
                int64_t i1 = idx.get_int(ravel({o[0], o[1], 1}, {2, 2, 2}));
                return ravel({o[0], i0 < 0 ? i0 + 3 : i0, i1 < 0 ? i1 + 4 : i1, o[2]}, x.dims());
              }));
  expect_error("GatherND", {x, ints({0, 4}, {1, 2})}, {}, "index 4 is out of range");
}

// ---------------------------------------------------------------- Scatter

double reduce_ref(double a, double b, const std::string& r) {
  if (r == "add") return a + b;
  if (r == "mul") return a * b;
  if (r == "max") return std::max(a, b);
  if (r == "min") return std::min(a, b);
  return b;
}

TEST(ScatterElements, AllReductionsWithDuplicatesAndNegativeIndices) {
  Tensor data = random_tensor(DType::f32, {3, 5}, kRandom, rng());
  Tensor idx = ints({1, -1, 1, 0, 4, -5}, {2, 3});  // column 1 hit twice on axis 1, row 0
  Tensor upd = random_tensor(DType::f32, {2, 3}, kRandom, rng());
  for (std::string red : {"none", "add", "mul", "max", "min"}) {
    std::vector<double> want(15);
    for (int i = 0; i < 15; ++i) want[size_t(i)] = data.get_double(i);
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 3; ++j) {
        int64_t k = idx.get_int(i * 3 + j);
        if (k < 0) k += 5;
        double& w = want[size_t(i * 5 + k)];
        w = float(reduce_ref(w, upd.get_double(i * 3 + j), red));
      }
    if (red == "none") continue;  // duplicates make "none" order-dependent; checked below
    expect_values(run1("ScatterElements", {data, idx, upd}, {{"axis", int64_t(1)}, {"reduction", red}}), want, {3, 5});
  }
  Tensor idx0 = ints({2, 0, 1, 1, 2, 0}, {2, 3});
  Tensor y = run1("ScatterElements", {data, idx0, upd});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) EXPECT_EQ(y.get_double(idx0.get_int(i * 3 + j) * 5 + j), upd.get_double(i * 3 + j));
  EXPECT_EQ(y.get_double(0 * 5 + 3), data.get_double(3));
  expect_error("ScatterElements", {data, ints({5}, {1, 1}), random_tensor(DType::f32, {1, 1}, kRandom, rng())}, {},
               "index 5 is out of range");
}

TEST(ScatterND, SlicesAndReductions) {
  // The ONNX spec example 1, then slices with a reduction on random data.
  Tensor d = Tensor::from_vector<int64_t>({1, 2, 3, 4, 5, 6, 7, 8}, {8});
  expect_values(run1("ScatterND", {d, ints({4, 3, 1, 7}, {4, 1}), ints({9, 10, 11, 12})}), {1, 11, 3, 10, 9, 6, 7, 12},
                {8});
  Tensor data = random_tensor(DType::f64, {4, 3, 2}, kRandom, rng());
  Tensor idx = ints({0, -1, 2, 1, 0, 2}, {3, 2});  // [0,2], [2,1], [0,2] again
  Tensor upd = random_tensor(DType::f64, {3, 2}, kRandom, rng());
  for (std::string red : {"add", "mul", "max", "min"}) {
    std::vector<double> want(24);
    for (int i = 0; i < 24; ++i) want[size_t(i)] = data.get_double(i);
    for (int64_t t = 0; t < 3; ++t) {
      int64_t a = idx.get_int(t * 2), b = idx.get_int(t * 2 + 1);
      if (b < 0) b += 3;
      for (int64_t e = 0; e < 2; ++e) {
        double& w = want[size_t((a * 3 + b) * 2 + e)];
        w = reduce_ref(w, upd.get_double(t * 2 + e), red);
      }
    }
    expect_values(run1("ScatterND", {data, idx, upd}, {{"reduction", red}}), want, {4, 3, 2});
  }
  expect_error("ScatterND", {data, ints({4}, {1, 1}), random_tensor(DType::f64, {1, 3, 2}, kRandom, rng())}, {},
               "index 4 is out of range");
}

// ---------------------------------------------------------- Expand / Tile

TEST(Expand, BroadcastsBothWays) {
  Tensor x = random_tensor(DType::i8, {3, 1}, kRandom, rng());
  Tensor y = run1("Expand", {x, ints({2, 1, 4})});
  expect_same(y, gather_expected(x, {2, 3, 4}, [&](const Dims& o) { return o[1]; }));
  // A shape smaller than the input keeps the input's dims.
  Tensor z = run1("Expand", {random_tensor(DType::f32, {2, 3}, kRandom, rng()), ints({1, 1})});
  EXPECT_EQ(z.dims(), (Dims{2, 3}));
  Tensor s = run1("Expand", {Tensor::scalar<float>(1.5f), ints({2, 0})});
  EXPECT_EQ(s.dims(), (Dims{2, 0}));
  expect_error("Expand", {x, ints({2, 5})}, {}, "[3,1]");
}

TEST(Tile, RepeatsEachAxis) {
  Tensor x = random_tensor(DType::f16, {2, 3, 1}, kRandom, rng());
  Tensor y = run1("Tile", {x, ints({3, 1, 4})});
  expect_same(y, gather_expected(x, {6, 3, 4}, [&](const Dims& o) { return ravel({o[0] % 2, o[1], 0}, x.dims()); }));
  EXPECT_EQ(run1("Tile", {x, ints({0, 2, 1})}).dims(), (Dims{0, 6, 1}));
  expect_error("Tile", {x, ints({1, 2})}, {}, "repeats");
}

// ------------------------------------------------- Shape, Size, generators

TEST(Shape, StartAndEndClamp) {
  Tensor x = random_tensor(DType::f32, {3, 4, 5}, kRandom, rng());
  expect_values(run1("Shape", {x}), {3, 4, 5}, {3});
  expect_values(run1("Shape", {x}, {{"start", int64_t(-1)}}), {5}, {1});
  expect_values(run1("Shape", {x}, {{"end", int64_t(-1)}}), {3, 4}, {2});
  expect_values(run1("Shape", {x}, {{"start", int64_t(-10)}, {"end", int64_t(10)}}), {3, 4, 5}, {3});
  expect_values(run1("Shape", {x}, {{"start", int64_t(2)}, {"end", int64_t(1)}}), {}, {0});
  Tensor s = run1("Size", {x});
  EXPECT_EQ(s.dtype(), DType::i64);
  expect_values(s, {60}, {});
}

TEST(Range, IntegerFloatAndHalf) {
  expect_values(run1("Range", {Tensor::scalar<int32_t>(10), Tensor::scalar<int32_t>(4), Tensor::scalar<int32_t>(-3)}),
                {10, 7}, {2});
  expect_values(run1("Range", {Tensor::scalar<int64_t>(3), Tensor::scalar<int64_t>(9), Tensor::scalar<int64_t>(3)}),
                {3, 6}, {2});
  expect_values(run1("Range", {Tensor::scalar<int16_t>(5), Tensor::scalar<int16_t>(1), Tensor::scalar<int16_t>(2)}), {},
                {0});
  Tensor f = run1("Range", {Tensor::scalar<float>(1.0f), Tensor::scalar<float>(2.0f), Tensor::scalar<float>(0.25f)});
  expect_values(f, {1.0, 1.25, 1.5, 1.75}, {4});
  Tensor h =
      run1("Range", {Tensor::scalar<Half>(Half{float_to_half(0.5f)}), Tensor::scalar<Half>(Half{float_to_half(-1.0f)}),
                     Tensor::scalar<Half>(Half{float_to_half(-0.5f)})});
  EXPECT_EQ(h.dtype(), DType::f16);
  expect_values(h, {0.5, 0.0, -0.5}, {3});
  expect_error("Range", {Tensor::scalar<int32_t>(0), Tensor::scalar<int32_t>(4), Tensor::scalar<int32_t>(0)}, {},
               "delta is 0");
}

TEST(ConstantOfShape, DefaultAndValue) {
  Tensor y = run1("ConstantOfShape", {ints({2, 3})});
  EXPECT_EQ(y.dtype(), DType::f32);
  expect_values(y, std::vector<double>(6, 0.0), {2, 3});
  Tensor v = Tensor::from_vector<int32_t>({-7}, {1});
  Tensor z = run1("ConstantOfShape", {ints({4, 1, 2})}, {{"value", v}});
  EXPECT_EQ(z.dtype(), DType::i32);
  expect_values(z, std::vector<double>(8, -7.0), {4, 1, 2});
  Tensor s = run1("ConstantOfShape", {ints({}, {0})}, {{"value", Tensor::from_vector<float>({2.5f}, {1})}});
  expect_values(s, {2.5}, {});
}

TEST(Constant, EveryAttributeForm) {
  Tensor t = random_tensor(DType::bf16, {2, 2}, kRandom, rng());
  expect_same(run1("Constant", {}, {{"value", t}}), t);
  expect_values(run1("Constant", {}, {{"value_float", 1.5f}}), {1.5}, {});
  expect_values(run1("Constant", {}, {{"value_floats", std::vector<float>{1, 2}}}), {1, 2}, {2});
  Tensor i = run1("Constant", {}, {{"value_int", int64_t(-4)}});
  EXPECT_EQ(i.dtype(), DType::i64);
  expect_values(i, {-4}, {});
  expect_values(run1("Constant", {}, {{"value_ints", std::vector<int64_t>{3, 4, 5}}}), {3, 4, 5}, {3});
  expect_error("Constant", {}, {{"value_int", int64_t(1)}, {"value_float", 1.0f}}, "exactly one");
}

TEST(EyeLike, DiagonalsAndDtype) {
  Tensor x = random_tensor(DType::f32, {3, 4}, kRandom, rng());
  for (int64_t k : {-4, -1, 0, 2, 5}) {
    std::vector<double> want(12, 0.0);
    for (int64_t i = 0; i < 3; ++i)
      if (i + k >= 0 && i + k < 4) want[size_t(i * 4 + i + k)] = 1.0;
    expect_values(run1("EyeLike", {x}, {{"k", k}}), want, {3, 4});
  }
  Tensor y = run1("EyeLike", {x}, {{"dtype", int64_t(7)}});
  EXPECT_EQ(y.dtype(), DType::i64);
  expect_error("EyeLike", {random_tensor(DType::f32, {2, 2, 2}, kRandom, rng())}, {}, "2-D");
}

TEST(NonZero, CountsAtRunTime) {
  Tensor x = Tensor::from_vector<float>({0, 1.5f, 0, -2, 0, 0, 3, 0}, {2, 4});
  Tensor y = run1("NonZero", {x});
  expect_values(y, {0, 0, 1, 1, 3, 2}, {2, 3});
  Tensor z = run1("NonZero", {Tensor::zeros(DType::i32, {3})});
  EXPECT_EQ(z.dims(), (Dims{1, 0}));
  EXPECT_EQ(run1("NonZero", {Tensor::scalar<int32_t>(5)}).dims(), (Dims{0, 1}));
}

TEST(OneHot, AxesNegativeAndOutOfRangeIndices) {
  Tensor idx = ints({1, -1, 5, 0, 2, -4}, {2, 3});
  Tensor values = floats({-1.0f, 3.0f});
  for (int64_t axis : {-1, 0, 1, -3}) {
    int64_t a = axis < 0 ? axis + 3 : axis;
    Dims out = {2, 3};
    out.insert(out.begin() + a, 4);
    Tensor y = run1("OneHot", {idx, Tensor::scalar<float>(4.0f), values}, {{"axis", axis}});
    ASSERT_EQ(y.dims(), out) << axis;
    for (int64_t f = 0; f < y.numel(); ++f) {
      Dims o = unravel(f, out);
      int64_t c = o[size_t(a)];
      o.erase(o.begin() + a);
      int64_t k = idx.get_int(ravel(o, {2, 3}));
      if (k < 0) k += 4;
      EXPECT_EQ(y.get_double(f), k == c ? 3.0 : -1.0) << axis << " " << f;
    }
  }
}

// --------------------------------------------------- Trilu, CumSum, Pad

TEST(Trilu, UpperAndLowerForManyK) {
  Tensor x = random_tensor(DType::i64, {2, 4, 5}, kRandom, rng());
  for (int64_t upper : {0, 1})
    for (int64_t k : Dims{-7, -2, -1, 0, 1, 3, 9, INT64_MAX, INT64_MIN}) {
      std::vector<double> want(40);
      for (int64_t f = 0; f < 40; ++f) {
        Dims o = unravel(f, {2, 4, 5});
        __int128 diff = __int128(o[2]) - o[1];
        bool keep = upper ? diff >= k : diff <= k;
        want[size_t(f)] = keep ? x.get_double(f) : 0.0;
      }
      expect_values(run1("Trilu", {x, Tensor::scalar<int64_t>(k)}, {{"upper", upper}}), want, {2, 4, 5});
    }
  Tensor e = random_tensor(DType::f32, {3, 0, 5}, kRandom, rng());
  EXPECT_EQ(run1("Trilu", {e}).dims(), (Dims{3, 0, 5}));
}

TEST(CumSum, ExclusiveReverseAndAxes) {
  Tensor x = random_tensor(DType::f64, {3, 4, 2}, kRandom, rng());
  for (int64_t axis : {0, 1, -1})
    for (int64_t exclusive : {0, 1})
      for (int64_t reverse : {0, 1}) {
        int64_t a = axis < 0 ? axis + 3 : axis;
        std::vector<double> want(24);
        for (int64_t f = 0; f < 24; ++f) {
          Dims o = unravel(f, x.dims());
          double s = 0;
          for (int64_t j = 0; j < x.dim(size_t(a)); ++j) {
            bool in = reverse ? (exclusive ? j > o[size_t(a)] : j >= o[size_t(a)])
                              : (exclusive ? j < o[size_t(a)] : j <= o[size_t(a)]);
            Dims p = o;
            p[size_t(a)] = j;
            if (in) s += x.get_double(ravel(p, x.dims()));
          }
          want[size_t(f)] = s;
        }
        Tensor y = run1("CumSum", {x, Tensor::scalar<int32_t>(int32_t(axis))},
                        {{"exclusive", exclusive}, {"reverse", reverse}});
        for (int64_t f = 0; f < 24; ++f) EXPECT_NEAR(y.get_double(f), want[size_t(f)], 1e-12);
      }
  expect_values(run1("CumSum", {Tensor::from_vector<int32_t>({1, 2, 3, 4, 5}, {5}), Tensor::scalar<int64_t>(0)},
                     {{"exclusive", int64_t(1)}}),
                {0, 1, 3, 6, 10}, {5});
}

TEST(Pad, ModesAgainstNumpy) {
  // Expected rows computed with numpy.pad([1,2,3], (7,6), mode).
  Tensor x = floats({1, 2, 3}, {1, 3});
  Tensor pads = ints({0, 7, 0, 6});
  expect_values(run1("Pad", {x, pads}, {{"mode", std::string("reflect")}}),
                {2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3, 2, 1}, {1, 16});
  expect_values(run1("Pad", {x, pads}, {{"mode", std::string("wrap")}}),
                {3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3}, {1, 16});
  expect_values(run1("Pad", {x, pads}, {{"mode", std::string("edge")}}),
                {1, 1, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 3, 3, 3}, {1, 16});
  expect_values(run1("Pad", {x, pads, floats({9}, {})}), {9, 9, 9, 9, 9, 9, 9, 1, 2, 3, 9, 9, 9, 9, 9, 9}, {1, 16});
  // The ONNX spec's wrap example.
  Tensor d = floats({1.0f, 1.2f, 2.3f, 3.4f, 4.5f, 5.7f}, {3, 2});
  expect_values(run1("Pad", {d, ints({2, 1, 1, 1})}, {{"mode", std::string("wrap")}}),
                {3.4f, 2.3f, 3.4f, 2.3f, 5.7f, 4.5f, 5.7f, 4.5f, 1.2f, 1.0f, 1.2f, 1.0f,
                 3.4f, 2.3f, 3.4f, 2.3f, 5.7f, 4.5f, 5.7f, 4.5f, 1.2f, 1.0f, 1.2f, 1.0f},
                {6, 4});
}

TEST(Pad, AxesInputNegativePadsAndRandom3D) {
  Tensor x = random_tensor(DType::i32, {3, 4, 5}, kRandom, rng());
  // axes [-1, 0]: pad axis 2 by (2, -1) and axis 0 by (-1, 1); constant 7.
  Tensor y = run1("Pad", {x, ints({2, -1, -1, 1}), Tensor::scalar<int32_t>(7), ints({-1, 0})});
  ASSERT_EQ(y.dims(), (Dims{3, 4, 6}));
  for (int64_t f = 0; f < y.numel(); ++f) {
    Dims o = unravel(f, y.dims());
    int64_t i0 = o[0] + 1, i2 = o[2] - 2;
    bool inside = i0 >= 0 && i0 < 3 && i2 >= 0 && i2 < 5;
    ASSERT_EQ(y.get_int(f), inside ? x.get_int(ravel({i0, o[1], i2}, x.dims())) : 7) << f;
  }
  for (std::string mode : {"reflect", "edge", "wrap"}) {
    Tensor z = run1("Pad", {x, ints({1, 0, 3, 2, 5, 1})}, {{"mode", mode}});
    ASSERT_EQ(z.dims(), (Dims{6, 9, 9}));
    auto src = [&](int64_t i, int64_t n) {
      // Walk out of range coordinates back in one reflection/clamp/wrap at a time.
      while (i < 0 || i >= n) {
        if (mode == "edge")
          i = i < 0 ? 0 : n - 1;
        else if (mode == "wrap")
          i = i < 0 ? i + n : i - n;
        else
          i = i < 0 ? -i : 2 * (n - 1) - i;
      }
      return i;
    };
    expect_same(z,
                gather_expected(x, {6, 9, 9},
                                [&](const Dims& o) {
                                  return ravel({src(o[0] - 1, 3), src(o[1] - 0, 4), src(o[2] - 3, 5)}, x.dims());
                                }),
                mode);
  }
  expect_error("Pad", {random_tensor(DType::f32, {0, 2}, kRandom, rng()), ints({1, 0, 0, 0})},
               {{"mode", std::string("edge")}}, "size 0");
  expect_error("Pad", {x, ints({1, 2})}, {}, "2 entries per padded axis");
}

TEST(Errors, HugeShapesFromValuesAreRejected) {
  Tensor x = random_tensor(DType::f32, {2, 3}, kRandom, rng());
  expect_error("ConstantOfShape", {ints({1LL << 40, 1LL << 40})}, {}, "too many elements");
  expect_error("Tile", {x, ints({1LL << 62, 4})}, {}, "too large");
  expect_error("Expand", {x, ints({1LL << 40, 1LL << 40, 1, 3})}, {}, "too many elements");
  expect_error("Pad", {x, ints({0, INT64_MAX, 0, INT64_MAX})}, {}, "too large");
  expect_error("Range",
               {Tensor::scalar<int64_t>(INT64_MIN), Tensor::scalar<int64_t>(INT64_MAX), Tensor::scalar<int64_t>(1)}, {},
               "too long");
  expect_error("Reshape", {x, ints({1LL << 40, 1LL << 40, -1})}, {}, "[2,3]");
}

// ------------------------------------------------- symbolic shape inference

Shape sym_shape(std::vector<std::string> dims) {
  Shape s;
  for (auto& d : dims) {
    if (std::isdigit(static_cast<unsigned char>(d[0])))
      s.dims.push_back(Dim::fixed(std::stoll(d)));
    else if (d == "?")
      s.dims.push_back(Dim::unknown());
    else
      s.dims.push_back(Dim::sym(d));
  }
  return s;
}

TEST(SymbolicInference, AttentionReshapeChain) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, sym_shape({"batch", "seq", "768"})});
  auto v = [&](const char* n) { return g.add_value(n); };
  Value *u = v("u"), *t = v("t"), *c = v("c"), *r = v("r"), *heads = v("heads"), *merged = v("merged"),
        *flat = v("flat"), *shape = v("shape"), *sl = v("sl"), *rev = v("rev"), *part = v("part"), *ex = v("ex"),
        *gat = v("gat"), *sq = v("sq"), *sp0 = v("sp0"), *sp1 = v("sp1"), *pad = v("pad"), *tile = v("tile");
  g.add_node("Unsqueeze", {x, g.add_constant("ax", ints({1}))}, {u});
  g.add_node("Transpose", {u}, {t}, {{"perm", Dims{0, 2, 1, 3}}});
  g.add_node("Concat", {t, t}, {c}, {{"axis", int64_t(2)}});
  g.add_node("Reshape", {x, g.add_constant("s", ints({0, 0, 12, 64}))}, {r});
  g.add_node("Transpose", {r}, {heads}, {{"perm", Dims{0, 2, 1, 3}}});
  g.add_node("Reshape", {r, g.add_constant("s2", ints({0, 0, -1}))}, {merged});
  g.add_node("Reshape", {x, g.add_constant("s3", ints({-1, 768}))}, {flat});
  g.add_node("Shape", {x}, {shape});
  g.add_node(
      "Slice",
      {x, g.add_constant("st", ints({0})), g.add_constant("en", ints({INT64_MAX})), g.add_constant("sa", ints({1}))},
      {sl});
  g.add_node("Slice",
             {x, g.add_constant("st2", ints({-1})), g.add_constant("en2", ints({INT64_MIN})),
              g.add_constant("sa2", ints({0})), g.add_constant("ss2", ints({-1}))},
             {rev});
  g.add_node("Slice",
             {x, g.add_constant("st3", ints({0})), g.add_constant("en3", ints({1})), g.add_constant("sa3", ints({1}))},
             {part});
  g.add_node("Expand",
             {g.add_input("m", {DType::f32, sym_shape({"batch", "1", "1", "seq"})}),
              g.add_constant("es", ints({1, 12, 1, 1}))},
             {ex});
  g.add_node("Gather", {x, g.add_constant("gi", ints({3, 4}))}, {gat}, {{"axis", int64_t(2)}});
  g.add_node("Squeeze", {u, g.add_constant("sqa", ints({1}))}, {sq});
  g.add_node("Split", {x, g.add_constant("sps", ints({256, 512}))}, {sp0, sp1}, {{"axis", int64_t(-1)}});
  g.add_node("Pad", {x, g.add_constant("pp", ints({0, 1, 0, 0, 0, 3}))}, {pad});
  g.add_node("Tile", {x, g.add_constant("tr", ints({1, 2, 1}))}, {tile});
  infer_types(g);
  EXPECT_EQ(u->type.shape.str(), "[batch,1,seq,768]");
  EXPECT_EQ(t->type.shape.str(), "[batch,seq,1,768]");
  EXPECT_EQ(c->type.shape.str(), "[batch,seq,2,768]");
  EXPECT_EQ(r->type.shape.str(), "[batch,seq,12,64]");
  EXPECT_EQ(heads->type.shape.str(), "[batch,12,seq,64]");
  EXPECT_EQ(merged->type.shape.str(), "[batch,seq,768]");
  EXPECT_EQ(flat->type.shape.str(), "[?,768]");
  EXPECT_EQ(shape->type.str(), "i64[3]");
  EXPECT_EQ(sl->type.shape.str(), "[batch,seq,768]");
  EXPECT_EQ(rev->type.shape.str(), "[batch,seq,768]");
  EXPECT_EQ(part->type.shape.str(), "[batch,?,768]");
  EXPECT_EQ(ex->type.shape.str(), "[batch,12,1,seq]");
  EXPECT_EQ(gat->type.shape.str(), "[batch,seq,2]");
  EXPECT_EQ(sq->type.shape.str(), "[batch,seq,768]");
  EXPECT_EQ(sp0->type.shape.str(), "[batch,seq,256]");
  EXPECT_EQ(sp1->type.shape.str(), "[batch,seq,512]");
  EXPECT_EQ(pad->type.shape.str(), "[batch,?,771]");
  EXPECT_EQ(tile->type.shape.str(), "[batch,?,768]");
  EXPECT_EQ(tile->type.dtype, DType::f32);
}

TEST(SymbolicInference, UnknownValuesStillGiveRanks) {
  Graph g;
  Value* x = g.add_input("x", {DType::f32, sym_shape({"batch", "seq", "768"})});
  Value* dyn = g.add_input("dyn", {DType::i64, Shape::of({4})});
  Value *r = g.add_value("r"), *cs = g.add_value("cs"), *nz = g.add_value("nz"), *rg = g.add_value("rg"),
        *fl = g.add_value("fl"), *cc = g.add_value("cc");
  g.add_node("Reshape", {x, dyn}, {r});
  g.add_node("ConstantOfShape", {dyn}, {cs});
  g.add_node("NonZero", {x}, {nz});
  g.add_node("Range",
             {g.add_input("a", {DType::i64, Shape()}), g.add_constant("l", Tensor::scalar<int64_t>(9)),
              g.add_constant("d", Tensor::scalar<int64_t>(1))},
             {rg});
  g.add_node("Flatten", {x}, {fl}, {{"axis", int64_t(2)}});
  g.add_node("Concat", {x, g.add_input("y", {DType::f32, sym_shape({"batch", "?", "768"})})}, {cc},
             {{"axis", int64_t(1)}});
  infer_types(g);
  EXPECT_EQ(r->type.shape.str(), "[?,?,?,?]");
  EXPECT_EQ(cs->type.str(), "f32[?,?,?,?]");
  EXPECT_EQ(nz->type.str(), "i64[3,?]");
  EXPECT_EQ(rg->type.str(), "i64[?]");
  EXPECT_EQ(fl->type.shape.str(), "[?,768]");
  EXPECT_EQ(cc->type.shape.str(), "[batch,?,768]");
}

TEST(SymbolicInference, RunsWithDifferentSizesAfterCompiling) {
  auto g = std::make_shared<Graph>();
  Value* x = g->add_input("x", {DType::f32, sym_shape({"batch", "seq", "768"})});
  Value *r = g->add_value("r"), *t = g->add_value("t"), *shape = g->add_value("shape"), *out = g->add_value("out");
  g->add_node("Reshape", {x, g->add_constant("s", ints({0, 0, 12, 64}))}, {r});
  g->add_node("Transpose", {r}, {t}, {{"perm", Dims{0, 2, 1, 3}}});
  g->add_node("Shape", {t}, {shape});
  g->add_node("Reshape", {t, shape}, {out});  // shape known only at run time
  g->outputs = {t, shape, out};
  infer_types(*g);
  auto exe = Executable::compile(g, *make_reference_backend());
  for (int64_t seq : {1, 7, 128}) {
    Tensor in = random_tensor(DType::f32, {2, seq, 768}, kRandom, rng());
    auto res = exe->run({{"x", in}});
    EXPECT_EQ(res[0].dims(), (Dims{2, 12, seq, 64}));
    expect_same(res[0], transpose_expected(in.reshaped({2, seq, 12, 64}), {0, 2, 1, 3}));
    expect_values(res[1], {2, 12, double(seq), 64}, {4});
    expect_same(res[2], res[0]);
  }
}

}  // namespace
