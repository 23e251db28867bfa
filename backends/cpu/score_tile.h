// The register-tile microkernel shared by the codebook op's CPU kernel
// (backends/cpu/codebook_kernel.cpp: which codes score highest for each
// token) and k-means (train/kmeans.cpp: which centre is nearest to each row).
// Both pack their code/centre vectors in panels of kScorePanel columns,
// [D][kScorePanel] floats, with one additive bias per column, and ask: which
// columns beat a per-row threshold? A tile of up to kScoreTileRows rows x 16
// columns stays in registers; only the scores that beat the threshold leave
// them, so a sweep over many panels rarely writes anything.
#pragma once
#include <cstdint>

namespace cb {

inline constexpr int kScorePanel = 16;    // columns per panel: two 8-float vectors
inline constexpr int kScoreTileRows = 6;  // rows per tile (12 accumulators)

// Scores R rows of A (row stride lda, D floats each) against one panel:
// score[r][j] = bias[j] + sum_d A[r][d] * panel[d][j], summed in d order
// (the same bits on every path). masks[r] gets bit j when score[r][j] >
// thr[r]; when any bit is set, the scores are stored in tile[r * kScorePanel
// + j] and the function returns true.
using ScoreTileFn = bool (*)(const float* A, int64_t lda, const float* panel, const float* bias, int64_t D,
                             const float* thr, float* tile, uint32_t* masks);

struct ScoreTiles {
  ScoreTileFn by_rows[kScoreTileRows];  // by_rows[R - 1] scores R rows
  bool avx2 = false;                    // the AVX2+FMA path (else portable C++)
};

// The fastest path this CPU runs (support/cpu_features.h; CB_MAX_CPU_ISA=
// portable selects the portable one, which is how the tests cover it).
const ScoreTiles& score_tiles();

}  // namespace cb
