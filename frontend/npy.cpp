#include "frontend/npy.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "support/checked_size.h"
#include "support/error.h"
#include "support/file_io.h"
#include "support/input_file.h"

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
  CB_CHECK(p < h.size(), what << ": .npy header has no value for '" << key << "'");
  size_t end;
  if (h[p] == '(') {
    end = h.find(')', p);
    CB_CHECK(end != std::string::npos, what << ": malformed shape in .npy header");
    return h.substr(p, end - p + 1);
  }
  end = h.find_first_of(",}", p);
  return h.substr(p, end == std::string::npos ? std::string::npos : end - p);
}

// The header dictionary without its padding; it must be one "{...}".
std::string header_dict(const char* text, size_t size, const std::string& what) {
  std::string h(text, size);
  while (!h.empty() && (h.back() == ' ' || h.back() == '\n' || h.back() == '\0')) h.pop_back();
  CB_CHECK(!h.empty() && h.front() == '{', what << ": .npy header does not start with '{'");
  CB_CHECK(h.back() == '}', what << ": .npy header has no closing '}' (truncated or malformed header)");
  return h;
}

}  // namespace

size_t NpyHeader::data_bytes() const { return checked_nbytes(shape, dtype_size(dtype), "the .npy shape"); }

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
  std::string h = header_dict(bytes + header_start, header_len, what);
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
           what << ": the shape in the .npy header must be a tuple, got '" << shape << "'");
  std::string inner = shape.substr(1, shape.size() - 2);
  std::stringstream ss(inner);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    tok = strip(tok);
    if (tok.empty()) continue;
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(tok.c_str(), &end, 10);
    CB_CHECK(end && *end == 0 && v >= 0 && errno != ERANGE, what << ": bad dimension '" << tok << "' in .npy shape");
    out.shape.push_back(v);
  }
  out.data_offset = header_start + header_len;
  // A shape whose product overflows is refused here, before anything is sized by it.
  checked_nbytes(out.shape, dtype_size(out.dtype), what + ": .npy shape");
  return out;
}

Tensor npy_parse(const std::string& bytes, const std::string& what) {
  NpyHeader h = npy_parse_header(bytes.data(), bytes.size(), what);
  // The claimed size against the bytes present, before allocating for it.
  const size_t need = h.data_bytes(), have = bytes.size() - h.data_offset;
  CB_CHECK(have >= need, what << ": truncated .npy data (" << have << " bytes for " << dtype_name(h.dtype)
                              << dims_str(h.shape) << ", which needs " << need << ")");
  Tensor t = allocate_for(what, [&] { return Tensor::empty(h.dtype, h.shape); });
  std::memcpy(t.raw(), bytes.data() + h.data_offset, need);
  if (h.dtype == DType::boolean)  // any non-zero byte is true; bools must be 0 or 1 in memory
    for (size_t i = 0; i < need; ++i) static_cast<uint8_t*>(t.raw())[i] = bytes[h.data_offset + i] != 0;
  return t;
}

Tensor npy_read(const std::string& path) { return npy_parse(read_input_file(path, ".npy file"), path); }

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
