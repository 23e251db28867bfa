// A model with its codebooks taken out: the baselines of `codebook eval`'s
// faithfulness numbers (docs/training.md#faithfulness).
//   bypass: each codebook is an identity (its readers read its input), so
//           the model computes what it computed before the codebooks went in
//           (as k-means initialisation runs it);
//   zero:   each codebook's readers read zeros of its input's shape (zero
//           ablation of every codebook site at once).
#pragma once
#include <cstdint>

#include "ir/graph.h"

namespace cb {

enum class CodebookRemoval { bypass, zero };

// Rewrites `model` in place; returns how many codebooks it removed.
int64_t remove_codebooks(Graph& model, CodebookRemoval how);

}  // namespace cb
