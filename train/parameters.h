// What a training run updates: which constants of a (compiled) model are
// parameters, and turning them into graph inputs so a train-step graph reads
// them from the trainer instead of baking them in.
//
// Parameters are recognised by how they are used, so the same rule holds for
// models built from a Hugging Face config and for imported ONNX files from any
// exporter:
//   * codebook parameters: the codes, ln_scale and ln_bias inputs of every
//     codebook.Codebook node;
//   * model parameters: float constants read as a MatMul/Gemm operand
//     (weights, including a tied embedding used as the output projection), as
//     the table of an embedding Gather, as LayerNormalization scale/bias, or
//     added to a MatMul/Gemm output as a bias.
// Everything else (masks, rotary tables, scalars like 1/sqrt(d)) is structure.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace cb {

// In graph order of first use; no duplicates.
std::vector<Value*> codebook_parameters(const Graph& g);
std::vector<Value*> model_parameters(const Graph& g);

// The model parameters an `attn_preproj` / `attn_plus_mlp` codebook of the
// original library leaves untrained: the weights of the attention
// projections of each layer with an attn_preproj codebook, and of the whole
// block of each layer with an attn_plus_mlp codebook. Only used by the
// compatibility preset (docs/original.md#which-parameters-train).
std::vector<Value*> original_frozen_parameters(Graph& g);

// Turns each constant into a graph input of the same name and type, and
// returns the constants' tensors by name (the initial values; shared, not
// copied: clone before writing into one).
std::map<std::string, Tensor> parameterize(Graph& g, const std::vector<Value*>& values);

// The inverse, for export: every graph input named in `values` becomes a
// constant holding that tensor (shape and dtype must match). Throws cb::Error
// naming a tensor that does not match a graph input.
void bind_parameters(Graph& g, const std::map<std::string, Tensor>& values);

// Sets existing constants by name (a model with trained values); throws
// cb::Error naming a missing constant or a shape mismatch.
void assign_constants(Graph& g, const std::map<std::string, Tensor>& values);

}  // namespace cb
