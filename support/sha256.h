// SHA-256 (FIPS 180-4), to fingerprint files: a code cache records the
// SHA-256 of the model it was built with and refuses a different one.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace cb {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex_digest();  // 64 lowercase hex digits; ends the computation

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buffered_ = 0;
  uint64_t length_ = 0;  // bytes
};

// The SHA-256 of a file's contents (read in pieces); errors name the path.
std::string sha256_file(const std::string& path);

}  // namespace cb
