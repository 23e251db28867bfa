// Interventions that cannot change anything: a position past the sequence is
// an error (check_intervention_positions); the others are said on stderr
// instead of a silent Jensen-Shannon divergence of 0: an ablated code that
// the run without interventions does not select there, a forced code that
// already sits in its slot, --disable-topk of 0 codes.
#pragma once
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "ir/tensor.h"
#include "passes/interventions.h"

namespace cb::tools {

// Throws cb::Error naming the intervention (its option as written), the
// position and the sequence length when a position is past a sequence of
// `seq_len` tokens (p >= seq_len or p < -seq_len): it would change nothing.
void check_intervention_positions(const InterventionSet& iv, int64_t seq_len);

// Whether the checks need the code ids of a run without interventions
// (ablations or forces present).
bool needs_clean_ids(const InterventionSet& iv);

// Adds to a graph without interventions the taps whose SITE.ids the checks read.
void tap_intervened_sites(Graph& g, const InterventionSet& iv);

// Writes one "warning: ..." line per intervention without effect. `seq_len`
// (-1: unknown) bounds the positions (one past it is warned about, for
// callers that did not check_intervention_positions); `clean` holds the clean run's outputs by
// name (SITE.ids [B, T, G, k]); sites missing there are not checked for codes.
// Site layers are resolved with `num_layers`.
void warn_ineffective_interventions(const InterventionSet& iv, int64_t num_layers, int64_t seq_len,
                                    const std::map<std::string, const Tensor*>& clean, std::ostream& err);

}  // namespace cb::tools
