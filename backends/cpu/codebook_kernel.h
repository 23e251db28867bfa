// The fast CPU kernel of codebook.Codebook (contract in ir/codebook.h):
// a fused score-and-select sweep over the codebook that never materialises
// the [tokens x K] score matrix, parallel over (member, token block).
#pragma once
#include <cstdint>
#include <memory>

#include "backends/backend.h"

namespace cb {

// How a codebook kernel created now ranks codes. Its outputs are the same
// bits either way: bf16 scoring re-ranks its candidates with the f32 sweep's
// arithmetic (codebook_kernel.cpp). bf16 scoring needs AVX512_BF16; by
// default (automatic) a call uses it where VDPBF16PS outruns f32 FMAs
// (backends/cpu/bf16_dot_speed.h) and the codebook is large enough for the
// faster scoring to outweigh the re-ranking (kMinCodesForBf16Scoring).
// CB_CODEBOOK_SCORING=f32 or =bf16 in the environment, read each time,
// forces one (bf16 where the CPU has it).
enum class CodebookScoring { f32, bf16, automatic };
CodebookScoring cpu_codebook_scoring();

// Codes per member from which automatic scoring uses bf16: at k = 8 on a
// Zen 4, bf16 took 1.2x f32's time at 1,000 codes, 0.95x at 2,000, 0.7x at
// 10,000 (before the warm start, which made it 0.85x at TokFSM's 1,000
// codes and k = 1 in random codebooks, but 1.7x once dead-code replacement
// had put ~150 near copies within each token's window).
inline constexpr int64_t kMinCodesForBf16Scoring = 2048;

// Automatic scoring also goes back to f32 for kF32CallsAfterCrowdedWindows
// calls after a bf16 call whose rows kept more than crowded_window(L)
// candidates on average for the exact re-ranking (near copies of codes,
// which dead-code replacement makes in training, all fall within a bf16
// score's error bound of each other, and each is re-scored in f32).
inline constexpr int64_t kF32CallsAfterCrowdedWindows = 64;
constexpr int64_t crowded_window(int64_t list_length) { return 4 * list_length + 16; }

// Registers codebook.Codebook in the CPU backend's table.
void register_cpu_codebook_kernels(KernelFactoryTable& t);

}  // namespace cb
