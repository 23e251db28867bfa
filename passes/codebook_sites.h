// Site names: how users and tools address one codebook (or one member of a
// group codebook). One scheme everywhere (the original had three):
//   layer{L}.{placement}        e.g. layer0.mlp, layer3.attn_preproj
//   layer{L}.{placement}[{g}]   group member g, e.g. layer3.attn_preproj[5]
// The original library's keys are accepted as aliases: layer3_attn_preproj
// and layer3_attn_preproj_gcb5. Negative L counts from the last layer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/codebook.h"
#include "passes/transformer_anatomy.h"

namespace cb {

struct SiteRef {
  int64_t layer = 0;
  Placement placement = Placement::mlp;
  int64_t group = kAll;  // a group member, or kAll

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

}  // namespace cb
