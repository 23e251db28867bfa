// The YAML we read: training configs whose keys mirror the original
// library's Hydra configs (main.yaml, fsm_main.yaml), parsed into cb::Json.
//
// Supported (the subset those configs use; anything else is an error naming
// the line): block mappings (`key: value`, `key:` + an indented block), block
// sequences (`- value`, `- key: value` items), flow sequences and mappings on
// one line (`[a, b]`, `{k: v}`), '#' comments, and scalars: null/~,
// true/false (also True/False), integers, floats (1e-3, .5, 5.0e-4), quoted
// strings ('it''s', "a\tb") and plain strings. Tabs for indentation, anchors,
// tags, multi-line scalars, multiple documents and nesting deeper than 512
// levels are rejected. docs/support.md says why this is not yaml-cpp.
//
// Overrides use Hydra's form `a.b.c=value`, the value read as a YAML scalar or
// flow collection: `training.learning_rate=1e-3`, `codebook_at=[mlp,attn]`.
#pragma once
#include <string>
#include <vector>

#include "support/json.h"

namespace cb {

// Throws cb::Error "<what>:<line>: <message>" on bad input ("<what>:<line>:<column>: ..."
// for nesting too deep).
Json parse_yaml(const std::string& text, const std::string& what = "yaml");
Json read_yaml_file(const std::string& path);

// Applies "a.b=value" to `config` (creating intermediate objects). Throws
// cb::Error naming the override when it is malformed.
void apply_override(Json& config, const std::string& assignment);

}  // namespace cb
