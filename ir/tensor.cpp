#include "ir/tensor.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "support/checked_size.h"
#include "support/input_file.h"

namespace cb {

namespace {

class AlignedBuffer : public Buffer {
 public:
  explicit AlignedBuffer(size_t bytes) {
    size_ = bytes;
    const size_t memory = physical_memory_bytes();
    if (memory > 0 && bytes > memory)
      throw Error("out of memory allocating " + std::to_string(bytes) + " bytes (more than the machine's " +
                  std::to_string(memory) + " bytes of memory)");
    constexpr size_t kHuge = 2u << 20;
    size_t align = bytes >= kHuge ? kHuge : 64;
    size_t rounded = (bytes + align - 1) / align * align;
    if (rounded == 0) rounded = align;
    if (rounded < bytes) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");  // wrapped
    data_ = std::aligned_alloc(align, rounded);
    if (!data_) throw Error("out of memory allocating " + std::to_string(bytes) + " bytes");
    if (bytes >= kHuge) madvise(data_, rounded, MADV_HUGEPAGE);
  }
  ~AlignedBuffer() override { std::free(data_); }
};

class ViewBuffer : public Buffer {
 public:
  ViewBuffer(void* d, size_t n, std::shared_ptr<void> owner) : owner_(std::move(owner)) {
    data_ = d;
    size_ = n;
  }

 private:
  std::shared_ptr<void> owner_;
};

class StringBuffer : public Buffer {
 public:
  explicit StringBuffer(std::string&& s) : s_(std::move(s)) {
    data_ = s_.data();
    size_ = s_.size();
  }

 private:
  std::string s_;
};

}  // namespace

std::shared_ptr<Buffer> buffer_allocate(size_t bytes) { return std::make_shared<AlignedBuffer>(bytes); }
std::shared_ptr<Buffer> buffer_view(void* data, size_t bytes, std::shared_ptr<void> owner) {
  return std::make_shared<ViewBuffer>(data, bytes, std::move(owner));
}
std::shared_ptr<Buffer> buffer_from_string(std::string&& bytes) {
  return std::make_shared<StringBuffer>(std::move(bytes));
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  InputFile in = InputFile::open(path, "file");  // regular files only: a FIFO or device is refused, not read
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = in.size();
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, in.fd(), 0);
    if (p == MAP_FAILED) throw Error("cannot memory-map '" + path + "': " + std::strerror(errno));
    f->data_ = static_cast<uint8_t*>(p);
  }
  return f;
}

MappedFile::~MappedFile() {
  if (data_) munmap(data_, size_);
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (auto d : dims_) n *= d;
  return n;
}

Tensor Tensor::empty(DType dtype, std::vector<int64_t> dims) {
  Tensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  const size_t bytes = checked_nbytes(t.dims_, dtype_size(dtype), "tensor");
  try {
    t.buf_ = buffer_allocate(bytes);
  } catch (const Error& e) {
    CB_FAIL(e.what() << " for a tensor " << dtype_name(dtype) << dims_str(t.dims_));
  }
  return t;
}

Tensor Tensor::zeros(DType dtype, std::vector<int64_t> dims) {
  Tensor t = empty(dtype, std::move(dims));
  std::memset(t.raw(), 0, t.nbytes());
  return t;
}

Tensor Tensor::wrap(DType dtype, std::vector<int64_t> dims, std::shared_ptr<Buffer> buf, size_t byte_offset) {
  Tensor t;
  t.dtype_ = dtype;
  t.dims_ = std::move(dims);
  t.buf_ = std::move(buf);
  t.offset_ = byte_offset;
  size_t have = t.buf_ ? t.buf_->size() : 0;
  const size_t need = checked_nbytes(t.dims_, dtype_size(dtype), "tensor");
  CB_CHECK(byte_offset <= have && need <= have - byte_offset,
           "tensor " << dtype_name(dtype) << dims_str(t.dims_) << " needs " << t.nbytes()
                     << " bytes but its buffer has " << (have > byte_offset ? have - byte_offset : 0));
  return t;
}

Device Device::parse(const std::string& text) {
  Device d;
  const size_t colon = text.find(':');
  d.kind = text.substr(0, colon);
  CB_CHECK(!d.kind.empty() && d.kind.find_first_not_of("abcdefghijklmnopqrstuvwxyz") == std::string::npos,
           "device '" << text << "': expected KIND or KIND:INDEX (cpu, cuda, cuda:1)");
  if (colon != std::string::npos) {
    const std::string index = text.substr(colon + 1);
    CB_CHECK(!index.empty() && index.size() <= 4 && index.find_first_not_of("0123456789") == std::string::npos,
             "device '" << text << "': the index after ':' must be a number");
    d.index = std::stoi(index);
    CB_CHECK(!d.is_host() || d.index == 0, "device '" << text << "': the host is cpu (index 0 only)");
  }
  return d;
}

Tensor Tensor::clone() const {
  CB_CHECK(device().is_host(), "cannot copy a tensor on " << device().str() << " with host code");
  Tensor t = empty(dtype_, dims_);
  if (nbytes()) std::memcpy(t.raw(), raw(), nbytes());
  return t;
}

Tensor Tensor::reshaped(std::vector<int64_t> dims) const {
  Tensor t = *this;
  t.dims_ = std::move(dims);
  checked_numel(t.dims_, "reshape");
  CB_CHECK(t.numel() == numel(), "cannot reshape " << dims_str(dims_) << " to " << dims_str(t.dims_));
  return t;
}

double Tensor::get_double(int64_t i) const {
  return dtype_dispatch(dtype_, [&](auto tag) { return to_double(data<decltype(tag)>()[i]); });
}

int64_t Tensor::get_int(int64_t i) const {
  switch (dtype_) {
    case DType::i64: return data<int64_t>()[i];
    case DType::i32: return data<int32_t>()[i];
    case DType::i16: return data<int16_t>()[i];
    case DType::i8: return data<int8_t>()[i];
    case DType::u64: return int64_t(data<uint64_t>()[i]);
    case DType::u32: return data<uint32_t>()[i];
    case DType::u16: return data<uint16_t>()[i];
    case DType::u8: return data<uint8_t>()[i];
    case DType::boolean: return data<bool>()[i];
    default: return int64_t(get_double(i));
  }
}

std::vector<int64_t> Tensor::to_int_vector() const {
  std::vector<int64_t> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[size_t(i)] = get_int(i);
  return v;
}

bool Tensor::bitwise_equal(const Tensor& o) const {
  return dtype_ == o.dtype_ && dims_ == o.dims_ && std::memcmp(raw(), o.raw(), nbytes()) == 0;
}

std::string dims_str(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

std::string Tensor::str(int64_t max_elements) const {
  std::ostringstream os;
  os << dtype_name(dtype_) << dims_str(dims_) << " {";
  int64_t n = numel();
  for (int64_t i = 0; i < n && i < max_elements; ++i) {
    if (i) os << ", ";
    if (dtype_is_float(dtype_))
      os << get_double(i);
    else
      os << get_int(i);
  }
  if (n > max_elements) os << ", ...";
  os << "}";
  return os.str();
}

}  // namespace cb
