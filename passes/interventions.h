// Interventions as a pass: ablating, forcing and tapping codes of a compiled
// model (what the original did with hook_kwargs and id hooks). Every
// intervention becomes attributes of the site's codebook.Codebook node
// (ir/codebook.h), so it runs inside the codebook kernel — there are no
// per-call callbacks, unlike the original's hooks — and a graph with no
// interventions is exactly the compiled graph.
//
// Text syntax (the CLI options of the same names; docs/interventions.md):
//   ablate        SITE:CODES[@POSITIONS]   e.g. layer0.mlp:12,40@0,1,2
//   disable_topk  SITE:M[@POSITIONS]       drop the M best codes
//   disable_slot  SITE:SLOTS               zero those slots at every position
//   force         SITE:CODES[@POSITIONS][#SLOT]
//                 e.g. layer0.attn_preproj[5]:123@3#0. Without #SLOT the codes
//                 take slots -1, -2, ... (the last slots, as the original's
//                 tutorials assign them); with it, SLOT, SLOT+1, ...
//                 CODES may be state-of:TOKENS: the codes SITE selects at the
//                 last position when the model runs on TOKENS (resolved by
//                 tools/forced_codes.h before the pass runs).
//   tap           SITE[,SITE...]           expose SITE.input, SITE.ids,
//                                          SITE.scores, SITE.output as outputs;
//                                          layerL.input, layerL.resid_mid and
//                                          layerL.attn_pattern as themselves
// SITE is a site name (passes/codebook_sites.h); without [member] a group
// codebook is targeted as a whole. POSITIONS is a comma list (negative
// counts from the end) or * (every position, the default).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "passes/codebook_sites.h"
#include "passes/pass.h"

namespace cb {

enum class InterventionKind { ablate, disable_topk, disable_slot, force };

struct Intervention {
  InterventionKind kind = InterventionKind::ablate;
  SiteRef site;
  std::vector<int64_t> values;     // codes (ablate, force), {M} (disable_topk), slots (disable_slot)
  std::vector<int64_t> positions;  // empty = every position
  bool has_slot = false;           // force: #SLOT given
  int64_t slot = -1;
  std::vector<int64_t> state_of;  // force: the tokens of state-of:TOKENS (values still empty)
};

// The option an intervention kind is given with ("--ablate", "--force", ...).
const char* intervention_option(InterventionKind kind);

// Parses the text after the option name; throws cb::Error quoting the text.
Intervention parse_intervention(InterventionKind kind, const std::string& text);

struct InterventionSet {
  std::vector<Intervention> items;
  bool zero_ablation = false;     // --ablate-mode zero (keep_k_codes = false)
  std::vector<std::string> taps;  // site names
  bool empty() const { return items.empty() && taps.empty() && !zero_ablation; }
};

// Applies the interventions to the codebook nodes of `g` (adding to any
// already there) and adds the tap outputs. A tap on a site without a
// codebook exposes its activation as SITE.input. Throws cb::Error naming the
// option and site when it has no codebook or a code/member/slot is out of range.
void apply_interventions(Graph& g, const InterventionSet& iv);

// apply_interventions as a pass ("interventions"); an empty set changes nothing.
class InterventionsPass : public Pass {
 public:
  explicit InterventionsPass(InterventionSet iv) : iv_(std::move(iv)) {}
  std::string name() const override { return "interventions"; }
  bool run(Graph& g) override {
    apply_interventions(g, iv_);
    return !iv_.empty();
  }

 private:
  InterventionSet iv_;
};

// Taps the codes of every codebook, and nothing else: SITE.ids (and
// SITE.scores when `scores`) become graph outputs, for reading the codes of
// a whole dataset (`codebook cache build`). Returns the sites in graph order.
std::vector<std::string> tap_all_codes(Graph& g, bool scores);

// The number of transformer layers (from a compiled model's metadata, else
// matched): what negative layers in site names count from.
int64_t num_layers_of(Graph& g);

}  // namespace cb
