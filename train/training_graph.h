// The graphs a training run executes, built from a (compiled) model graph:
//
//   eval step:  model forward -> causal-LM loss and next-token accuracy, plus
//               per codebook its selected ids and reconstruction error;
//   train step: the same, then the backward (passes/autodiff.h) and the
//               optimizer update (train/optimizer.h) in the same graph.
//
// The trained parameters (train/parameters.h) become graph inputs; the train
// step outputs their updated values and optimizer states under "<name>.next",
// which the trainer feeds back at the next step, so one step is one
// Executable::run and parameters never leave the runtime's tensors.
// Data-parallel training (separate_optimizer) cuts the train step in two: the
// step graph ends with the gradients as outputs, and the optimizer update is a
// graph of its own that takes them as inputs, so the trainer can sum them over
// the ranks in between (train/collective.h).
//
// Loss (the Hugging Face causal-LM loss, as in the original): mean over the
// B x (T-1) predictions of -log softmax(logits[:, t])[input_ids[:, t+1]]
// (labels = input ids, shifted); accuracy: the fraction of those whose argmax
// is the label.
//
// Which parameters train (docs/original.md#which-parameters-train):
//   codebooks: codes, LayerNorm scale and bias of every codebook (lr factor 1,
//     weight decay `codebook_weight_decay`, which is an ordinary AdamW decay
//     here and therefore really applies; the original's never did);
//   model: every model parameter when train_model (lr factor
//     model_lr_factor, weight decay model_weight_decay); otherwise frozen:
//     no gradient work at all.
// compat_original reproduces the original's parameter collection for users
// who need its published recipe: vanilla codebooks at mlp, mlp_mid, attn, qkv
// and transformer_block never train their LayerNorm; the attention
// projections under attn_preproj codebooks and the whole block under
// attn_plus_mlp codebooks stay frozen; and without train_model the model's
// gradients are still computed and counted in grad-norm clipping (lr 0),
// with AdamW's default weight decay 0.01 on the codebooks.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "train/optimizer.h"

namespace cb {

inline constexpr const char* kLossOutput = "loss";
inline constexpr const char* kAccuracyOutput = "accuracy";

struct StepGraphOptions {
  bool train_model = true;
  float model_lr_factor = 1.f;
  float model_weight_decay = 0.f;
  float codebook_weight_decay = 0.f;
  bool compat_original = false;
  OptimizerConfig optimizer;
  // Also output every codebook's LayerNorm-ed input (for dead-code replacement).
  bool codebook_inputs = false;
  // Also output every codebook's input u and output y per member (for the
  // relative MSE and explained variance of an evaluation); implies the inputs.
  bool codebook_reconstructions = false;
  // Train step: output the gradients and put the optimizer update in a graph
  // of its own (StepGraph::optimizer) instead of after the backward.
  bool separate_optimizer = false;
  // Fuse each attention into codebook.Attention before autodiff, so its
  // backward is one AttentionGrad (passes/gradients/attention.cpp); off:
  // the exported ops and their own gradients (a test's reference).
  bool fuse_attention = true;
};

// One codebook node of the model, and the step-graph names that concern it.
struct CodebookOutputs {
  std::string site;  // "layer0.mlp"
  int64_t groups = 0, num_codes = 0, k = 0, width = 0;
  std::string codes, ln_scale, ln_bias;  // parameter names
  std::string ids;                       // output i64 [B, T, G, k]
  std::string mse;                       // output f32 scalar: mean over tokens and members of |u_g - y_g|^2
  std::string input;                     // output f32 [B, T, G, D/G]: u (LayerNorm-ed input); "" unless asked
  std::string output;                    // output f32 [B, T, G, D/G]: y (the codebook's output); "" unless asked
};

struct StepGraph {
  std::shared_ptr<Graph> graph;
  // Graph inputs other than parameters and optimizer inputs (input_ids, and
  // attention_mask / position_ids when the model has them).
  std::vector<std::string> data_inputs;
  // Trained parameters (graph inputs), and their initial values.
  std::vector<std::string> parameters;
  std::map<std::string, Tensor> initial;
  // Train step only: input -> output feedback pairs (parameters first, then
  // optimizer states, whose initial values are zeros in `initial`).
  std::vector<std::pair<std::string, std::string>> updates;
  // With separate_optimizer: the gradient outputs, one per parameter in the
  // order of `parameters`, and the optimizer graph. Its inputs are the
  // parameters and these gradients (under the same names), the optimizer
  // states, step and learning rate; its outputs the `updates` and the grad norm.
  std::vector<std::string> gradients;
  std::shared_ptr<Graph> optimizer;
  // Parameter groups of the optimizer, by parameter name (for logs).
  std::map<std::string, std::vector<std::string>> groups;
  std::vector<CodebookOutputs> codebooks;
};

// Takes over `model` (a model graph whose first output is the logits [B,T,V]
// and whose input_ids input is i64 [B,T]) and builds the step graph on it.
// Throws cb::Error when the model has no such logits/input_ids, or when
// nothing would be trained in a train step.
StepGraph build_eval_graph(std::shared_ptr<Graph> model, const StepGraphOptions& opts);
StepGraph build_train_graph(std::shared_ptr<Graph> model, const StepGraphOptions& opts);

// The inputs of a causal LM for token ids i64 [B, T]: input_ids, plus
// attention_mask (ones) and position_ids (0..T-1) when the graph has them.
// Throws cb::Error naming any other non-parameter input it cannot fill.
std::map<std::string, Tensor> causal_lm_feeds(const std::vector<std::string>& input_names, const Tensor& ids);
std::map<std::string, Tensor> causal_lm_feeds(const Graph& g, const Tensor& ids);

}  // namespace cb
