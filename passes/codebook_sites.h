// Site names: how users and tools address one codebook (or one member of a
// group codebook). One scheme everywhere (the original had three):
//   layer{L}.{placement}        e.g. layer0.mlp, layer3.attn_preproj
//   layer{L}.{placement}[{g}]   group member g, e.g. layer3.attn_preproj[5]
// The original library's keys are accepted as aliases: layer3_attn_preproj
// and layer3_attn_preproj_gcb5. Negative L counts from the last layer.
// Besides the codebook placements, three activations can be tapped (not
// quantised): layer{L}.input (the residual stream entering block L),
// layer{L}.resid_mid (input + attn, sequential residual only) and
// layer{L}.attn_pattern (the attention probabilities [B, H, T, T]).
// TransformerLens hook names are aliases where they mean the same value
// (docs/interventions.md#site-names): blocks.3.hook_resid_pre = layer3.input,
// blocks.3.attn.hook_z = layer3.attn_preproj, blocks.3.hook_mlp_out = layer3.mlp, ...
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/codebook.h"
#include "passes/transformer_anatomy.h"

namespace cb {

// What a site name points at: a codebook placement or an activation that can
// only be tapped.
enum class SitePoint { placement, input, resid_mid, attn_pattern };

struct SiteRef {
  int64_t layer = 0;
  Placement placement = Placement::mlp;  // when point == placement
  int64_t group = kAll;                  // a group member, or kAll
  SitePoint point = SitePoint::placement;

  bool is_codebook_site() const { return point == SitePoint::placement; }

  std::string name() const;  // canonical "layer0.mlp" / "layer0.mlp[5]"
  // The site without its member: "layer0.mlp".
  std::string site() const;
};

// Parses a site name or alias. `num_layers` (> 0) resolves negative layers
// and range-checks; pass -1 to skip. Throws cb::Error naming the text.
SiteRef parse_site(const std::string& text, int64_t num_layers = -1);

// The integers of the command-line syntax (sites, interventions, token lists):
// "12" and "1,-2,3". Errors say "bad <what> '<item>'" plus " in '<context>'"
// when a context is given.
int64_t parse_int(const std::string& item, const std::string& what, const std::string& context = "");
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what, const std::string& context = "");
// The inverse: "3,17,42".
std::string int_list_text(const std::vector<int64_t>& v);

}  // namespace cb
