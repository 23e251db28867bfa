#include "backends/cpu/dnnl_matmul_bound.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <dnnl.hpp>
#include <random>
#include <tuple>

#include "backends/cpu/dnnl_engine.h"
#include "ir/codebook.h"
#include "ir/fused_matmul.h"
#include "support/error.h"

namespace cb {

bool MatMulShape::operator<(const MatMulShape& o) const {
  return std::tie(batch, m, k, n) < std::tie(o.batch, o.m, o.k, o.n);
}

namespace {

std::vector<int64_t> static_dims(const Node& n, const Value* v) {
  CB_CHECK(v && v->type.shape.is_static(), n.describe() << ": operand shapes are not static");
  return v->type.shape.sizes();
}

int64_t product(const std::vector<int64_t>& d, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= d[i];
  return p;
}

}  // namespace

std::vector<MatMulShape> graph_matmul_shapes(const Graph& g) {
  std::vector<MatMulShape> out;
  for (auto& n : g.nodes()) {
    const bool fused = n->domain == kCodebookDomain && n->op_type == kFusedMatMulOp;
    if (!fused && !(n->domain.empty() && (n->op_type == "MatMul" || n->op_type == "Gemm"))) continue;
    std::vector<int64_t> a = static_dims(*n, n->input(0)), b = static_dims(*n, n->input(1));
    std::vector<int64_t> y = static_dims(*n, n->outputs[0]);
    MatMulShape s;
    if (n->op_type == "Gemm" || fused || b.size() <= 2) {  // one [rows, K] x [K, N]
      const bool ta = n->attr_int("transA", 0) != 0, tb = n->attr_int("transB", 0) != 0;
      s.k = n->op_type == "Gemm" && ta ? a[0] : a.back();
      s.n = b.size() == 1 ? 1 : (tb ? b[0] : b[1]);
      s.m = s.k > 0 ? product(a, 0, a.size()) / s.k : 0;
    } else {  // batched: the output's leading dims
      s.k = a.back();
      s.n = b.back();
      s.m = a.size() >= 2 ? a[a.size() - 2] : 1;
      s.batch = product(y, 0, y.size() - 2);
    }
    out.push_back(s);
  }
  return out;
}

double process_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e3 + double(t.tv_nsec) / 1e6;
}

namespace {

// Medians of `runs` executions of the product with B in layout `b_md`.
MatMulTiming time_with_weights(const dnnl::memory::desc& a_md, const dnnl::memory::desc& b_md,
                               const dnnl::memory::desc& c_md, int runs) {
  auto& eng = dnnl_cpu_engine();
  dnnl::stream stream(eng);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), eng);
  dnnl::memory a(a_md, eng), b(pd.weights_desc(), eng), c(c_md, eng);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  for (const dnnl::memory* m : {&a, &b}) {  // the values do not matter, only that they are not denormal
    if (m->get_desc().data_type() == dnnl::memory::data_type::bf16) {
      uint16_t* p = static_cast<uint16_t*>(m->get_data_handle());
      for (size_t i = 0; i < m->get_desc().get_size() / sizeof(uint16_t); ++i) p[i] = bf16_round_bits(uni(rng));
      continue;
    }
    float* p = static_cast<float*>(m->get_data_handle());
    for (size_t i = 0; i < m->get_desc().get_size() / sizeof(float); ++i) p[i] = uni(rng);
  }
  dnnl::matmul prim(pd);
  std::unordered_map<int, dnnl::memory> args = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
  prim.execute(stream, args);
  stream.wait();
  std::vector<double> wall, cpu;
  for (int r = 0; r < std::max(runs, 1); ++r) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = process_cpu_ms();
    prim.execute(stream, args);
    stream.wait();
    cpu.push_back(process_cpu_ms() - c0);
    wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

}  // namespace

MatMulTiming time_dnnl_matmul(const MatMulShape& s, int runs, Precision precision) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const bool batched = s.batch > 1;
  const dt factors = precision == Precision::bf16 ? dt::bf16 : dt::f32;
  auto md = [&](int64_t r, int64_t c, tag t2, tag t3, dt type) {
    return batched ? dnnl::memory::desc({s.batch, r, c}, type, t3) : dnnl::memory::desc({r, c}, type, t2);
  };
  const dnnl::memory::desc a_md = md(s.m, s.k, tag::ab, tag::abc, factors),
                           c_md = md(s.m, s.n, tag::ab, tag::abc, dt::f32);
  const dnnl::memory::desc b_any = md(s.k, s.n, tag::any, tag::any, factors);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_any, c_md), dnnl_cpu_engine());
  MatMulTiming t = time_with_weights(a_md, pd.weights_desc(), c_md, runs);
  // oneDNN's GEMM path answers `any` with row-major [K, N], yet packs B faster
  // from [N, K] for some shapes (backends/cpu/dnnl_matmul.cpp): the bound is the better of the two.
  if (dnnl_is_plain_layout(pd.weights_desc())) {
    MatMulTiming nk = time_with_weights(a_md, md(s.k, s.n, tag::ba, tag::acb, factors), c_md, runs);
    t = {std::min(t.wall_ms, nk.wall_ms), std::min(t.cpu_ms, nk.cpu_ms)};
  }
  return t;
}

}  // namespace cb
