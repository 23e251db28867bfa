// Fuzz target: the YAML reader and `key=value` overrides (support/yaml.h).
// The whole input is parsed as a YAML document, then each of its lines is
// applied as an override; both either succeed or throw cb::Error. A parsed
// document must be JSON that dumps and reads back equal.
#include <sstream>

#include "support/json.h"
#include "support/yaml.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text = cb::fuzz::to_string(data, size);
  cb::fuzz::expect_only_cb_errors([&] {
    cb::Json doc = cb::parse_yaml(text, "fuzz input");
    std::string dumped = doc.dump();
    if (!(cb::json_parse(dumped, "dumped YAML") == doc)) cb::fuzz::broken("YAML value does not round-trip: " + dumped);
  });
  cb::Json config = cb::Json(cb::Json::Object{});
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) cb::fuzz::expect_only_cb_errors([&] { cb::apply_override(config, line); });
  cb::fuzz::expect_only_cb_errors([&] { config.dump(); });
  return 0;
}
