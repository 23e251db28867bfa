// Next-token distributions from LM logits, and the Jensen-Shannon divergence
// between two of them, in bits (log base 2, so it lies in [0, 1]; the
// original's JSD is the same in nats, i.e. ln 2 times this; averaged over
// batch rows; docs/original.md#jensen-shannon-divergence).
#pragma once
#include <cstdint>
#include <vector>

#include "ir/tensor.h"

namespace cb::tools {

// softmax(logits[row, position, :]) in double precision; position < 0 counts
// from the end. Throws cb::Error unless logits is a float [batch, seq, vocab].
std::vector<double> next_token_probs(const Tensor& logits, int64_t row, int64_t position = -1);

// JSD(p, q) = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, in bits.
double jensen_shannon(const std::vector<double>& p, const std::vector<double>& q);

// Mean JSD over the batch rows at `position` (the original's "batchmean").
double jensen_shannon_batchmean(const Tensor& logits_a, const Tensor& logits_b, int64_t position = -1);

// jensen_shannon_batchmean at every position 0..seq-1.
std::vector<double> jensen_shannon_per_position(const Tensor& logits_a, const Tensor& logits_b);

// The `k` most likely token ids, most likely first (ties: lower id first).
std::vector<int64_t> top_tokens(const std::vector<double>& probs, int k);

}  // namespace cb::tools
