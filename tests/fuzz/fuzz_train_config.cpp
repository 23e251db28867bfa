// Fuzz target: the training configuration (train/train_config.h): YAML text ->
// defaults merged with it and checked for unknown keys -> a parsed and
// validated TrainRunConfig. Nothing is trained, built or read from disk. The
// input up to its first NUL byte is the config file; the lines after it are
// `group.key=value` overrides. Any input either parses or throws cb::Error.
#include <sstream>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "train/train_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input = cb::fuzz::to_string(data, size);
  size_t nul = input.find('\0');
  std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    std::istringstream lines(input.substr(nul + 1));
    std::string line;
    while (std::getline(lines, line))
      if (!line.empty()) overrides.push_back(line);
  }
  cb::fuzz::expect_only_cb_errors([&] {
    cb::Json resolved = cb::resolve_train_config_yaml(yaml, "fuzz.yaml", overrides);
    cb::TrainRunConfig run = cb::parse_train_config(resolved);
    // A resolved config is stored in checkpoints and read back from them.
    cb::parse_train_config(cb::resolve_train_config(cb::json_parse(run.config.dump(), "checkpoint config"), {}));
  });
  return 0;
}
