#include "tools/precision_option.h"

#include "support/cpu_features.h"
#include "support/error.h"

namespace cb::tools {

namespace po = boost::program_options;

void add_precision_option(po::options_description& opts) {
  opts.add_options()("precision", po::value<std::string>()->default_value("f32"),
                     "f32 | bf16: bf16 multiplies the matmuls' factors in bf16 with f32 accumulation, the rest "
                     "in f32 (needs AVX512_BF16; docs/precision.md)");
}

void check_precision_supported(Precision p, const std::string& backend, const std::string& device,
                               const std::string& where) {
  if (p != Precision::bf16) return;
  CB_CHECK(device == "cpu", where << " bf16 runs on the cpu only (the CUDA backend has no bf16 kernels yet)");
  CB_CHECK(backend != "cpu" || cpu_supports_bf16_matmuls(),
           where << " bf16 needs a CPU with AVX512_BF16 (bf16 matmuls in hardware); this CPU lacks it: use f32");
}

Precision resolve_precision(const std::optional<std::string>& asked, const std::string& option, const Graph& model,
                            const std::string& backend, const std::string& device) {
  auto recorded = model.metadata.find(kPrecisionMetadataKey);
  if (!asked && recorded != model.metadata.end()) {
    const Precision p = parse_precision(recorded->second, std::string("the model's metadata ") + kPrecisionMetadataKey);
    check_precision_supported(p, backend, device, "the model records precision " + recorded->second + "; this run's");
    return p;
  }
  const Precision p = asked ? parse_precision(*asked, option) : Precision::f32;
  check_precision_supported(p, backend, device, option);
  return p;
}

Precision precision_option(const po::variables_map& vm, const Graph& model, const std::string& backend,
                           const std::string& device) {
  std::optional<std::string> asked;
  if (!vm["precision"].defaulted()) asked = vm["precision"].as<std::string>();
  return resolve_precision(asked, "--precision", model, backend, device);
}

}  // namespace cb::tools
