// What a trained TokFSM model's codes mean (the original's fsm_utils helpers
// and TokFSM tutorial; docs/original.md#tokfsm-code-analysis-and-steering),
// computed through the runtime:
//   * code_assignments: run every state numeral [BOS, digits...] and read
//     each codebook member's codes at the last position, so each code maps
//     to the states that select it;
//   * purity: a code is pure when exactly one input selects it; purity = pure
//     codes / codes seen (per codebook member, aggregated per site);
//   * steering (the tutorial's state steering): for pairs of states
//     (a, b), force b's codes at a's last position at chosen sites and
//     compare the model's next-token distribution with b's: the
//     Jensen-Shannon divergence falls from JSD(a, b) towards 0 as the model
//     behaves like state b.
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

// [BOS, the digits of the state's numeral]: the input whose last position
// the analysis reads and forces.
std::vector<int64_t> state_prompt(const Fsm& fsm, int64_t state);

struct CodeAssignment {
  std::string site;    // "layer0.mlp"
  int64_t member = 0;  // group member (head)
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
  std::string sites;  // description of the forced sites
  int64_t pairs = 0;
  double jsd_clean = 0;   // mean JSD (bits) between a's and b's next-token distributions
  double jsd_forced = 0;  // ... between a's with b's codes forced, and b's
};

// The model's next-token probabilities after [BOS, a's digits] with b's
// codes forced at the last digit, at the codebooks matching site_filters.
std::vector<double> forced_next_token_probs(const ModelFactory& model, const Fsm& fsm,
                                            const std::vector<CodeAssignment>& codes,
                                            const std::vector<std::string>& site_filters, int64_t a, int64_t b,
                                            const Backend& backend, int num_threads);

// For `pairs` random state pairs (seeded), forces b's codes at every member
// of the codebooks whose site matches one of `site_filters` ("mlp" matches
// layerN.mlp; "" matches all) at a's last digit. With same_last_digit, b is
// drawn among the states whose numeral ends in a's last digit: the token at
// the forced position is then right for b too, so what moves the prediction
// is only what the codes carry (the earlier digit reaches that position
// through the attention codebooks alone), whereas with random pairs the
// token embedding in the residual stream still says a's digit.
SteeringResult steering(const ModelFactory& model, const Fsm& fsm, const std::vector<CodeAssignment>& codes,
                        const std::vector<std::string>& site_filters, int64_t pairs, uint64_t seed,
                        const Backend& backend, int num_threads, bool same_last_digit = false);

}  // namespace cb
