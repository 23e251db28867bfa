// Fuzz target: the JSON reader (support/json.h). Any bytes either parse or
// throw cb::Error; what parses must dump and read back to an equal value.
#include "support/json.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text = cb::fuzz::to_string(data, size);
  cb::fuzz::expect_only_cb_errors([&] {
    cb::Json value = cb::json_parse(text, "fuzz input");
    for (int indent : {-1, 2}) {
      std::string dumped = value.dump(indent);
      if (!(cb::json_parse(dumped, "dumped fuzz input") == value))
        cb::fuzz::broken("JSON does not read back equal after dump(" + std::to_string(indent) + "): " + dumped);
    }
  });
  return 0;
}
