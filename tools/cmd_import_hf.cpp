// codebook import-hf DIR -o OUT.onnx: a Hugging Face GPT-2 / GPT-Neo /
// GPT-NeoX checkpoint (config.json + model.safetensors) as an ONNX model of
// standard ops (frontend/hf_import.h); with --random-init, the same
// architecture from a config alone, initialised as transformers does.
#include <boost/program_options.hpp>
#include <chrono>
#include <filesystem>
#include <iostream>

#include "frontend/hf_import.h"
#include "frontend/onnx_export.h"
#include "frontend/original_checkpoint.h"
#include "support/error.h"
#include "tools/command.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

// Protobuf cannot hold a model of 2 GiB or more; leave room for the graph.
constexpr int64_t kInlineLimitBytes = int64_t(1800) << 20;

const char* kDescription =
    "\nBuilds the model of a Hugging Face checkpoint directory (config.json and\n"
    "model.safetensors, or a model.safetensors.index.json with its shards) as a graph\n"
    "of standard ops with inputs input_ids, attention_mask and position_ids and output\n"
    "logits, and writes it as ONNX. Supported: gpt2, gpt_neo and gpt_neox configs.\n"
    "F16/BF16 weights become f32. With --random-init the weights are drawn as\n"
    "transformers initialises them (normal(0, initializer_range), zero biases,\n"
    "LayerNorm 1/0), from --config FILE or DIR/config.json.\n"
    "A folder saved by the original codebook-features library (config.json with\n"
    "model_type \"codebook\") becomes the compiled model `codebook compile` would make,\n"
    "with the saved codes; its base model's config.json comes from --base-config or\n"
    "DIR/base_config.json.\n\n"
    "examples:\n"
    "  codebook import-hf models/pythia-70m -o pythia.onnx\n"
    "  codebook import-hf --config config.json --random-init --seed 1 -o tiny.onnx\n"
    "  codebook import-hf runs/pythia70m-cb --base-config pythia-70m/config.json -o cb.onnx\n";

}  // namespace

int cmd_import_hf(int argc, char** argv) {
  po::options_description opts(
      "usage: codebook import-hf DIR -o OUT.onnx [options]\n"
      "       codebook import-hf --config config.json --random-init [--seed S] -o OUT.onnx\n\noptions");
  opts.add_options()("help,h", "show this help")("output,o", po::value<std::string>(), "ONNX model to write")(
      "config", po::value<std::string>(), "config.json to build from (instead of DIR/config.json)")(
      "random-init", "random weights instead of the checkpoint's")("seed", po::value<uint64_t>()->default_value(0),
                                                                   "random seed for --random-init")(
      "external-data", "write tensors over 1 KiB to OUT.onnx.<hash>.data (automatic for models over 1.8 GB)")(
      "base-config", po::value<std::string>(),
      "the base model's config.json (FILE or DIR) for a codebook-features checkpoint (default: DIR/base_config.json)")(
      "dir", po::value<std::string>(), "checkpoint directory");
  po::positional_options_description pos;
  pos.add("dir", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << opts << kDescription;
    return 0;
  }
  po::notify(vm);
  CB_CHECK(vm.count("output"), "give the output file with -o OUT.onnx");
  const bool random = vm.count("random-init") > 0;
  CB_CHECK(vm.count("dir") || vm.count("config"), "give a checkpoint DIR, or --config FILE with --random-init");
  CB_CHECK(random || !vm.count("config"),
           "--config builds a model from a config alone, which needs --random-init (a checkpoint DIR has its own "
           "config.json)");
  CB_CHECK(random || vm["seed"].defaulted(), "--seed only applies with --random-init");
  CB_CHECK(!vm.count("base-config") || (!random && is_original_checkpoint(vm["dir"].as<std::string>())),
           "--base-config only applies to a codebook-features checkpoint (config.json with model_type \"codebook\")");

  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<Graph> g;
  HfConfig config;
  std::string source;
  std::vector<Node*> codebooks;
  if (random) {
    const std::string config_path = vm.count("config")
                                        ? vm["config"].as<std::string>()
                                        : (std::filesystem::path(vm["dir"].as<std::string>()) / "config.json").string();
    const uint64_t seed = vm["seed"].as<uint64_t>();
    config = read_hf_config(config_path);
    g = build_hf_random(config, seed);
    source = "random init, seed " + std::to_string(seed);
  } else if (is_original_checkpoint(vm["dir"].as<std::string>())) {
    // The original library's saved codebook model: the compiled graph.
    const std::string dir = vm["dir"].as<std::string>();
    const std::string base = vm.count("base-config") ? vm["base-config"].as<std::string>() : "";
    config = original_base_config(dir, base);
    g = import_original_checkpoint(dir, base);
    source = dir + ", codebook-features";
    codebooks = codebook_nodes(*g);
  } else {
    const std::string dir = vm["dir"].as<std::string>();
    config = read_hf_config((std::filesystem::path(dir) / "config.json").string());
    g = import_hf(dir);
    source = dir;
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const int64_t params = hf_parameter_count(config);
  std::cout << hf_model_type(config.architecture) << ": " << config.num_layers << " layers, width "
            << config.hidden_size << ", " << config.num_heads << " heads, MLP " << config.intermediate_size
            << ", vocabulary " << config.vocab_size << ", " << params << " parameters (" << source << "), built in "
            << int64_t(ms) << " ms\n";
  for (const Node* n : codebooks) {
    const CodebookAttrs a = CodebookAttrs::from_node(*n);
    const Shape& codes = n->inputs[1]->type.shape;
    const int64_t G = codes.dims[0].value;
    std::cout << "  codebook " << n->attr_string("site", n->name) << ": " << G << (G == 1 ? " codebook" : " codebooks")
              << " x " << codes.dims[1].value << " codes of width " << codes.dims[2].value << ", k = " << a.k << ", "
              << metric_name(a.metric) << "\n";
  }

  ExportOptions eo;
  if (vm.count("external-data") || params * 4 > kInlineLimitBytes) eo.external_data_threshold = 1024;
  const std::string out = vm["output"].as<std::string>();
  export_onnx(*g, out, eo);
  std::cout << "wrote " << out << (eo.external_data_threshold >= 0 ? " (+ " + out + ".data)" : "") << "\n";
  return 0;
}

}  // namespace cb::tools
