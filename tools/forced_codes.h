// The codes a --force puts in, given by state rather than by number: the
// state-of:TOKENS form (the codes a site selects at the last position of
// TOKENS) and --force-file FILE.json (many sites in one file). Syntax and
// file format: docs/interventions.md#forcing-a-state.
#pragma once
#include <string>
#include <vector>

#include "passes/interventions.h"

namespace cb::tools {

// The force interventions of a --force-file:
//   {"force": [{"site": "layer0.attn_preproj[1]", "positions": [3], "codes": [5, 9], "slot": 0},
//              {"site": "layer0.mlp", "positions": "*", "state_of": [0, 3, 1]}, ...]}
// "positions" (default "*") and "slot" are optional; each entry has "codes"
// or "state_of". An entry means exactly what the --force flag of the same
// fields means. Throws cb::Error naming the file and entry.
std::vector<Intervention> read_force_file(const std::string& path);

// Replaces every force with state-of:TOKENS by forces of the codes each
// member of its site selects at the last position when the model at
// `model_path` runs on TOKENS (without interventions): one force per member
// for a group site named without [member].
void resolve_state_of(InterventionSet& iv, const std::string& model_path, const std::string& backend, int threads);

}  // namespace cb::tools
