#include "tools/cache/npy_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "support/input_file.h"

namespace cb::cache {

struct MappedNpy::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr) munmap(addr, size);
  }
};

MappedNpy MappedNpy::open(const std::string& path) {
  MappedNpy m;
  m.path_ = path;
  const InputFile in = InputFile::open(path, ".npy file");  // regular files only
  m.map_ = std::make_shared<Mapping>();
  m.map_->size = in.size();
  if (m.map_->size > 0) {
    void* a = mmap(nullptr, m.map_->size, PROT_READ, MAP_SHARED, in.fd(), 0);
    CB_CHECK(a != MAP_FAILED, "cannot map '" << path << "': " << std::strerror(errno));
    m.map_->addr = a;
  }
  m.header_ = npy_parse_header(static_cast<const char*>(m.map_->addr), m.map_->size, path);
  size_t need = m.header_.data_offset + m.header_.data_bytes();
  CB_CHECK(m.map_->size >= need, path << ": truncated (" << m.map_->size << " bytes; its header "
                                      << dtype_name(m.header_.dtype) << dims_str(m.header_.shape) << " needs " << need
                                      << ")");
  return m;
}

size_t MappedNpy::count() const {
  size_t n = 1;
  for (int64_t d : header_.shape) n *= size_t(d);
  return n;
}

const void* MappedNpy::data() const { return static_cast<const char*>(map_->addr) + header_.data_offset; }

void MappedNpy::expect(std::initializer_list<DType> dtypes, const std::vector<int64_t>& shape) const {
  bool ok_dtype = false;
  std::string names;
  for (DType d : dtypes) {
    ok_dtype |= d == dtype();
    names += (names.empty() ? "" : " or ") + std::string(dtype_name(d));
  }
  CB_CHECK(ok_dtype, path_ << ": holds " << dtype_name(dtype()) << ", expected " << names);
  bool ok_shape = shape.size() == header_.shape.size();
  for (size_t i = 0; ok_shape && i < shape.size(); ++i) ok_shape = shape[i] < 0 || shape[i] == header_.shape[i];
  if (!ok_shape) {
    std::string want = "[";
    for (size_t i = 0; i < shape.size(); ++i)
      want += (i ? "," : "") + (shape[i] < 0 ? std::string("*") : std::to_string(shape[i]));
    CB_FAIL(path_ << ": shape " << dims_str(header_.shape) << ", expected " << want + "]");
  }
}

// ---------------------------------------------------------------------------

NpyAppender::NpyAppender(const std::string& path, DType dtype, std::vector<int64_t> row_shape, int64_t resume_rows)
    : path_(path), dtype_(dtype), row_shape_(std::move(row_shape)) {
  for (int64_t d : row_shape_) row_elements_ *= d;
  row_bytes_ = row_elements_ * int64_t(dtype_size(dtype));
  std::vector<int64_t> shape = {0};
  shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
  std::string header = npy_header(dtype_, shape, kAppendHeaderBytes);
  CB_CHECK(header.size() == kAppendHeaderBytes, path << ": shape too long for the .npy header");
  if (resume_rows > 0) {
    off_t keep = off_t(kAppendHeaderBytes) + off_t(resume_rows) * off_t(row_bytes_);
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    CB_CHECK(!ec && off_t(size) >= keep,
             path << ": shorter than the " << resume_rows << " rows the progress file records; cannot resume");
    CB_CHECK(truncate(path.c_str(), keep) == 0, "cannot truncate '" << path << "': " << std::strerror(errno));
    f_ = std::fopen(path.c_str(), "r+b");
    CB_CHECK(f_, "cannot open '" << path << "': " << std::strerror(errno));
    std::fseek(f_, 0, SEEK_END);
    rows_ = resume_rows;
  } else {
    f_ = std::fopen(path.c_str(), "wb");
    CB_CHECK(f_, "cannot create '" << path << "': " << std::strerror(errno));
    CB_CHECK(std::fwrite(header.data(), 1, header.size(), f_) == header.size(), "cannot write '" << path << "'");
  }
  std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
}

NpyAppender::NpyAppender(NpyAppender&& o) noexcept { *this = std::move(o); }

NpyAppender& NpyAppender::operator=(NpyAppender&& o) noexcept {
  if (this != &o) {
    if (f_) std::fclose(f_);
    path_ = std::move(o.path_);
    dtype_ = o.dtype_;
    row_shape_ = std::move(o.row_shape_);
    row_elements_ = o.row_elements_;
    row_bytes_ = o.row_bytes_;
    rows_ = o.rows_;
    f_ = o.f_;
    o.f_ = nullptr;
  }
  return *this;
}

NpyAppender::~NpyAppender() {
  if (f_) std::fclose(f_);
}

void NpyAppender::append(const void* data, int64_t rows) {
  CB_CHECK(f_, path_ << ": written after finish()");
  size_t n = size_t(rows * row_bytes_);
  CB_CHECK(n == 0 || std::fwrite(data, 1, n, f_) == n, "cannot write '" << path_ << "': " << std::strerror(errno));
  rows_ += rows;
}

void NpyAppender::flush() {
  CB_CHECK(!f_ || std::fflush(f_) == 0, "cannot write '" << path_ << "': " << std::strerror(errno));
}

void NpyAppender::finish() {
  CB_CHECK(f_, path_ << ": finished twice");
  std::vector<int64_t> shape = {rows_};
  shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
  std::string header = npy_header(dtype_, shape, kAppendHeaderBytes);
  CB_CHECK(header.size() == kAppendHeaderBytes, path_ << ": shape too long for the .npy header");
  bool ok = std::fflush(f_) == 0 && std::fseek(f_, 0, SEEK_SET) == 0 &&
            std::fwrite(header.data(), 1, header.size(), f_) == header.size();
  ok = (std::fclose(f_) == 0) && ok;
  f_ = nullptr;
  CB_CHECK(ok, "cannot write '" << path_ << "': " << std::strerror(errno));
}

}  // namespace cb::cache
