// The backward ops (domain codebook.grad, ir/ops/grad.h). The cpu backend's
// own kernels (backends/cpu/grad_kernels.cpp) agree with the reference to
// 1e-5 relative to |reference| + rms (SliceGrad: bit for bit), on odd sizes
// and on sizes that take the threaded and tiled paths, with some outputs
// omitted. Their gradient rules are those of the forward ops (gradient cases
// of the forward ops' files), and GeluGrad's kernel is also checked against
// finite differences of Gelu in tests/test_fuse_gelu.cpp.
#include "ir/ops/grad.h"

#include <algorithm>
#include <climits>
#include <sstream>

#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

const DType f32 = DType::f32;
const Tolerance kRtol = near_rms(1e-5);

// Magnitudes in [0.1, 2] with random signs: never zero.
const Values kNonZero = magnitudes(0.1, 2.0);

std::vector<OpCase> softmax_grad_cases() {
  std::vector<OpCase> v;
  struct Case {
    Dims dims;
    int64_t axis;
  };
  for (const Case& c : std::vector<Case>{{{5, 7}, -1},
                                         {{3, 130}, -1},
                                         {{4, 5, 6}, 1},
                                         {{2, 3, 70, 5}, 2},
                                         {{3, 9, 100}, 1},
                                         {{1, 1}, 0},
                                         {{64, 4, 9, 33}, -1},
                                         {{16, 127, 11}, -1}})
    for (int64_t log : {0, 1})
      // y: probabilities, or log-probabilities (exp(y) stays small).
      v.push_back(
          OpCase("SoftmaxGrad_" + dims_name(c.dims) + "_axis" + std::to_string(c.axis + 1) + (log ? "_log" : ""),
                 "SoftmaxGrad", kGradDomain)
              .attr("axis", c.axis)
              .attr("log", log)
              .in(c.dims, kNonZero)
              .in(c.dims, log ? uniform(-6.0, -0.05) : uniform(0.01, 1.0))
              .tol(kRtol));
  return v;
}

std::vector<OpCase> layer_norm_grad_cases() {
  std::vector<OpCase> v;
  struct Case {
    Dims x;
    int64_t axis;
    Dims scale;
  };
  const std::vector<Case> cases = {{{7, 13}, -1, {13}},     {{3, 5, 64}, -1, {64}},      {{4, 6, 10}, 1, {6, 10}},
                                   {{4, 6, 10}, 1, {10}},   {{4, 6, 10}, 1, {1, 1, 10}}, {{100, 128}, -1, {128}},
                                   {{2, 1, 33}, 2, {33}},   {{67, 3, 31}, -1, {31}},     {{1, 5}, -1, {5}},
                                   {{16, 64, 96}, -1, {96}}};
  struct Outputs {
    const char* name;
    std::vector<bool> present;
  };
  for (const Case& c : cases)
    for (const Outputs& o : std::vector<Outputs>{{"all", {true, true, true}},
                                                 {"dx_only", {true}},
                                                 {"no_dx", {false, true, true}},
                                                 {"dbias_only", {false, false, true}}})
      v.push_back(OpCase("LayerNormalizationGrad_" + dims_name(c.x) + "_axis" + std::to_string(c.axis + 1) + "_scale_" +
                             dims_name(c.scale) + "_" + o.name,
                         "LayerNormalizationGrad", kGradDomain)
                      .attr("axis", c.axis)
                      .attr("epsilon", 1e-5f)
                      .in(c.x, kNonZero)
                      .in(c.x, magnitudes(0.1, 3.0))
                      .in(c.scale, magnitudes(0.5, 1.5))
                      .outs(o.present)
                      .tol(kRtol));
  return v;
}

