// codebook inspect MODEL: what a model is made of.
#include <algorithm>
#include <boost/program_options.hpp>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "ir/codebook.h"
#include "ir/printer.h"
#include "passes/insert_codebooks.h"
#include "passes/transformer_anatomy.h"
#include "support/error.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/options.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

// One site line: "  layer0.attn_preproj  f32[batch,sequence,64]  <value name>".
void print_site(int64_t layer, const std::string& site, const Value* v) {
  std::cout << "  " << std::left << std::setw(24) << ("layer" + std::to_string(layer) + "." + site) << " "
            << std::setw(36) << v->type.str() << " " << v->name << std::right << "\n";
}

// The transformer layers and their codebook sites, or why they were not found.
void print_anatomy(Graph& g) {
  ModelAnatomy a;
  try {
    a = analyze_model(g);
  } catch (const Error& e) {
    std::cout << "architecture: " << architecture_from_names(g) << " (from names)\n";
    std::cout << "layers: not found (" << e.what() << ")\n";
    return;
  }
  std::cout << "architecture: " << a.architecture << ", " << a.layers.size() << " layers, d_model " << a.d_model
            << ", heads " << (a.num_heads < 0 ? std::string("?") : std::to_string(a.num_heads)) << ", d_mlp " << a.d_mlp
            << ", " << (a.layers[0].parallel_residual ? "parallel" : "sequential") << " residual\n";
  for (const LayerSites& l : a.layers) {
    std::cout << "layer " << l.index << ": " << (l.attention_kind.empty() ? "" : l.attention_kind + " ") << "attention "
              << l.softmax->name << (l.parallel_residual ? ", parallel residual" : "") << "\n";
    print_site(l.index, "input", l.input);
    for (Placement p : kAllPlacements) {
      if (p == Placement::attn_plus_mlp) {  // not one value: attn + mlp, snapped before the residual add
        std::cout << "  " << std::left << std::setw(24) << ("layer" + std::to_string(l.index) + ".attn_plus_mlp") << " "
                  << std::setw(36) << l.attn->type.str() << " " << l.attn->name << " + " << l.mlp->name << std::right
                  << "\n";
        continue;
      }
      std::vector<Value*> vs = site_values(l, p);
      static const char* const kQkv[] = {"q", "k", "v"};
      for (size_t i = 0; i < vs.size(); ++i)
        print_site(l.index, std::string(placement_name(p)) + (vs.size() == 3 ? std::string("[") + kQkv[i] + "]" : ""),
                   vs[i]);
    }
  }
}

}  // namespace

// The codebooks of a compiled model, with their configuration and any
// interventions written into them.
void print_codebooks(const Graph& g) {
  std::vector<Node*> cbs = codebook_nodes(g);
  if (cbs.empty()) return;
  std::cout << "codebooks (" << cbs.size() << "):\n";
  for (Node* n : cbs) {
    const Shape& codes = n->inputs[1]->type.shape;
    CodebookAttrs a = CodebookAttrs::from_node(*n);
    std::cout << "  " << std::left << std::setw(24) << n->attr_string("site", n->name) << std::right << " "
              << codes.dims[0].str() << (codes.dims[0].value == 1 ? " codebook" : " codebooks") << " x "
              << codes.dims[1].str() << " codes of width " << codes.dims[2].str() << ", k = " << a.k << ", "
              << metric_name(a.metric);
    if (a.has_interventions() || !a.keep_k_codes)
      std::cout << "; interventions: " << a.ablate.size() << " ablate, " << a.disable_topk.size() << " disable_topk, "
                << a.force.size() << " force, mode " << (a.keep_k_codes ? "skip" : "zero");
    std::cout << "\n";
  }
}

int cmd_inspect(int argc, char** argv) {
  po::options_description opts("usage: codebook inspect MODEL [options]\n\noptions");
  opts.add_options()("ir", "print the canonical IR (large constants elided) instead of the summary");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "ONNX model file", vm,
                          "\nPrints parameters, an op histogram, inputs and outputs with their shapes,\n"
                          "the transformer layers with their codebook sites, and the time to import.\n"))
    return 0;
  LoadedModel m = load_model(vm["model"].as<std::string>());
  const Graph& g = *m.graph;
  if (vm.count("ir")) {
    PrintOptions po;
    po.elide_large_constants = true;
    std::cout << print_graph(g, po);
    return 0;
  }

  std::cout << "model:       " << vm["model"].as<std::string>() << "\n";
  std::cout << "producer:    " << (g.producer.empty() ? "?" : g.producer) << ", ir_version " << g.ir_version
            << ", opsets";
  for (auto& [d, v] : g.opsets) std::cout << " " << (d.empty() ? "ai.onnx" : d) << ":" << v;
  std::cout << "\n";
  int64_t params = 0, bytes = 0;
  for (auto& v : g.values())
    if (v->constant) {
      params += v->constant->numel();
      bytes += int64_t(v->constant->nbytes());
    }
  std::cout << "parameters:  " << params << " (" << std::fixed << std::setprecision(1) << double(bytes) / (1 << 20)
            << " MiB in constants)\n";
  std::cout << "import:      " << std::setprecision(1) << m.import_ms << " ms\n";
  std::cout << "inputs:\n";
  for (const Value* v : g.inputs) std::cout << "  " << v->name << ": " << v->type.str() << "\n";
  std::cout << "outputs:\n";
  for (const Value* v : g.outputs) std::cout << "  " << v->name << ": " << v->type.str() << "\n";

  std::map<std::string, int> hist;
  for (auto& n : g.nodes()) hist[n->domain.empty() ? n->op_type : n->domain + "." + n->op_type]++;
  std::vector<std::pair<std::string, int>> ops(hist.begin(), hist.end());
  std::sort(ops.begin(), ops.end(),
            [](auto& a, auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  std::cout << "ops (" << g.num_nodes() << " nodes):\n";
  for (auto& [op, count] : ops) std::cout << "  " << std::setw(6) << count << "  " << op << "\n";

  print_anatomy(*m.graph);
  print_codebooks(g);
  return 0;
}

}  // namespace cb::tools
