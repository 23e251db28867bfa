// codebook export MODEL -o OUT.onnx: write a model back out as ONNX, with
// --standard lowering every codebook op to standard ONNX ops
// (passes/lower_codebook.h) so that other runtimes (ONNX Runtime, ...) can run
// a codebook model, interventions included.
#include <boost/program_options.hpp>
#include <iostream>

#include "frontend/onnx_export.h"
#include "passes/canonicalize.h"
#include "passes/lower_codebook.h"
#include "support/error.h"
#include "tools/codebook_options.h"
#include "tools/command.h"
#include "tools/forced_codes.h"
#include "tools/model_io.h"
#include "tools/options.h"

namespace po = boost::program_options;

namespace cb::tools {

int cmd_export(int argc, char** argv) {
  po::options_description opts("usage: codebook export MODEL -o OUT.onnx [options]\n\noptions");
  opts.add_options()("output,o", po::value<std::string>(), "model file to write")(
      "standard", "replace every codebook op by standard ONNX ops (opset 18) that compute the same")(
      "external-data", "write tensors over 1 KiB to OUT.onnx.<hash>.data");
  add_intervention_options(opts);
  add_pass_options(opts);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "ONNX model file", vm,
                          "\nWrites the model as ONNX after import and canonicalisation. With --standard\n"
                          "the result uses only the default ONNX domain, so ONNX Runtime and other\n"
                          "runtimes can run a compiled codebook model (ids and interventions included).\n"
                          "Intervention options (as for `codebook run`) are written into the model.\n"))
    return 0;
  CB_CHECK(vm.count("output"), "give the output file with -o OUT.onnx");
  PassOptionsScope pass_options(vm);
  LoadedModel m = load_model(vm["model"].as<std::string>());
  Graph& g = *m.graph;
  PassManager pm;
  InterventionSet iv = interventions_from_options(vm);
  resolve_state_of(iv, vm["model"].as<std::string>(), "cpu", 0);
  pm.emplace<InterventionsPass>(iv);  // baked into the written model
  LowerCodebookPass* lower = nullptr;
  if (vm.count("standard")) {
    lower = &pm.emplace<LowerCodebookPass>();
    pm.emplace<CanonicalizePass>();  // folds the position-independent intervention masks
  }
  pm.run(g);
  if (lower) {
    int lowered = lower->lowered();
    for (auto& n : g.nodes())
      CB_CHECK(n->domain.empty(), "--standard: " << n->describe() << " has no standard ONNX form");
    std::cout << "lowered " << lowered << " codebook op" << (lowered == 1 ? "" : "s") << " to standard ONNX ops\n";
  }
  ExportOptions eo;
  if (vm.count("external-data")) eo.external_data_threshold = 1024;
  std::string out = vm["output"].as<std::string>();
  export_onnx(g, out, eo);
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace cb::tools
