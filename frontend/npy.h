// Reading and writing NumPy .npy files (format versions 1-3, C order,
// little-endian), the exchange format of `codebook run`.
#pragma once
#include <string>

#include "ir/tensor.h"

namespace cb {

Tensor npy_read(const std::string& path);  // throws cb::Error naming the path
Tensor npy_parse(const std::string& bytes, const std::string& what);
std::string npy_serialize(const Tensor& t);
// Writes to a temporary file next to `path` and renames it into place.
void npy_write(const std::string& path, const Tensor& t);

}  // namespace cb
