// codebook run MODEL: run a model on .npy inputs or token ids and write its outputs.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "frontend/npy.h"
#include "ir/error.h"
#include "runtime/executable.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/options.h"

namespace po = boost::program_options;

namespace cb::tools {

// Prints the top `k` next tokens from logits [batch, seq, vocab] at the last position of row 0.
static void print_top_tokens(const Tensor& logits, int k) {
  CB_CHECK(logits.rank() == 3 && dtype_is_float(logits.dtype()),
           "cannot show next tokens: 'logits' is " << dtype_name(logits.dtype()) << dims_str(logits.dims()));
  int64_t seq = logits.dim(1), vocab = logits.dim(2);
  std::vector<double> row(static_cast<size_t>(vocab));
  for (int64_t v = 0; v < vocab; ++v) row[size_t(v)] = logits.get_double((seq - 1) * vocab + v);
  double mx = *std::max_element(row.begin(), row.end()), z = 0;
  for (double x : row) z += std::exp(x - mx);
  std::vector<int64_t> idx(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) idx[size_t(i)] = i;
  k = int(std::min<int64_t>(k, vocab));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int64_t a, int64_t b) {
    return row[size_t(a)] != row[size_t(b)] ? row[size_t(a)] > row[size_t(b)] : a < b;
  });
  std::cout << "top " << k << " next tokens:\n";
  for (int i = 0; i < k; ++i) {
    int64_t t = idx[size_t(i)];
    std::cout << "  " << std::setw(8) << t << "  logit " << std::fixed << std::setprecision(4) << row[size_t(t)]
              << "  p " << std::exp(row[size_t(t)] - mx) / z << "\n";
  }
}

int cmd_run(int argc, char** argv) {
  po::options_description opts("usage: codebook run MODEL [options]\n\noptions");
  opts.add_options()(
      "input,i", po::value<std::vector<std::string>>()->composing(), "NAME=FILE.npy (repeatable); with input_ids given, a missing attention_mask or position_ids is filled in")(
      "tokens,t", po::value<std::string>(),
      "comma-separated token ids for input_ids (batch 1); fills attention_mask and position_ids")(
      "output-dir,o", po::value<std::string>(), "write every output as DIR/<name>.npy")(
      "backend,b", po::value<std::string>()->default_value("cpu"), "reference | cpu")(
      "threads", po::value<int>()->default_value(0), "threads (0 = all cores)")(
      "top", po::value<int>()->default_value(5), "how many next tokens to show with --tokens");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "ONNX model file", vm)) return 0;
  CB_CHECK(vm.count("input") || vm.count("tokens"), "give the model's inputs with --input NAME=FILE.npy or --tokens");
  set_num_threads(vm["threads"].as<int>());

  LoadedModel m = load_model(vm["model"].as<std::string>());
  const Graph& g = *m.graph;
  std::map<std::string, Tensor> inputs;
  if (vm.count("tokens")) {
    std::vector<int64_t> ids = parse_token_list(vm["tokens"].as<std::string>());
    inputs = lm_inputs(g, ids, 1, int64_t(ids.size()));
  }
  if (vm.count("input")) {
    for (const std::string& spec : vm["input"].as<std::vector<std::string>>()) {
      size_t eq = spec.find('=');
      CB_CHECK(eq != std::string::npos && eq > 0, "--input '" << spec << "': expected NAME=FILE.npy");
      inputs[spec.substr(0, eq)] = npy_read(spec.substr(eq + 1));
    }
  }
  complete_lm_inputs(g, inputs);
  auto backend = make_backend(vm["backend"].as<std::string>());
  CompileOptions copts;
  copts.num_threads = vm["threads"].as<int>();
  auto exe = Executable::compile(m.graph, *backend, copts);
  std::vector<Tensor> outs = exe->run(inputs);
  std::vector<std::string> names = exe->output_names();

  if (vm.count("output-dir")) {
    std::string dir = vm["output-dir"].as<std::string>();
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    CB_CHECK(!ec, "cannot create output directory '" << dir << "': " << ec.message());
    for (size_t i = 0; i < outs.size(); ++i) {
      std::string path = dir + "/" + file_safe(names[i]) + ".npy";
      npy_write(path, outs[i]);
      std::cout << "wrote " << path << " (" << dtype_name(outs[i].dtype()) << dims_str(outs[i].dims()) << ")\n";
    }
  }
  if (vm.count("tokens")) {
    for (size_t i = 0; i < outs.size(); ++i)
      if (names[i] == "logits" || (outs.size() == 1 && outs[i].rank() == 3)) print_top_tokens(outs[i], vm["top"].as<int>());
  }
  if (!vm.count("output-dir") && !vm.count("tokens"))
    for (size_t i = 0; i < outs.size(); ++i) std::cout << names[i] << ": " << outs[i].str() << "\n";
  return 0;
}

}  // namespace cb::tools
