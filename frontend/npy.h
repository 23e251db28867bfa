// Reading and writing NumPy .npy files (format versions 1-3, C order,
// little-endian), the exchange format of `codebook run`.
#pragma once
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace cb {

Tensor npy_read(const std::string& path);  // throws cb::Error naming the path
Tensor npy_parse(const std::string& bytes, const std::string& what);
std::string npy_serialize(const Tensor& t);

// The header of a .npy file: what its data is and where it starts.
struct NpyHeader {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // bytes before the data
  size_t data_bytes() const;
};
// Parses the header at the start of `bytes` (size `size`: the whole file or at
// least its header); `what` names the file in errors.
NpyHeader npy_parse_header(const char* bytes, size_t size, const std::string& what);
// A version-1 header for `dtype` and `shape`, padded with spaces to a multiple
// of 64 bytes and to at least `min_size` bytes, so a file written in pieces can
// reserve room for a shape it only knows at the end.
std::string npy_header(DType dtype, const std::vector<int64_t>& shape, size_t min_size = 0);
// The same for any NumPy dtype string ("<i8", "<U7": arrays we write but do
// not read, such as fixed-width unicode).
std::string npy_header(const std::string& descr, const std::vector<int64_t>& shape, size_t min_size = 0);
// Writes to a temporary file next to `path` and renames it into place.
void npy_write(const std::string& path, const Tensor& t);

}  // namespace cb
