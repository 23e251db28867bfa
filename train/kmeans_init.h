// k-means initialisation of codebooks from the model's own activations
// (docs/original.md#group-codebooks-and-k-means-initialisation; unlike the
// original's, group codebooks get their centres too).
//
// The codebooks are bypassed (the model computes its original activations,
// as the original's data-collection mode does) and each site's input is a
// graph output. Training batches 0, 1, ... are run until
// kmeans_init_examples sequences were seen (the last batch may overshoot);
// after each, every codebook member fits one mini-batch k-means step
// (train/kmeans.h, K = its number of codes, seed = codebook seed + member)
// on all tokens of that batch, LayerNorm-ed as the codebook does with its
// initial scale 1 and bias 0. The centres become the codes.
#pragma once
#include "train/train_config.h"

namespace cb {

// The codes of every codebook after k-means, by parameter name.
std::map<std::string, Tensor> kmeans_codes(const ModelFactory& model, const TokenDataset& data,
                                           const TrainRunConfig& run, const Backend& backend);

// `model` with its codebooks' codes set by kmeans_codes (computed once, now).
ModelFactory kmeans_initialized_factory(ModelFactory model, const TokenDataset& data, const TrainRunConfig& run,
                                        const Backend& backend);

}  // namespace cb
