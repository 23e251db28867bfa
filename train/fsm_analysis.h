// What a trained TokFSM model's codes mean (spec §5.4 "FSM analysis
// helpers", §8.3 tutorial), computed through the runtime:
//   * code_assignments: run every state numeral [BOS, digits...] and read
//     each codebook member's codes at the last position, so each code maps
//     to the states that select it;
//   * purity: a code is pure when exactly one input selects it; purity = pure
//     codes / codes seen (per codebook member, aggregated per site);
//   * steering: for pairs of states (a, b), force b's codes at a's last
//     position at chosen sites and measure how many of the model's most
//     likely next states are successors of b (rather than of a).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "ir/graph.h"
#include "train/tokfsm.h"
#include "train/trainer.h"

namespace cb {

struct CodeAssignment {
  std::string site;     // "layer0.mlp"
  int64_t member = 0;   // group member (head)
  int64_t groups = 1;
  // codes[s]: the k codes state s selects at its last digit.
  std::vector<std::vector<int64_t>> codes;
  // code -> states that select it.
  std::map<int64_t, std::vector<int64_t>> states_of_code() const;
  double purity() const;  // pure codes / codes seen
};

// One entry per codebook member, in graph order.
std::vector<CodeAssignment> code_assignments(const ModelFactory& model, const Fsm& fsm, const Backend& backend,
                                             int num_threads);

struct SteeringResult {
  std::string sites;            // description of the forced sites
  int64_t pairs = 0;
  double clean_to_a = 0;        // without forcing: fraction of top next states that follow a
  double forced_to_b = 0;       // forcing b's codes: fraction that follow b
  double forced_to_a = 0;       // ... and that still follow a
};

// For `pairs` random state pairs (seeded), forces b's codes at every member
// of the codebooks whose site matches one of `site_filters` ("mlp" matches
// layerN.mlp; "" matches all) at a's last digit.
SteeringResult steering(const ModelFactory& model, const Fsm& fsm, const std::vector<CodeAssignment>& codes,
                        const std::vector<std::string>& site_filters, int64_t pairs, uint64_t seed,
                        const Backend& backend, int num_threads);

}  // namespace cb
