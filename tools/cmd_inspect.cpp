// codebook inspect MODEL: what a model is made of.
#include <algorithm>
#include <boost/program_options.hpp>
#include <iomanip>
#include <iostream>

#include "passes/transformer_anatomy.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/options.h"

namespace po = boost::program_options;

namespace cb::tools {

int cmd_inspect(int argc, char** argv) {
  po::options_description opts("usage: codebook inspect MODEL [options]\n\noptions");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "ONNX model file", vm,
                          "\nPrints parameters, an op histogram, inputs and outputs with their shapes,\n"
                          "the transformer layers found, and the time to import.\n"))
    return 0;
  LoadedModel m = load_model(vm["model"].as<std::string>());
  const Graph& g = *m.graph;

  std::cout << "model:       " << vm["model"].as<std::string>() << "\n";
  std::cout << "producer:    " << (g.producer.empty() ? "?" : g.producer) << ", ir_version " << g.ir_version
            << ", opsets";
  for (auto& [d, v] : g.opsets) std::cout << " " << (d.empty() ? "ai.onnx" : d) << ":" << v;
  std::cout << "\n";
  int64_t params = 0, bytes = 0;
  for (auto& v : g.values())
    if (v->constant) { params += v->constant->numel(); bytes += int64_t(v->constant->nbytes()); }
  std::cout << "parameters:  " << params << " (" << std::fixed << std::setprecision(1)
            << double(bytes) / (1 << 20) << " MiB in constants)\n";
  std::cout << "import:      " << std::setprecision(1) << m.import_ms << " ms\n";
  std::cout << "inputs:\n";
  for (const Value* v : g.inputs) std::cout << "  " << v->name << ": " << v->type.str() << "\n";
  std::cout << "outputs:\n";
  for (const Value* v : g.outputs) std::cout << "  " << v->name << ": " << v->type.str() << "\n";

  std::map<std::string, int> hist;
  for (auto& n : g.nodes()) hist[n->domain.empty() ? n->op_type : n->domain + "." + n->op_type]++;
  std::vector<std::pair<std::string, int>> ops(hist.begin(), hist.end());
  std::sort(ops.begin(), ops.end(), [](auto& a, auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
  std::cout << "ops (" << g.num_nodes() << " nodes):\n";
  for (auto& [op, count] : ops) std::cout << "  " << std::setw(6) << count << "  " << op << "\n";

  ModelAnatomy a = find_layers(g);
  std::cout << "architecture: " << a.architecture << ", " << a.layers.size() << " layers\n";
  for (auto& l : a.layers)
    std::cout << "  layer " << l.index << ": " << (l.attention_kind.empty() ? "" : l.attention_kind + " ")
              << "attention " << l.attention_node << "\n";
  return 0;
}

}  // namespace cb::tools
