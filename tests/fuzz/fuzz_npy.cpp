// Fuzz target: the .npy reader (frontend/npy.h). Any bytes either parse or
// throw cb::Error; a parsed array must serialise and parse back to the same
// dtype, shape and bytes.
#include "frontend/npy.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes = cb::fuzz::to_string(data, size);
  cb::fuzz::expect_only_cb_errors([&] {
    cb::Tensor t = cb::npy_parse(bytes, "fuzz.npy");
    cb::Tensor back = cb::npy_parse(cb::npy_serialize(t), "serialized fuzz.npy");
    if (back.dtype() != t.dtype() || back.dims() != t.dims() || !back.bitwise_equal(t))
      cb::fuzz::broken("npy does not round-trip: " + t.str() + " read back as " + back.str());
  });
  return 0;
}
