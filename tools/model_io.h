// Helpers shared by subcommands: loading a model with timing, building the
// standard LM inputs from token ids, finding the vocabulary size, and
// parsing `NAME=FILE` options.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb::tools {

struct LoadedModel {
  std::shared_ptr<Graph> graph;
  double import_ms = 0;
};

// An ONNX file, or a Hugging Face checkpoint folder (config.json + safetensors),
// or a folder the original library saved (model_type "codebook", its base
// config in DIR/base_config.json; frontend/original_checkpoint.h).
LoadedModel load_model(const std::string& path);

// The model file behind `path`: a `codebook train` output folder or checkpoint
// folder gives its model.onnx (the output folder's final one, else its latest
// checkpoint's); anything else is returned as it is.
std::string resolve_model_path(const std::string& path);

// "1,2,3" -> {1,2,3}; throws cb::Error naming the bad item.
std::vector<int64_t> parse_token_list(const std::string& s);
// "1x128" -> {1,128}.
std::vector<int64_t> parse_shape(const std::string& s);

// The vocabulary size: rows of the embedding table gathered by input_ids,
// or -1 when the graph has no such Gather.
int64_t vocab_size(const Graph& g);

// Builds input_ids [batch, seq] plus attention_mask (ones) and position_ids
// (0..seq-1) when the graph has those inputs. Token ids are checked against the
// vocabulary, naming the position of the first bad one.
std::map<std::string, Tensor> lm_inputs(const Graph& g, const std::vector<int64_t>& ids, int64_t batch, int64_t seq);

// Given inputs with an `input_ids` [batch, seq] tensor, adds attention_mask
// (ones) and position_ids (0..seq-1) when the graph wants them and they are
// missing, and checks the token ids against the vocabulary.
void complete_lm_inputs(const Graph& g, std::map<std::string, Tensor>& inputs);

// Output names made safe as file names ("/" and other odd characters -> "_").
std::string file_safe(const std::string& name);

}  // namespace cb::tools
