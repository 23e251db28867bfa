#include "train/training_graph.h"

#include <climits>
#include <set>

#include "ir/builder.h"
#include "ir/codebook.h"
#include "ir/verifier.h"
#include "passes/autodiff.h"
#include "passes/canonicalize.h"
#include "passes/fold_attention_layouts.h"
#include "passes/fuse_attention.h"
#include "passes/fuse_gelu.h"
#include "passes/fuse_layer_norm.h"
#include "passes/gemm_for_weights.h"
#include "support/error.h"
#include "train/parameters.h"

namespace cb {
namespace {

// The step graph's own nodes and constants are named "step/<name>".
Builder step_builder(Graph& g) {
  Builder b(g);
  b.set_scope("step");
  return b;
}

// x[start:end] along one axis, its bounds named after it.
Value* slice(Builder& b, Value* x, int64_t start, int64_t end, int64_t axis, const std::string& name) {
  return b.named_op("Slice",
                    {x, b.i64s({start}, name + "_start"), b.i64s({end}, name + "_end"), b.i64s({axis}, name + "_axis")},
                    name);
}

Value* find_input_ids(const Graph& g) {
  for (Value* in : g.inputs)
    if (in->name.find("input_ids") != std::string::npos && in->type.dtype == DType::i64) return in;
  throw Error("the model has no i64 input named input_ids: a causal LM is needed for training");
}

struct LossValues {
  Value* loss = nullptr;
  Value* accuracy = nullptr;
};

// Causal-LM cross-entropy and next-token accuracy over predictions 0..T-2.
LossValues append_lm_loss(Graph& g, Value* logits, Value* input_ids) {
  Builder b = step_builder(g);
  Value* shifted = slice(b, logits, 0, -1, 1, "logits_shifted");
  Value* labels = slice(b, input_ids, 1, INT64_MAX, 1, "labels");
  Value* logp = b.named_op("LogSoftmax", {shifted}, "log_probs", {{"axis", int64_t(-1)}});
  Value* picked =
      b.named_op("GatherElements", {logp, b.named_op("Unsqueeze", {labels, b.i64s({-1}, "last")}, "labels_col")},
                 "label_log_probs", {{"axis", int64_t(-1)}});
  Value* mean = b.named_op("ReduceMean", {picked}, "mean_log_prob", {{"keepdims", int64_t(0)}});
  LossValues out;
  out.loss = g.add_value(kLossOutput);
  b.create("Neg", {mean}, {out.loss}, {}, b.scoped("loss"));
  Value* pred = b.named_op("ArgMax", {shifted}, "predictions", {{"axis", int64_t(-1)}, {"keepdims", int64_t(0)}});
  Value* hit = b.named_op("Cast", {b.named_op("Equal", {pred, labels}, "correct")}, "correct_f32",
                          {{"to", int64_t(dtype_to_onnx(DType::f32))}});
  out.accuracy = g.add_value(kAccuracyOutput);
  b.create("ReduceMean", {hit}, {out.accuracy}, {{"keepdims", int64_t(0)}}, b.scoped("accuracy"));
  return out;
}

// ids, reconstruction error (and u) of every codebook as graph outputs.
std::vector<CodebookOutputs> append_codebook_outputs(Graph& g, bool with_inputs, bool with_outputs) {
  std::vector<CodebookOutputs> out;
  std::vector<Node*> cbs;
  for (auto& n : g.nodes())
    if (n->domain == kCodebookDomain && n->op_type == kCodebookOp) cbs.push_back(n.get());
  for (Node* node : cbs) {
    CodebookOutputs c;
    c.site = node->attr_string("site", node->name);
    // The codes are a graph input by now (parameterize): read its type.
    std::vector<int64_t> codes = node->input(1)->type.shape.sizes();
    CB_CHECK(codes.size() == 3, node->describe() << ": codes of rank " << codes.size());
    c.groups = codes[0];
    c.num_codes = codes[1];
    c.width = c.groups * codes[2];
    c.k = node->attr_int("k", 1);
    c.codes = node->input(1)->name;
    c.ln_scale = node->input(2)->name;
    c.ln_bias = node->input(3)->name;
    if (node->outputs.size() < 2) node->outputs.resize(2, nullptr);
    if (!node->outputs[1]) {
      Value* ids = g.add_value(g.unique_name(node->name + "/ids"));
      ids->producer = node;
      ids->producer_output = 1;
      node->outputs[1] = ids;
    }
    Value* ids = node->outputs[1];
    g.outputs.push_back(ids);
    c.ids = ids->name;

    Builder b = step_builder(g);
    const std::string p = c.site + "/";
    int64_t d = codes[2];
    Value* x = b.named_op("Reshape", {node->input(0), b.i64s({0, 0, c.groups, d}, p + "member_shape")}, p + "members");
    Value* normed =
        b.named_op("LayerNormalization",
                   {x, b.constant(Tensor::from_vector<float>(std::vector<float>(size_t(d), 1.f), {d}), p + "ones"),
                    b.constant(Tensor::from_vector<float>(std::vector<float>(size_t(d), 0.f), {d}), p + "zeros")},
                   p + "normed", {{"axis", int64_t(-1)}, {"epsilon", node->attr_float("epsilon", 1e-5f)}});
    Value* u = b.named_op("Add", {b.named_op("Mul", {normed, node->input(2)}, p + "scaled"), node->input(3)}, p + "u");
    Value* y =
        b.named_op("Reshape", {node->outputs[0], b.i64s({0, 0, c.groups, d}, p + "member_shape")}, p + "y_members");
    Value* diff = b.named_op("Sub", {u, y}, p + "residual");
    Value* sq = b.named_op("ReduceSum", {b.named_op("Mul", {diff, diff}, p + "residual_sq"), b.i64s({-1}, p + "last")},
                           p + "sq_error", {{"keepdims", int64_t(0)}});
    Value* mse = b.named_op("ReduceMean", {sq}, p + "mse", {{"keepdims", int64_t(0)}});
    g.outputs.push_back(mse);
    c.mse = mse->name;
    if (with_inputs || with_outputs) {
      g.outputs.push_back(u);
      c.input = u->name;
    }
    if (with_outputs) {
      g.outputs.push_back(y);
      c.output = y->name;
    }
    out.push_back(c);
  }
  return out;
}

// Placements whose vanilla codebooks the original wraps around a module and
// whose LayerNorm it therefore never trains
// (docs/original.md#which-parameters-train).
bool wrapper_placement(const std::string& site) {
  size_t dot = site.find('.');
  std::string p = dot == std::string::npos ? site : site.substr(dot + 1);
  p = p.substr(0, p.find('['));
  return p == "mlp" || p == "mlp_mid" || p == "attn" || p == "qkv" || p == "transformer_block";
}

std::vector<std::string> names_of(const std::vector<Value*>& vs) {
  std::vector<std::string> out;
  for (Value* v : vs) out.push_back(v->name);
  return out;
}

StepGraph build_common(std::shared_ptr<Graph> model, const StepGraphOptions& opts, bool train) {
  CB_CHECK(model && !model->outputs.empty(), "the model has no outputs");
  StepGraph s;
  s.graph = model;
  Graph& g = *model;
  infer_types(g);
  // One Gelu node per decomposed GELU, so one GeluGrad in the backward.
  FuseGeluPass fuse;
  PassManager().run(fuse, g);
  // One LayerNormalization per decomposed LayerNorm (opset < 17 exports): its
  // affine is then found as a LayerNorm's, and the backward is one node.
  FuseLayerNormPass fuse_layer_norm;
  PassManager().run(fuse_layer_norm, g);
  Value* input_ids = find_input_ids(g);
  Value* logits = g.outputs[0];
  CB_CHECK(logits->type.shape.rank_known && logits->type.shape.dims.size() == 3 && logits->type.dtype == DType::f32,
           "the model's first output '" << logits->name << "' is " << logits->type.str()
                                        << ", not f32 logits [batch, sequence, vocab]");
  for (Value* in : g.inputs) s.data_inputs.push_back(in->name);

  // Which parameters train.
  std::vector<Value*> cb_params, model_params, frozen_model_grads;
  std::set<const Value*> skip;
  if (opts.compat_original) {
    for (auto& n : g.nodes())
      if (n->domain == kCodebookDomain && n->op_type == kCodebookOp && n->input(1)->constant->dim(0) == 1 &&
          wrapper_placement(n->attr_string("site", "")))
        skip.insert({n->input(2), n->input(3)});
    for (Value* v : original_frozen_parameters(g)) skip.insert(v);
  }
  for (Value* v : codebook_parameters(g))
    if (!skip.count(v)) cb_params.push_back(v);
  for (Value* v : model_parameters(g)) {
    if (skip.count(v)) continue;
    if (opts.train_model)
      model_params.push_back(v);
    else if (opts.compat_original)
      frozen_model_grads.push_back(v);
  }
  if (train)
    CB_CHECK(!cb_params.empty() || !model_params.empty(),
             "nothing to train: the model has no codebooks and model parameters are frozen (train_model_params)");

  std::vector<Value*> trained = cb_params;
  trained.insert(trained.end(), model_params.begin(), model_params.end());
  trained.insert(trained.end(), frozen_model_grads.begin(), frozen_model_grads.end());
  s.initial = parameterize(g, trained);
  // A tied LM head reads the embedding table as it is (no transposed copy a
  // step); biases are added in the products' epilogues. After the parameters
  // are found: their roles and the layers' anatomy read the graph as exported.
  GemmForWeightsPass gemm_for_weights;
  PassManager().run(gemm_for_weights, g);
  s.parameters = names_of(trained);
  s.groups["codebooks"] = names_of(cb_params);
  s.groups["model"] = names_of(model_params);
  if (!frozen_model_grads.empty()) s.groups["model (lr 0, compat)"] = names_of(frozen_model_grads);

  // One codebook.Attention per attention (QK^T, scale, mask, Softmax, PV),
  // so one AttentionGrad in the backward: the probabilities are recomputed
  // there instead of kept from the forward, and the scores' Mul, Softmax and
  // their gradients, the batched products and the Transposes of K and P
  // between them are gone (passes/gradients/attention.cpp). After the
  // parameters are found: the compatibility preset reads the unfused
  // attention's anatomy.
  // Its Transposes (the heads' split and merge, K's) fold into its layout
  // attributes, which AttentionGrad reads and writes as well, so neither
  // pass copies them (the QKV Split stays: see fold_attention_layouts.h).
  if (opts.fuse_attention) {
    FuseAttentionPass fuse_attention;
    PassManager().run(fuse_attention, g);
    FoldAttentionLayoutsPass fold_layouts(/*fold_splits=*/false);
    PassManager().run(fold_layouts, g);
  }
  LossValues loss = append_lm_loss(g, logits, input_ids);
  g.outputs = {loss.loss, loss.accuracy};
  infer_types(g);
  s.codebooks = append_codebook_outputs(g, opts.codebook_inputs, opts.codebook_reconstructions);

  if (train) {
    AutodiffPass autodiff(loss.loss, trained);
    PassManager().run(autodiff, g);
    const Backward& bw = autodiff.backward();
    // The optimizer's parameters and gradients: the step graph's own, or the
    // inputs of a graph of its own that the gradients are fed to.
    Graph* og_graph = &g;
    std::vector<Value*> opt_params = trained, opt_grads = bw.gradients;
    if (opts.separate_optimizer) {
      s.optimizer = std::make_shared<Graph>();
      og_graph = s.optimizer.get();
      Builder b = step_builder(g);
      opt_params.clear();
      opt_grads.clear();
      for (size_t i = 0; i < trained.size(); ++i) {
        std::string name = "grad/" + trained[i]->name;
        Value* out = g.add_value(name);
        b.create("Identity", {bw.gradients[i]}, {out}, {}, b.scoped(name));
        g.outputs.push_back(out);
        s.gradients.push_back(name);
        opt_params.push_back(og_graph->add_input(trained[i]->name, trained[i]->type));
        opt_grads.push_back(og_graph->add_input(name, trained[i]->type));
      }
    }
    std::vector<ParamGroup> groups;
    size_t at = 0;
    auto group = [&](const std::string& name, size_t count, float lr_factor, float wd) {
      auto first = long(at), last = long(at + count);
      ParamGroup grp{name,
                     {opt_params.begin() + first, opt_params.begin() + last},
                     {opt_grads.begin() + first, opt_grads.begin() + last},
                     lr_factor,
                     wd};
      at += count;
      if (count > 0) groups.push_back(grp);
    };
    bool compat_cb_decay = opts.compat_original && !opts.train_model;
    group("codebooks", cb_params.size(), 1.f, compat_cb_decay ? 0.01f : opts.codebook_weight_decay);
    group("model", model_params.size(), opts.model_lr_factor, opts.model_weight_decay);
    group("model_lr0", frozen_model_grads.size(), 0.f, 0.f);
    OptimizerGraph og = append_optimizer(*og_graph, groups, opts.optimizer);
    for (auto& slot : og.params) s.updates.push_back({slot.input->name, slot.next->name});
    for (auto& slot : og.states) {
      s.updates.push_back({slot.input->name, slot.next->name});
      std::vector<int64_t> dims = slot.input->type.shape.sizes();
      s.initial[slot.input->name] = Tensor::zeros(DType::f32, dims);
    }
    if (s.optimizer) canonicalize(*s.optimizer);
  }
  canonicalize(g);
  return s;
}

}  // namespace

std::map<std::string, Tensor> causal_lm_feeds(const std::vector<std::string>& input_names, const Tensor& ids) {
  std::map<std::string, Tensor> in;
  int64_t B = ids.dim(0), T = ids.dim(1);
  for (const std::string& name : input_names) {
    if (name.find("input_ids") != std::string::npos) {
      in[name] = ids;
    } else if (name.find("attention_mask") != std::string::npos) {
      Tensor m = Tensor::empty(DType::i64, {B, T});
      std::fill(m.data<int64_t>(), m.data<int64_t>() + B * T, 1);
      in[name] = m;
    } else if (name.find("position_ids") != std::string::npos) {
      Tensor p = Tensor::empty(DType::i64, {B, T});
      for (int64_t i = 0; i < B * T; ++i) p.data<int64_t>()[i] = i % T;
      in[name] = p;
    } else {
      throw Error("model input '" + name + "': only input_ids, attention_mask and position_ids can be fed from tokens");
    }
  }
  return in;
}

std::map<std::string, Tensor> causal_lm_feeds(const Graph& g, const Tensor& ids) {
  std::vector<std::string> names;
  for (Value* v : g.inputs) names.push_back(v->name);
  return causal_lm_feeds(names, ids);
}

StepGraph build_eval_graph(std::shared_ptr<Graph> model, const StepGraphOptions& opts) {
  return build_common(std::move(model), opts, false);
}

StepGraph build_train_graph(std::shared_ptr<Graph> model, const StepGraphOptions& opts) {
  return build_common(std::move(model), opts, true);
}

}  // namespace cb
