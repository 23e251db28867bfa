// codebook.Codebook (ir/codebook.h). The cpu backend's own kernel
// (backends/cpu/codebook_kernel.cpp) against the reference on random inputs
// of a few shapes, both metrics, k from 1 to K. The comparisons that allow
// near-ties, the interventions and the packed constant codes are tested in
// tests/test_codebook_op.cpp (CodebookFastKernel).
#include "ir/codebook.h"

#include <sstream>

#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

std::vector<OpCase> codebook_cases() {
  std::vector<OpCase> v;
  struct Case {
    int64_t B, T, G, K, Dg, k;
  };
  for (const Case& c :
       std::vector<Case>{{1, 1, 1, 1, 1, 1}, {2, 7, 3, 37, 5, 4}, {3, 33, 1, 17, 64, 1}, {1, 13, 1, 40, 3, 12}})
    for (const char* metric : {"inner_product", "euclidean"}) {
      std::ostringstream name;
      name << "Codebook_B" << c.B << "_T" << c.T << "_G" << c.G << "_K" << c.K << "_Dg" << c.Dg << "_k" << c.k << "_"
           << metric;
      // x and codes away from 0, a LayerNorm affine near (1, 0).
      v.push_back(OpCase(name.str(), kCodebookOp, kCodebookDomain)
                      .attr("k", c.k)
                      .attr("metric", std::string(metric))
                      .in({c.B, c.T, c.G * c.Dg}, magnitudes(0.05, 2.0))
                      .in({c.G, c.K, c.Dg}, magnitudes(0.05, 1.5))
                      .in({c.G, c.Dg}, magnitudes(0.5, 1.5))
                      .in({c.G, c.Dg}, magnitudes(0.01, 0.3))
                      .outs({true, true, true})
                      .tol(abs_rel(1e-5, 2e-5)));
    }
  // Constant codes: the cpu kernel packs them once, at compile time.
  v.push_back(OpCase("Codebook_constant_codes", kCodebookOp, kCodebookDomain)
                  .attr("k", int64_t(3))
                  .in({2, 9, 24}, magnitudes(0.05, 2.0))
                  .constant_in(DType::f32, {2, 53, 12}, magnitudes(0.05, 1.5))
                  .in({2, 12}, magnitudes(0.5, 1.5))
                  .in({2, 12}, magnitudes(0.01, 0.3))
                  .outs({true, true, true})
                  .tol(abs_rel(1e-5, 2e-5)));
  return v;
}

const RegisterOpCases kRegistered(codebook_cases());

}  // namespace
}  // namespace cb::test
