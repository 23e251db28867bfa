// Messages of the defects the fuzz harnesses found (tests/fuzz/,
// docs/reliability.md#fuzzing): each input is also a regression input in the
// committed corpus, which the fuzz_replay_* tests run; these tests check that
// the error says what is wrong. YAML's are in test_yaml.cpp.
#include <gtest/gtest.h>

#include <string>

#include "frontend/npy.h"
#include "support/error.h"

using namespace cb;

namespace {

// A version-1 .npy file with header dictionary `dict` and `data` after it.
std::string npy_file(const std::string& dict, const std::string& data = std::string(16, '\0')) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += char(h.size() & 0xff);
  out += char(h.size() >> 8);
  return out + h + data;
}

std::string npy_error(const std::string& bytes) {
  try {
    npy_parse(bytes, "x.npy");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(FuzzRegressions, NpyShapeThatIsNotATuple) {
  // Threw std::out_of_range from std::string::substr.
  EXPECT_NE(npy_error(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape':, }"))
                .find("x.npy: the shape in the .npy header must be a tuple, got ''"),
            std::string::npos)
      << npy_error(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape':, }"));
  EXPECT_NE(
      npy_error(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': 3, }")).find("must be a tuple, got '3'"),
      std::string::npos);
}

TEST(FuzzRegressions, NpyShapeTooLargeForTheFile) {
  // 2^32 * 2^32 * 2 wraps to 0 in 64 bits: it must not pass the size check.
  EXPECT_NE(npy_error(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 2), }"))
                .find("[4294967296,4294967296,2] has more than 2^62 elements"),
            std::string::npos);
  // 8 TB claimed by a 16-byte payload: an error before anything is allocated.
  EXPECT_NE(npy_error(npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"))
                .find("x.npy: truncated .npy data (16 bytes for f64[1000000,1000000], which needs 8000000000000)"),
            std::string::npos)
      << npy_error(npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000, 1000000), }"));
  // A well-formed file still reads.
  Tensor t = npy_parse(npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"), "x.npy");
  EXPECT_EQ(t.numel(), 4);
}

}  // namespace
