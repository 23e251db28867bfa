// The paper's neuron baseline for code search (codebook-spec §6.3; docs/cache.md
// "The neuron baseline"): for the tokens a regex matched and a code's recall
// r, the best single MLP neuron at the same recall. Per neuron, with m matched
// tokens and n = ⌊r·m⌋ (the code's hits): τ = the n-th largest activation of
// the neuron over the matched tokens, precision = n / #(cached tokens whose
// activation >= τ); the best neuron has the highest precision.
//
// The activations (every layer's mlp_mid: the MLP's hidden units) come from
// running the cache's model over the cache's rows, twice: first the matched
// tokens' activations are kept, then every token's are compared with the
// thresholds. Neither pass keeps more than the matched tokens' activations of
// a block of neurons that fits the memory bound; more neurons than that take
// more pass pairs.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tools/cache/code_cache.h"

namespace cb::cache {

struct NeuronMatch {
  int64_t layer = -1, unit = -1;  // the best neuron
  double precision = 0;
  float threshold = 0;  // its τ
};

// A neuron layer: its name ("layer0.mlp_mid") and number of units.
struct NeuronLayer {
  std::string name;
  int64_t layer = 0;
  int64_t units = 0;
};

// Streams activations: calls visit(first_token, tokens, acts) for consecutive
// token ranges covering the cache once, in order; acts is [tokens, total
// units] (the layers' units side by side, layer order).
using ActivationVisitor = std::function<void(int64_t first_token, int64_t tokens, const float* acts)>;
using ActivationSource = std::function<void(const ActivationVisitor& visit)>;

// The best neuron for each target count n (a code's hits) given the matched
// positions (ascending): the algorithm, for any source of activations.
std::vector<NeuronMatch> best_neurons_from(const ActivationSource& source, const std::vector<NeuronLayer>& layers,
                                           const std::vector<int64_t>& positions, const std::vector<int64_t>& targets,
                                           int threads, size_t memory_bytes = size_t(1) << 30);

// The cache's model (manifest model.file, checked against model.sha256) run
// over the cache's rows with taps of every layer's mlp_mid. A relative
// model.file is looked up beside the cache first, then from the working
// directory.
struct ModelActivations {
  std::vector<NeuronLayer> layers;
  ActivationSource source;
};
ModelActivations model_activations(const CodeCache& cache, int threads);

// best_neurons_from with the cache's model.
std::vector<NeuronMatch> best_neurons(const CodeCache& cache, const std::vector<int64_t>& positions,
                                      const std::vector<int64_t>& targets, int threads);

}  // namespace cb::cache
