// Compute precision of matrix products (docs/precision.md).
//
// A graph runs in f32 unless a pass (passes/bf16_matmuls.h) marks nodes with
// the attribute precision = "bf16". A marked MatMul, Gemm or
// codebook.FusedMatMul still takes and returns f32 tensors, but multiplies
// bf16 roundings of its two factors (A and B; the bias, the accumulation and
// the epilogue stay f32). That is the whole contract, and the reference
// backend implements it literally (round, then the f32 product), so a fast
// kernel is tested against it like any other.
//
// The rounding is the one x86's VCVTNEPS2BF16 does: to nearest, ties to
// even, with denormal inputs read as zero; NaN stays NaN.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

#include "ir/dtype.h"
#include "ir/graph.h"

namespace cb {

enum class Precision { f32, bf16 };

inline constexpr const char* kPrecisionAttr = "precision";
// The model metadata key `codebook compile --precision` writes: the precision
// run, bench and generate use for the model unless told otherwise.
inline constexpr const char* kPrecisionMetadataKey = "codebook.precision";

// "f32" / "bf16".
const char* precision_name(Precision p);
// Parses "f32" (also "fp32") or "bf16"; throws cb::Error naming `where`
// (an option or a config key) and the accepted values otherwise.
Precision parse_precision(const std::string& text, const std::string& where);

// The node's precision attribute (f32 when absent); throws cb::Error naming
// the node for a value other than f32 or bf16.
Precision node_precision(const Node& n);

// The bf16 rounding of the precision mode, as bits and as the f32 it stands for.
// (ir/dtype.h's float_to_bf16 keeps denormals: it converts data, this matches the hardware.)
inline uint16_t bf16_round_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0) return uint16_t((u >> 16) & 0x8000u);           // zero or denormal: signed zero
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);  // NaN stays (quiet) NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                            // to nearest, ties to even
  return uint16_t(u >> 16);
}

inline float bf16_round(float f) { return bf16_to_float(bf16_round_bits(f)); }  // bf16_to_float: ir/dtype.h

}  // namespace cb
