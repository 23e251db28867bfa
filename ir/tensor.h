// Dense, contiguous, row-major tensors. The bytes live in a Buffer that may
// be owned memory, a slice of a memory-mapped file, or bytes taken over from a
// parsed protobuf; tensors share buffers (copying a Tensor is cheap). A buffer
// knows the device its memory is on: the host unless a device backend
// allocated it (backends/backend.h); only host bytes may be read here.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ir/dtype.h"
#include "support/error.h"

namespace cb {

// Where a buffer's memory is: the host, or device `index` of a kind
// ("cuda:0"; "sim:0" is the test-only simulated device, tests/sim_device.h).
struct Device {
  std::string kind = "cpu";
  int index = 0;

  static Device host() { return {}; }
  bool is_host() const { return kind == "cpu"; }
  std::string str() const { return is_host() ? kind : kind + ":" + std::to_string(index); }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  // "cpu", "cuda" (index 0) or "cuda:1"; throws cb::Error on anything else.
  static Device parse(const std::string& text);
};

class Buffer {
 public:
  virtual ~Buffer() = default;
  void* data() const { return data_; }
  size_t size() const { return size_; }
  const Device& device() const { return device_; }

 protected:
  void* data_ = nullptr;
  size_t size_ = 0;
  Device device_;
};

// 64-byte aligned heap memory; large buffers are advised to use huge pages.
std::shared_ptr<Buffer> buffer_allocate(size_t bytes);
// Bytes owned elsewhere, kept alive by `owner` (e.g. a memory-mapped file).
std::shared_ptr<Buffer> buffer_view(void* data, size_t bytes, std::shared_ptr<void> owner);
// Takes over the bytes of a string (no copy).
std::shared_ptr<Buffer> buffer_from_string(std::string&& bytes);

// A read-only memory map of a whole file. Throws cb::Error naming the path on failure.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

class Tensor {
 public:
  Tensor() = default;
  // Uninitialised tensor in fresh memory.
  static Tensor empty(DType dtype, std::vector<int64_t> dims);
  static Tensor zeros(DType dtype, std::vector<int64_t> dims);
  // Wraps an existing buffer; throws if the buffer is too small.
  static Tensor wrap(DType dtype, std::vector<int64_t> dims, std::shared_ptr<Buffer> buf, size_t byte_offset = 0);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& v, std::vector<int64_t> dims);
  template <typename T>
  static Tensor scalar(T v) {
    return from_vector<T>({v}, {});
  }

  bool defined() const { return dtype_ != DType::undefined; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& dims() const { return dims_; }
  size_t rank() const { return dims_.size(); }
  int64_t dim(size_t i) const { return dims_[i]; }
  int64_t numel() const;
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }

  void* raw() const { return static_cast<uint8_t*>(buf_ ? buf_->data() : nullptr) + offset_; }
  template <typename T>
  T* data() const {
    return static_cast<T*>(raw());
  }
  const std::shared_ptr<Buffer>& buffer() const { return buf_; }
  Device device() const { return buf_ ? buf_->device() : Device::host(); }

  Tensor clone() const;                              // deep copy (host tensors only)
  Tensor reshaped(std::vector<int64_t> dims) const;  // same bytes, new dims
  // Element i converted to double / int64 (for small shape tensors and tests).
  double get_double(int64_t i) const;
  int64_t get_int(int64_t i) const;
  std::vector<int64_t> to_int_vector() const;  // any integer dtype
  bool bitwise_equal(const Tensor& o) const;
  std::string str(int64_t max_elements = 8) const;  // "f32[2,3] {1, 2, ...}"

 private:
  DType dtype_ = DType::undefined;
  std::vector<int64_t> dims_;
  std::shared_ptr<Buffer> buf_;
  size_t offset_ = 0;
};

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& v, std::vector<int64_t> dims) {
  Tensor t = empty(dtype_of<T>(), std::move(dims));
  CB_CHECK(int64_t(v.size()) == t.numel(),
           "Tensor::from_vector: " << v.size() << " values for " << t.numel() << " elements");
  T* d = t.data<T>();
  for (size_t i = 0; i < v.size(); ++i) d[i] = v[i];
  return t;
}

std::string dims_str(const std::vector<int64_t>& dims);  // "[2,3]"

}  // namespace cb