std::vector<OpCase> gather_grad_cases() {
  std::vector<OpCase> v;
  struct Case {
    Dims data, idx;
    int64_t axis;
    DType idx_type;
  };
  const std::vector<Case> cases = {{{11, 128}, {64, 37}, 0, DType::i64}, {{5, 7, 9}, {4}, 1, DType::i64},
                                   {{5, 7, 9}, {3, 2}, 2, DType::i32},   {{3, 200}, {50}, 0, DType::i64},
                                   {{6, 5, 130}, {9}, 1, DType::i32},    {{50, 64}, {64, 128}, 0, DType::i64},
                                   {{4, 3}, {}, -1, DType::i64}};
  for (const Case& c : cases) {
    const int64_t r = int64_t(c.data.size()), axis = c.axis < 0 ? c.axis + r : c.axis, A = c.data[size_t(axis)];
    Dims dy(c.data.begin(), c.data.begin() + axis);
    dy.insert(dy.end(), c.idx.begin(), c.idx.end());
    dy.insert(dy.end(), c.data.begin() + axis + 1, c.data.end());
    // Negative indices count from the end; repeats add.
    v.push_back(OpCase("GatherGrad_" + dims_name(c.data) + "_by_" + dims_name(c.idx) + "_axis" + std::to_string(axis) +
                           "_" + std::string(dtype_name(c.idx_type)),
                       "GatherGrad", kGradDomain)
                    .attr("axis", c.axis)
                    .in(dy, kNonZero)
                    .in(c.idx_type, c.idx, uniform(double(-A), double(A - 1)))
                    .given(i64s(c.data))
                    .tol(kRtol));
  }
  // Big enough for the threaded scatter-add.
  Tensor idx = Tensor::empty(DType::i64, {2100});
  for (int64_t i = 0; i < idx.numel(); ++i) idx.data<int64_t>()[i] = (i * 7919) % 50 - 25;
  v.push_back(OpCase("GatherGrad_large_rows", "GatherGrad", kGradDomain)
                  .attr("axis", int64_t(0))
                  .in({2100, 2048}, kNonZero)
                  .given(idx)
                  .given(i64s({50, 2048}))
                  .tol(kRtol));
  return v;
}

// The dims of Slice(data of `dims`, starts, ends, axes, steps), numpy clamping.
Dims slice_dims(Dims dims, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                const std::optional<std::vector<int64_t>>& axes, const std::optional<std::vector<int64_t>>& steps) {
  Dims out = dims;
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t axis = axes ? (*axes)[i] : int64_t(i);
    if (axis < 0) axis += int64_t(dims.size());
    const int64_t d = dims[size_t(axis)], step = steps ? (*steps)[i] : 1;
    int64_t s = starts[i] < 0 ? starts[i] + d : starts[i];
    int64_t e = ends[i] < 0 ? ends[i] + d : ends[i];
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, d);
      e = std::clamp<int64_t>(e, 0, d);
      out[size_t(axis)] = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = std::clamp<int64_t>(s, -1, d - 1);
      e = std::clamp<int64_t>(e, -1, d - 1);
      out[size_t(axis)] = s > e ? (s - e - step - 1) / -step : 0;
    }
  }
  return out;
}

std::vector<OpCase> slice_grad_cases() {
  std::vector<OpCase> v;
  const int64_t kEnd = INT64_MAX;
  struct Case {
    Dims dims;
    std::vector<int64_t> starts, ends;
    std::optional<std::vector<int64_t>> axes, steps;
  };
  const std::vector<Case> cases = {
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
      {{5, 6}, {2}, {2}, std::vector<int64_t>{1}, std::nullopt},
      {{2048, 2100}, {3}, {2093}, std::vector<int64_t>{1}, std::nullopt}};  // threaded
  int n = 0;
  for (const Case& c : cases) {
    const Dims dy = slice_dims(c.dims, c.starts, c.ends, c.axes, c.steps);
    for (DType dt : {f32, DType::f64, DType::f16}) {
      if (c.dims[0] == 2048 && dt != f32) continue;
      OpCase o("SliceGrad_" + std::to_string(n) + "_" + dims_name(dy) + "_into_" + dims_name(c.dims) + "_" +
                   std::string(dtype_name(dt)),
               "SliceGrad", kGradDomain);
      o.in(dt, dy, kNonZero).given(i64s(c.dims)).given(i64s(c.starts)).given(i64s(c.ends));
      if (c.axes) o.given(i64s(*c.axes));
      if (c.steps) o.given(i64s(*c.steps));
      v.push_back(o);
    }
    ++n;
  }
  return v;
}

