// Reading and writing .safetensors files (the Hugging Face weight format):
// an 8-byte little-endian header length N, a JSON header of N bytes mapping
// each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets
// into the data that follows; an optional "__metadata__" maps strings to
// strings), then the tensor bytes, little-endian, C order.
//
// Reading memory-maps the file. The header is validated as the reference
// implementation does (size limits, known dtypes, byte sizes that match the
// shapes, tensors that tile the data region exactly with no gap or overlap),
// and every error names the file and the tensor. Tensors whose dtype we hold
// as is are views of the mapping, not copies; tensor_f32() converts F16, BF16
// and F64 to f32 for code that computes in f32.
//
// Writing (checkpoints, `codebook import-hf` round trips) lays tensors out in
// order of decreasing element size so every tensor is aligned to its element
// size, pads the header to 8 bytes, and writes atomically.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ir/tensor.h"

namespace cb {

struct SafetensorsEntry {
  std::string name;
  std::string dtype_name;          // as in the file: "F32", "BF16", "F8_E4M3", ...
  DType dtype = DType::undefined;  // undefined: a dtype codebook has no type for (F8_*, C64)
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;  // byte range within the data region
};

class SafetensorsFile {
 public:
  // Maps and validates the file. Throws cb::Error naming the path.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return path_; }
  // Sorted by name.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const SafetensorsEntry* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor in its own dtype, sharing the mapping (copied only when its
  // bytes are not aligned to its element size). Throws for a missing name or a
  // dtype without a DType.
  Tensor tensor(const std::string& name) const;
  // The tensor as f32: F32 as in tensor(); F16, BF16 and F64 converted.
  // Throws naming the tensor for other dtypes.
  Tensor tensor_f32(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  const SafetensorsEntry& entry(const std::string& name) const;

  std::string path_;
  std::shared_ptr<MappedFile> file_;
  size_t data_start_ = 0;  // 8 + header length
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Tensors to write, by name (names unique, any order).
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// The complete file contents. Throws cb::Error for duplicate or empty names,
// undefined tensors, or the reserved name "__metadata__".
std::string safetensors_serialize(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata = {});
// Writes the file atomically (temporary file + rename).
void safetensors_write(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The safetensors name of a dtype: "F32", "BF16", "I64", "BOOL", ...
std::string safetensors_dtype_name(DType t);

}  // namespace cb
