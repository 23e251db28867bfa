// The bf16 register-tile microkernel of the codebook op's bf16 scoring
// (backends/cpu/codebook_kernel.cpp, `--precision bf16`): score_tile.h's
// question, "which columns beat a per-row threshold?", answered with
// VDPBF16PS, which multiplies pairs of bf16 values and adds both products
// to an f32 accumulator, twice the multiply-adds of an f32 FMA per
// instruction.
//
// Layout: a panel holds kBf16Panel columns; for every pair of rows (d, d+1)
// of the column vectors it stores each column's two bf16 values side by
// side, [Dp][kBf16Panel][2] with Dp = ceil(D / 2) (an odd D pads a zero
// row). A row of A is 2 Dp bf16 values (an odd D ends with a zero), whose
// pairs (A[2i], A[2i+1]) the kernel broadcasts against the panel's pairs of
// rows.
//
// The scores are approximate: they are the caller's to bound (the codebook
// kernel re-ranks its candidates with exact f32 scores).
#pragma once
#include <cstdint>

namespace cb {

inline constexpr int kBf16Panel = 32;    // columns per panel: two 16-float vectors
inline constexpr int kBf16TileRows = 8;  // rows per tile (16 accumulators)

// Scores R rows of A (row stride lda bf16 values, 2 Dp each) against one
// panel: score[r][j] = bias[j] + the bf16 dot product of row r and column j.
// masks[r] gets bit j when score[r][j] > thr[r]; when any bit is set, the
// scores are stored in tile[r * kBf16Panel + j] and the function returns
// true.
using Bf16ScoreTileFn = bool (*)(const uint16_t* A, int64_t lda, const uint16_t* panel, const float* bias, int64_t Dp,
                                 const float* thr, float* tile, uint32_t* masks);

// The same, storing every score: score[r][j] at scores[r * ld + j].
using Bf16ScoreStoreFn = void (*)(const uint16_t* A, int64_t lda, const uint16_t* panel, const float* bias, int64_t Dp,
                                  float* scores, int64_t ld);

struct Bf16ScoreTiles {
  Bf16ScoreTileFn by_rows[kBf16TileRows];           // by_rows[R - 1] scores R rows
  Bf16ScoreStoreFn storing_by_rows[kBf16TileRows];  // likewise
};

// The AVX512_BF16 kernels, or null where the CPU lacks the instructions
// (cpu_has_avx512_bf16(): CB_MAX_CPU_ISA=portable also says no).
const Bf16ScoreTiles* bf16_score_tiles();

}  // namespace cb
