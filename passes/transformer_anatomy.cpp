#include "passes/transformer_anatomy.h"

#include <regex>

namespace cb {

static bool any_name_contains(const Graph& g, const std::string& s) {
  for (auto& v : g.values())
    if (v->name.find(s) != std::string::npos) return true;
  for (auto& n : g.nodes())
    if (n->name.find(s) != std::string::npos) return true;
  return false;
}

// GPT-Neo's local attention layers mask with a band: the causal-mask constant
// feeding the attention has zeros far below the diagonal. We look for a
// constant boolean/float [.., T, T] mask feeding a Where before the Softmax.
static std::string attention_kind(const Node& softmax) {
  const Node* n = softmax.inputs.empty() || !softmax.inputs[0] ? nullptr : softmax.inputs[0]->producer;
  for (int depth = 0; n && depth < 6; ++depth) {
    for (const Value* in : n->inputs) {
      if (!in || !in->constant || in->constant->rank() < 2) continue;
      const Tensor& t = *in->constant;
      int64_t r = t.dim(t.rank() - 2), c = t.dim(t.rank() - 1);
      if (r < 2 || r != c || t.dtype() != DType::boolean) continue;
      bool band = false;  // some row cannot see token 0
      for (int64_t i = 1; i < r && !band; ++i) band = !t.data<bool>()[i * c];
      return band ? "local" : "global";
    }
    const Value* next = n->inputs.empty() ? nullptr : n->inputs[0];
    n = next ? next->producer : nullptr;
  }
  return "";
}

ModelAnatomy find_layers(const Graph& g) {
  ModelAnatomy a;
  if (any_name_contains(g, "gpt_neox")) a.architecture = "gpt_neox";
  else if (any_name_contains(g, "attn.attention") || any_name_contains(g, "attn/attention")) a.architecture = "gpt_neo";
  else if (any_name_contains(g, "c_attn")) a.architecture = "gpt2";
  else a.architecture = "unknown";
  static const std::regex layer_re(R"((?:^|[./])(?:h|layers|layer|blocks)[./](\d+)[./])");
  for (auto& n : g.nodes()) {
    if (n->op_type != "Softmax") continue;
    LayerInfo li;
    li.attention_node = n->name;
    std::smatch m;
    if (std::regex_search(n->name, m, layer_re)) li.index = std::stoll(m[1]);
    li.attention_kind = attention_kind(*n);
    a.layers.push_back(li);
  }
  // Layers without a named index are numbered in graph order.
  bool all_unnamed = true;
  for (auto& l : a.layers) all_unnamed &= l.index < 0;
  if (all_unnamed)
    for (size_t i = 0; i < a.layers.size(); ++i) a.layers[i].index = int64_t(i);
  return a;
}

}  // namespace cb
