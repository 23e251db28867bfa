// .npy files as the code cache uses them: memory-mapped for reading (no copy,
// the pages load as they are touched), and written in pieces for streaming
// (rows appended as they are computed, the final shape written at the end).
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "frontend/npy.h"
#include "support/error.h"

namespace cb::cache {

// A read-only memory map of one .npy file (C order, little-endian).
class MappedNpy {
 public:
  MappedNpy() = default;
  // Maps `path`; a missing file, a bad header or data shorter than the header's
  // shape says is a cb::Error naming the path.
  static MappedNpy open(const std::string& path);

  const std::string& path() const { return path_; }
  DType dtype() const { return header_.dtype; }
  const std::vector<int64_t>& shape() const { return header_.shape; }
  int64_t dim(size_t i) const { return header_.shape.at(i); }
  size_t count() const;  // number of elements
  const void* data() const;
  size_t data_offset() const { return header_.data_offset; }  // bytes of the header

  // The elements as T; a dtype other than T's is a cb::Error naming the file.
  template <typename T>
  std::span<const T> values() const {
    CB_CHECK(dtype() == dtype_of<T>(),
             path_ << ": holds " << dtype_name(dtype()) << ", expected " << dtype_name(dtype_of<T>()));
    return {static_cast<const T*>(data()), count()};
  }
  // Checks the dtype (one of `dtypes`) and shape (-1 = any size) and names the
  // file and what was expected when they differ.
  void expect(std::initializer_list<DType> dtypes, const std::vector<int64_t>& shape) const;

 private:
  struct Mapping;
  template <typename T>
  static constexpr DType dtype_of() {
    if constexpr (std::is_same_v<T, uint8_t>) return DType::u8;
    if constexpr (std::is_same_v<T, uint16_t>) return DType::u16;
    if constexpr (std::is_same_v<T, uint32_t>) return DType::u32;
    if constexpr (std::is_same_v<T, int64_t>) return DType::i64;
    if constexpr (std::is_same_v<T, float>) return DType::f32;
    if constexpr (std::is_same_v<T, double>) return DType::f64;
    return DType::undefined;
  }
  std::string path_;
  NpyHeader header_;
  std::shared_ptr<Mapping> map_;
};

// Writes a .npy array row by row: a header with room for any final shape,
// then the rows, then (finish) the header again with the row count. The file
// is valid .npy only after finish(). resume_rows > 0 reopens a file written
// before, keeping its first resume_rows rows (an interrupted build resumes).
class NpyAppender {
 public:
  NpyAppender() = default;
  NpyAppender(const std::string& path, DType dtype, std::vector<int64_t> row_shape, int64_t resume_rows = 0);
  NpyAppender(NpyAppender&& o) noexcept;
  NpyAppender& operator=(NpyAppender&& o) noexcept;
  ~NpyAppender();

  void append(const void* data, int64_t rows);
  template <typename T>
  void append(std::span<const T> v) {
    CB_CHECK(v.size() % size_t(row_elements_) == 0, path_ << ": appending a partial row");
    append(v.data(), int64_t(v.size()) / row_elements_);
  }
  template <typename T>
  void append_one(T v) {
    append(&v, 1);
  }
  int64_t rows() const { return rows_; }
  int64_t row_bytes() const { return row_bytes_; }
  const std::string& path() const { return path_; }
  void flush();   // written rows reach the file (for a resumable checkpoint)
  void finish();  // final header; closes the file

 private:
  std::string path_;
  DType dtype_ = DType::u8;
  std::vector<int64_t> row_shape_;
  int64_t row_elements_ = 1, row_bytes_ = 1, rows_ = 0;
  FILE* f_ = nullptr;
};

// The header size NpyAppender reserves: room for any shape of up to 4 dims.
inline constexpr size_t kAppendHeaderBytes = 128;

}  // namespace cb::cache
