// codebook.FusedMatMul (ir/fused_matmul.h). The cpu backend runs it through
// oneDNN (bias and GELU as post-ops; a constant B prepacked once, a B fed at
// run time used as it is; one row through its GEMV; a constant weight wider
// than deep packed as [N, K] up to 512 rows): a different summation
// order and GELU approximation than the reference, hence a tolerance.
#include "ir/fused_matmul.h"

#include "ir/codebook.h"
#include "tests/op_cases/op_case.h"

namespace cb::test {
namespace {

const Values kUnit = uniform(-1, 1);

std::vector<OpCase> fused_matmul_cases() {
  std::vector<OpCase> v;
  struct Form {
    const char* name;
    Dims a;
    const char* activation;
  };
  // Batch rows (flattened into one GEMM), a 2-D A, one row (the GEMV path), each activation.
  for (const Form& f : std::vector<Form>{{"rows", {2, 7, 33}, "none"},
                                         {"matrix", {5, 33}, "none"},
                                         {"one_row", {1, 1, 33}, "none"},
                                         {"rows_gelu_tanh", {2, 7, 33}, "gelu_tanh"},
                                         {"rows_gelu_erf", {2, 7, 33}, "gelu_erf"},
                                         {"one_row_gelu_tanh", {1, 1, 33}, "gelu_tanh"}})
    for (int64_t tb = 0; tb < 2; ++tb)
      for (bool constant_b : {true, false}) {
        const Dims w = tb ? Dims{40, 33} : Dims{33, 40};  // wider than deep: packed as [N, K] when constant
        OpCase c(std::string("FusedMatMul_") + f.name + "_tB" + std::to_string(tb) + (constant_b ? "_constant_B" : ""),
                 kFusedMatMulOp, kCodebookDomain);
        c.attr("transB", tb).attr("activation", std::string(f.activation)).in(f.a, kUnit);
        if (constant_b)
          c.constant_in(DType::f32, w, kUnit);
        else
          c.in(w, kUnit);
        v.push_back(c.in({40}, kUnit).tol(abs_rel(1e-4, 1e-4)));
      }
  // Over 512 rows a constant weight keeps its own layout.
  v.push_back(OpCase("FusedMatMul_many_rows_constant_B", kFusedMatMulOp, kCodebookDomain)
                  .in({2, 300, 8}, kUnit)
                  .constant_in(DType::f32, {8, 24}, kUnit)
                  .in({24}, kUnit)
                  .tol(abs_rel(1e-4, 1e-4)));
  for (bool constant_b : {true, false}) {  // no bias
    OpCase c(std::string("FusedMatMul_no_bias") + (constant_b ? "_constant_B" : ""), kFusedMatMulOp, kCodebookDomain);
    c.attr("activation", std::string("gelu_tanh")).in({3, 4, 40}, kUnit);
    if (constant_b)
      c.constant_in(DType::f32, {40, 24}, kUnit);
    else
      c.in({40, 24}, kUnit);
    v.push_back(c.tol(abs_rel(1e-4, 1e-4)));
  }
  return v;
}

const RegisterOpCases kRegistered(fused_matmul_cases());

}  // namespace
}  // namespace cb::test
