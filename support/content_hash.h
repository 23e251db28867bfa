// A fast 64-bit fingerprint of bytes (xxHash64-style rounds; not compatible
// with xxHash64's values). Not cryptographic: it tells apart files that were
// mixed up by accident, at several GB/s (SHA-256, support/sha256.h, for
// fingerprints that must resist tampering).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace cb {

uint64_t content_hash64(const void* data, size_t size);

// 16 lowercase hex digits.
std::string content_hash_hex(const void* data, size_t size);

}  // namespace cb
