// The cpu backend's fast kernels of the codebook.grad ops
// (backends/cpu/grad_kernels.cpp) and of Transpose, Slice, Split and Concat
// (backends/cpu/layout_kernels.cpp): their errors name the node, and
// StridedCopy, the copy engine of the data-movement kernels, is checked
// directly: its work units, cut anywhere, copy what one element loop copies.
// The kernels against the reference backend on random inputs of many shapes
// and 1, 2 and 3 threads are cases of the op harness (tests/op_cases/grad.cpp,
// tensor.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "backends/cpu/layout_kernels.h"
#include "ir/ops/grad.h"
#include "support/error.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::i64s;
using cb::test::random_tensor;
using cb::test::run_node;

namespace {

using Dims = std::vector<int64_t>;

TEST(CpuGradKernels, GatherGradIndexOutOfRange) {
  Tensor idx = i64s({0, 3, 1});
  try {
    run_node("cpu", "GatherGrad", kGradDomain, {random_tensor(DType::f32, {3, 4}), idx, i64s({3, 4})},
             {{"axis", int64_t(0)}}, {true}, 2);
    ADD_FAILURE() << "expected a cb::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("node"), std::string::npos) << e.what();
  }
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
  struct Case {
    Dims dims, src_strides, dst_strides;
    int64_t src_offset;
  };
  const std::vector<Case> cases = {{{6, 5, 7}, {35, 7, 1}, {35, 7, 1}, 0},        // one run
                                   {{6, 5, 7}, {70, 14, 1}, {35, 7, 1}, 3},       // runs of 7
                                   {{5, 6, 9}, {54, 1, 6}, {54, 9, 1}, 0},        // 2-D transposes in tiles
                                   {{4, 37, 19}, {703, 1, 37}, {703, 19, 1}, 0},  // tiles with edges
                                   {{3, 4, 5}, {1, 3, 12}, {20, 5, 1}, 0},        // reversed: elements
                                   {{7, 6}, {-6, 1}, {6, 1}, 36},                 // negative stride
                                   {{5, 9}, {0, 1}, {9, 1}, 0},                   // broadcast rows
                                   {{2, 40000}, {80000, 2}, {40000, 1}, 1},       // strided elements
                                   {{3, 50000}, {50000, 1}, {50000, 1}, 0}};      // runs cut into pieces
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
