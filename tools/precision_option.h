// `--precision f32|bf16` of run, bench, generate and train (docs/precision.md).
#pragma once
#include <boost/program_options.hpp>
#include <optional>
#include <string>

#include "ir/precision.h"

namespace cb::tools {

// Adds --precision to `opts` (default f32).
void add_precision_option(boost::program_options::options_description& opts);

// The precision --precision asks for, else the one `model` records
// (kPrecisionMetadataKey, from `codebook compile --precision`), else f32;
// checked against where the graph will run: bf16 on the cpu backend needs
// AVX512_BF16 (one clear cb::Error otherwise, naming the CPU's lack); the
// reference backend emulates it; the CUDA device has no bf16 kernels yet.
Precision precision_option(const boost::program_options::variables_map& vm, const Graph& model,
                           const std::string& backend = "cpu", const std::string& device = "cpu");

// The same for any front end: `asked` is the value of the option named
// `option` (nullopt when it was not given).
Precision resolve_precision(const std::optional<std::string>& asked, const std::string& option, const Graph& model,
                            const std::string& backend, const std::string& device);

// The same check for a precision read elsewhere (a training config's runtime.precision).
void check_precision_supported(Precision p, const std::string& backend, const std::string& device,
                               const std::string& where);

}  // namespace cb::tools
