#include "frontend/npy.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "support/error.h"
#include "support/file_io.h"

namespace cb {

namespace {

const char* descr_of(DType t) {
  switch (t) {
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::f16: return "<f2";
    case DType::i64: return "<i8";
    case DType::i32: return "<i4";
    case DType::i16: return "<i2";
    case DType::i8: return "|i1";
    case DType::u64: return "<u8";
    case DType::u32: return "<u4";
    case DType::u16: return "<u2";
    case DType::u8: return "|u1";
    case DType::boolean: return "|b1";
    case DType::bf16: return "<V2";  // NumPy has no bfloat16; raw 2-byte values
    default: return nullptr;
  }
}

std::optional<DType> dtype_of_descr(const std::string& d) {
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::i64, DType::i32, DType::i16, DType::i8, DType::u64,
                  DType::u32, DType::u16, DType::u8, DType::boolean}) {
    std::string want = descr_of(t);
    if (d == want || (d.size() == 3 && want.size() == 3 && d[0] == '=' && d.substr(1) == want.substr(1))) return t;
  }
  if (d == "<b1" || d == "=b1") return DType::boolean;
  if (d == "<i1" || d == "<u1") return d[1] == 'i' ? DType::i8 : DType::u8;
  return std::nullopt;
}

// Returns the text of dictionary key `key` in the header ("'descr': '<f4'").
std::string header_field(const std::string& h, const std::string& key, const std::string& what) {
  size_t p = h.find("'" + key + "'");
  CB_CHECK(p != std::string::npos, what << ": .npy header has no '" << key << "'");
  p = h.find(':', p);
  CB_CHECK(p != std::string::npos, what << ": malformed .npy header");
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  size_t end;
  if (h[p] == '(') {
    end = h.find(')', p);
    CB_CHECK(end != std::string::npos, what << ": malformed shape in .npy header");
    return h.substr(p, end - p + 1);
  }
  end = h.find_first_of(",}", p);
  return h.substr(p, end - p);
}

}  // namespace

size_t NpyHeader::data_bytes() const {
  // Overflow-checked: a hostile shape whose product wraps must not pass a size check.
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape)
    CB_CHECK(!__builtin_mul_overflow(n, uint64_t(d), &n) && n <= uint64_t(INT64_MAX),
             ".npy shape " << dims_str(shape) << " is too large (its byte size overflows)");
  return size_t(n);
}

NpyHeader npy_parse_header(const char* bytes, size_t size, const std::string& what) {
  CB_CHECK(size >= 10 && std::memcmp(bytes, "\x93NUMPY", 6) == 0, what << ": not a .npy file (bad magic)");
  int major = uint8_t(bytes[6]);
  size_t header_len, header_start;
  if (major == 1) {
    header_len = uint8_t(bytes[8]) | size_t(uint8_t(bytes[9])) << 8;
    header_start = 10;
  } else {
    CB_CHECK(size >= 12 && (major == 2 || major == 3), what << ": unsupported .npy version " << major);
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= size_t(uint8_t(bytes[8 + i])) << (8 * i);
    header_start = 12;
  }
  CB_CHECK(header_start + header_len <= size, what << ": truncated .npy header");
  std::string h(bytes + header_start, header_len);
  std::string descr = header_field(h, "descr", what);
  std::string order = header_field(h, "fortran_order", what);
  std::string shape = header_field(h, "shape", what);
  auto strip = [](std::string s) {
    while (!s.empty() && (s.front() == '\'' || s.front() == '"' || s.front() == ' ')) s.erase(0, 1);
    while (!s.empty() && (s.back() == '\'' || s.back() == '"' || s.back() == ' ')) s.pop_back();
    return s;
  };
  descr = strip(descr);
  CB_CHECK(strip(order) == "False", what << ": Fortran-order .npy arrays are not supported");
  auto dt = dtype_of_descr(descr);
  CB_CHECK(dt, what << ": unsupported .npy dtype '" << descr << "'");
  NpyHeader out;
  out.dtype = *dt;
  CB_CHECK(shape.size() >= 2 && shape.front() == '(' && shape.back() == ')',
           what << ": malformed shape '" << shape << "' in .npy header (expected a tuple)");
  std::string inner = shape.substr(1, shape.size() - 2);
  std::stringstream ss(inner);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    tok = strip(tok);
    if (tok.empty()) continue;
    char* end = nullptr;
    long long v = std::strtoll(tok.c_str(), &end, 10);
    CB_CHECK(end && *end == 0 && v >= 0, what << ": bad dimension '" << tok << "' in .npy shape");
    out.shape.push_back(v);
  }
  out.data_offset = header_start + header_len;
  return out;
}

Tensor npy_parse(const std::string& bytes, const std::string& what) {
  NpyHeader h = npy_parse_header(bytes.data(), bytes.size(), what);
  size_t need = 0;
  try {
    need = h.data_bytes();
  } catch (const Error& e) {
    CB_FAIL(what << ": " << e.what());
  }
  // Checked before allocating, so a huge claimed shape is an error, not an out-of-memory.
  CB_CHECK(bytes.size() - h.data_offset >= need, what << ": truncated .npy data (" << bytes.size() - h.data_offset
                                                      << " bytes for " << dtype_name(h.dtype) << dims_str(h.shape)
                                                      << ", which needs " << need << ")");
  Tensor t = Tensor::empty(h.dtype, h.shape);
  std::memcpy(t.raw(), bytes.data() + h.data_offset, t.nbytes());
  return t;
}

static std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  CB_CHECK(f, "cannot open '" << path << "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Tensor npy_read(const std::string& path) { return npy_parse(read_file(path), path); }

std::string npy_header(DType dtype, const std::vector<int64_t>& shape, size_t min_size) {
  const char* d = descr_of(dtype);
  CB_CHECK(d, "cannot write dtype " << dtype_name(dtype) << " to .npy");
  return npy_header(std::string(d), shape, min_size);
}

std::string npy_header(const std::string& d, const std::vector<int64_t>& shape, size_t min_size) {
  std::string dims = "(";
  for (size_t i = 0; i < shape.size(); ++i)
    dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
  dims += ")";
  std::string h = std::string("{'descr': '") + d + "', 'fortran_order': False, 'shape': " + dims + ", }";
  size_t total = 10 + h.size() + 1;
  size_t padded = std::max(total, min_size);
  padded += (64 - padded % 64) % 64;
  CB_CHECK(padded - 10 <= 0xffff, ".npy header too long for shape " << dims_str(shape));
  h.append(padded - total, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  out += char(h.size() & 0xff);
  out += char(h.size() >> 8);
  return out + h;
}

std::string npy_serialize(const Tensor& t) {
  std::string out = npy_header(t.dtype(), t.dims(), 0);
  out.append(static_cast<const char*>(t.raw()), t.nbytes());
  return out;
}

void npy_write(const std::string& path, const Tensor& t) { write_file_atomic(path, npy_serialize(t)); }

}  // namespace cb
