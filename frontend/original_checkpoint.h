// Models saved by the original Python library (codebook-features, Tamkin,
// Taufeeque, Goodman): a Hugging Face folder whose config.json is a
// CodebookModelConfig (model_type "codebook") and whose model.safetensors
// holds the state dict of the CodebookModel, i.e. the base causal LM under
// "model." with the original's renamings, plus every codebook's tensors
// (docs/codebooks.md, "The original's checkpoints"; spec §4.3, §4.6).
//
// The folder does not describe the base model's architecture: the original
// loads it with wrap_codebook(base_model, pretrained_path=DIR), taking the
// architecture from the base model it is given. So the base config.json
// (GPT-2, GPT-Neo or GPT-NeoX) comes from `base_config` (a file, or a folder
// holding config.json), else from DIR/base_config.json.
//
// The import builds the base model (frontend/hf_import.h) with the saved
// weights, inserts the codebooks with the insertion pass exactly as
// `codebook compile` does (passes/insert_codebooks.h: same sites, names,
// attributes and metadata), and replaces their codes and LayerNorm affines
// with the saved ones. Every tensor of the folder must be used and every
// needed one present; errors name the tensor and the file.
#pragma once
#include <memory>
#include <string>

#include "frontend/hf_import.h"
#include "ir/graph.h"
#include "passes/insert_codebooks.h"
#include "support/json.h"

namespace cb {

// Does DIR/config.json exist with model_type "codebook"?
bool is_original_checkpoint(const std::string& dir);

// The codebook part of a CodebookModelConfig, resolved against the base
// model (num_codebooks -1 = heads, "all" and negative layers), as the
// insertion pass takes it. Placements keep the config's order in
// `placements`; `layers` is empty when layers_to_snap is (no codebooks).
// Throws cb::Error naming the field for values the original rejects, and for
// placements the original cannot build for this architecture (spec §4.2).
struct OriginalCodebookConfig {
  CodebookConfig codebooks;
  bool snaps_no_layer = false;  // layers_to_snap is empty: the base model alone
  std::vector<bool> group;      // per placement: "group" (GroupCodebookLayer) or "vanilla"
};
OriginalCodebookConfig original_codebook_config(const Json& config, const HfConfig& base,
                                                const std::string& what = "config.json");

// The base model's config: `base_config` (FILE or DIR/config.json) when
// given, else DIR/base_config.json; the error for neither says how to give it.
HfConfig original_base_config(const std::string& dir, const std::string& base_config = "");

// The compiled model of the checkpoint folder `dir`.
std::shared_ptr<Graph> import_original_checkpoint(const std::string& dir, const std::string& base_config = "");

}  // namespace cb
