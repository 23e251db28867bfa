// Finding the transformer layers of an imported causal LM.
//
// First version: the architecture is recognised from parameter and node
// names (GPT-2 "transformer.h.N.attn.c_attn", GPT-Neo "attn.attention",
// GPT-NeoX "gpt_neox.layers.N"), the layers from the attention Softmax nodes
// in graph order (one per layer in these models), each attributed to a layer
// index when a name carries one. The codebook issue replaces this with a
// structural matcher that also finds every codebook site.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

struct LayerInfo {
  int64_t index = -1;          // from names; -1 when unknown
  std::string attention_node;  // the Softmax of its attention
  std::string attention_kind;  // "global", "local" (banded mask) or "" when unknown
};

struct ModelAnatomy {
  std::string architecture;  // "gpt2", "gpt_neo", "gpt_neox" or "unknown"
  std::vector<LayerInfo> layers;
};

ModelAnatomy find_layers(const Graph& g);

}  // namespace cb