std::vector<OpCase> codebook_grad_cases() {
  std::vector<OpCase> v;
  struct Case {
    int64_t B, T, G, K, Dg, k;
  };
  const std::vector<Case> cases = {{2, 5, 1, 7, 16, 1}, {3, 33, 4, 50, 32, 1},   {2, 17, 2, 9, 12, 3},
                                   {1, 1, 1, 3, 5, 2},  {4, 64, 1, 200, 128, 1}, {2, 40, 3, 5, 7, 4}};
  const std::vector<std::string> losses = {"base", "aeloss", "fullaeloss", "vqvae-0.5", "fullaeloss-0.1"};
  const std::vector<std::vector<bool>> output_sets = {
      {true, true, true, true}, {true}, {false, true}, {true, false, true, true}, {false, false, false, true}};
  // Ids of the chosen codes, a tenth of the slots blocked (-1).
  auto ids_of = [](Dims dims, int64_t K) {
    return [dims, K](std::mt19937& rng) {
      Tensor ids = Tensor::empty(DType::i64, dims);
      std::uniform_int_distribution<int64_t> code(0, K - 1);
      std::bernoulli_distribution blocked(0.1);
      for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int64_t>()[i] = blocked(rng) ? -1 : code(rng);
      return ids;
    };
  };
  for (const Case& c : cases) {
    const int64_t D = c.G * c.Dg;
    for (const std::string& loss : losses)
      for (const std::vector<bool>& outs : output_sets) {
        std::ostringstream name;
        name << "CodebookGrad_B" << c.B << "_T" << c.T << "_G" << c.G << "_K" << c.K << "_Dg" << c.Dg << "_k" << c.k
             << "_" << loss << "_outputs";
        for (bool o : outs) name << (o ? "1" : "0");
        std::string n = name.str();
        std::replace(n.begin(), n.end(), '-', '_');
        std::replace(n.begin(), n.end(), '.', '_');
        v.push_back(OpCase(n, "CodebookGrad", kGradDomain)
                        .attr("k", c.k)
                        .attr("epsilon", 1e-5f)
                        .attr("loss", loss)
                        .in({c.B, c.T, D}, kNonZero)
                        .in({c.B, c.T, D}, kNonZero)
                        .in({c.G, c.K, c.Dg}, kNonZero)
                        .in({c.G, c.Dg}, magnitudes(0.5, 1.5))
                        .in({c.G, c.Dg}, magnitudes(0.01, 0.3))
                        .in_made(DType::i64, {c.B, c.T, c.G, c.k}, ids_of({c.B, c.T, c.G, c.k}, c.K))
                        .outs(outs)
                        .tol(kRtol));
      }
  }
  // Big enough that the code-gradient sums are threaded too (from
  // kParallelCopyBytes of contributions on); some slots blocked.
  const int64_t B = 8, T = 512, G = 8, K = 64, Dg = 128, D = G * Dg;
  v.push_back(OpCase("CodebookGrad_large", "CodebookGrad", kGradDomain)
                  .attr("k", int64_t(2))
                  .attr("loss", std::string("fullaeloss"))
                  .in({B, T, D}, kNonZero)
                  .in({B, T, D}, kNonZero)
                  .in({G, K, Dg}, kNonZero)
                  .in({G, Dg}, magnitudes(0.5, 1.5))
                  .in({G, Dg}, magnitudes(0.01, 0.3))
                  .in(DType::i64, {B, T, G, 2}, uniform(-1, K - 1))
                  .outs({true, true, true, true})
                  .tol(kRtol));
  return v;
}

std::vector<OpCase> gelu_grad_cases() {
  std::vector<OpCase> v;
  // Random dy and x of many sizes (odd ones, and ones that take the threaded
  // path) within 1e-6 * (1 + |dx|).
  for (const char* approximate : {"none", "tanh"}) {
    for (const Dims& dims : std::vector<Dims>{{1}, {7}, {3, 5}, {2, 3, 17}, {64, 515}, {4, 96, 512}})
      v.push_back(OpCase(std::string("GeluGrad_") + approximate + "_" + dims_name(dims), "GeluGrad", kGradDomain)
                      .attr("approximate", std::string(approximate))
                      .in(dims, uniform(-3, 3))
                      .in(dims, uniform(-10, 10))
                      .tol(abs_rel(1e-6, 1e-6)));
    // Other float dtypes go to the reference kernel.
    v.push_back(OpCase(std::string("GeluGrad_") + approximate + "_f64", "GeluGrad", kGradDomain)
                    .attr("approximate", std::string(approximate))
                    .in(DType::f64, {3, 9}, uniform(-1, 1))
                    .in(DType::f64, {3, 9}, uniform(-5, 5)));
  }
  return v;
}

std::vector<OpCase> all_cases() {
  std::vector<OpCase> v;
  for (auto f : {softmax_grad_cases, layer_norm_grad_cases, gather_grad_cases, slice_grad_cases, codebook_grad_cases,
                 gelu_grad_cases})
    for (OpCase& c : f()) v.push_back(std::move(c));
  return v;
}

const RegisterOpCases kRegistered(all_cases());

}  // namespace
}  // namespace cb::test
