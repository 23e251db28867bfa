// Fuzz target: the safetensors reader (frontend/safetensors.h). The reader
// maps a file, so each input is written to an in-memory file (memfd) opened
// by its /proc/self/fd path. Any bytes either open or throw cb::Error; every
// tensor of a file that opened is then read (as is and as f32) and its bytes
// summed, so a view past the mapping shows up under AddressSanitizer.
#include <sys/mman.h>
#include <unistd.h>

#include "frontend/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// The in-memory file, made once and rewritten for every input.
int memory_file() {
  static int fd = memfd_create("fuzz.safetensors", 0);
  if (fd < 0) cb::fuzz::broken("memfd_create failed");
  return fd;
}

double byte_sum(const cb::Tensor& t) {
  const uint8_t* p = static_cast<const uint8_t*>(t.raw());
  double sum = 0;
  for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = memory_file();
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != ssize_t(size)))
    cb::fuzz::broken("cannot write the in-memory file");
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  cb::fuzz::expect_only_cb_errors([&] {
    auto file = cb::SafetensorsFile::open(path);
    volatile double sink = 0;
    for (const cb::SafetensorsEntry& e : file->entries()) {
      if (file->find(e.name) != &e) cb::fuzz::broken("find() misses tensor '" + e.name + "'");
      cb::fuzz::expect_only_cb_errors([&] { sink = sink + byte_sum(file->tensor(e.name)); });
      cb::fuzz::expect_only_cb_errors([&] { sink = sink + byte_sum(file->tensor_f32(e.name)); });
    }
  });
  return 0;
}
