// codebook compile MODEL -o OUT.onnx: insert codebooks at chosen sites
// (passes/insert_codebooks.h) and write the compiled model, with the codebook
// ops in the "codebook" domain and their configuration in the metadata.
#include <boost/program_options.hpp>
#include <iomanip>
#include <iostream>

#include "support/error.h"
#include "tools/codebook_options.h"
#include "tools/command.h"
#include "tools/compile_model.h"
#include "tools/options.h"

namespace po = boost::program_options;

namespace cb::tools {

int cmd_compile(int argc, char** argv) {
  po::options_description opts("usage: codebook compile MODEL -o OUT.onnx [options]\n\noptions");
  opts.add_options()("output,o", po::value<std::string>(), "compiled model to write")(
      "external-data", "write tensors over 1 KiB to OUT.onnx.<hash>.data")(
      "tokenizer", po::value<std::string>(),
      "DIR (GPT-2 BPE) or tokfsm[:BASE]: the tokenizer `run --prompt` uses, recorded in OUT.onnx's metadata "
      "(default: the input model's, if it records one)")(
      "precision", po::value<std::string>(),
      "f32 | bf16: record it in OUT.onnx's metadata as the precision run, bench and generate use for it by "
      "default (docs/precision.md)");
  add_codebook_options(opts);
  add_pass_options(opts);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "ONNX model file", vm,
                          "\nInserts codebooks (LayerNorm, top-k most similar codes, mean of their rows)\n"
                          "at the chosen sites of every chosen layer and writes the compiled model.\n"
                          "Codes start as N(0,1) draws; `codebook inspect` lists the sites.\n"))
    return 0;
  CB_CHECK(vm.count("output"), "give the output file with -o OUT.onnx");
  PassOptionsScope pass_options(vm);
  CodebookConfig cfg = codebook_config_from_options(vm);
  std::string out = vm["output"].as<std::string>();
  std::optional<std::string> tokenizer;
  if (vm.count("tokenizer")) tokenizer = vm["tokenizer"].as<std::string>();
  std::optional<Precision> precision;
  if (vm.count("precision")) precision = parse_precision(vm["precision"].as<std::string>(), "--precision");
  CompileModelResult compiled =
      compile_model(vm["model"].as<std::string>(), cfg, tokenizer, out, vm.count("external-data") > 0, precision);
  const std::vector<InsertedCodebook>& cbs = compiled.codebooks;
  int64_t params = 0;
  std::cout << "inserted " << cbs.size() << " codebook" << (cbs.size() == 1 ? "" : "s") << ":\n";
  for (auto& c : cbs) {
    params += c.groups * c.num_codes * (c.width / c.groups) + 2 * c.width;
    std::cout << "  " << std::left << std::setw(28) << c.site << " width " << c.width << ", " << c.groups
              << (c.groups == 1 ? " codebook" : " codebooks") << " x " << c.num_codes << " codes, k = " << c.k << "\n";
  }
  std::cout << "codebook parameters: " << params << "\n";
  if (!compiled.tokenizer.empty()) std::cout << "tokenizer: " << compiled.tokenizer << "\n";
  if (precision) std::cout << "precision: " << precision_name(*precision) << "\n";
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace cb::tools
