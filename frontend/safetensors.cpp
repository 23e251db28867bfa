// The .safetensors reader (memory-mapped, validated) and writer of
// frontend/safetensors.h.
#include "frontend/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include "support/checked_size.h"
#include "support/error.h"
#include "support/file_io.h"
#include "support/json.h"

namespace cb {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// The reference implementation refuses headers over 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeInfo {
  const char* name;
  size_t size;
  DType dtype;  // undefined: no codebook type
};

constexpr DTypeInfo kDTypes[] = {
    {"BOOL", 1, DType::boolean},
    {"U8", 1, DType::u8},
    {"I8", 1, DType::i8},
    {"U16", 2, DType::u16},
    {"I16", 2, DType::i16},
    {"F16", 2, DType::f16},
    {"BF16", 2, DType::bf16},
    {"U32", 4, DType::u32},
    {"I32", 4, DType::i32},
    {"F32", 4, DType::f32},
    {"U64", 8, DType::u64},
    {"I64", 8, DType::i64},
    {"F64", 8, DType::f64},
    {"F8_E4M3", 1, DType::undefined},
    {"F8_E5M2", 1, DType::undefined},
    {"F8_E8M0", 1, DType::undefined},
    {"C64", 8, DType::undefined},
};

const DTypeInfo* dtype_info(const std::string& name) {
  for (const DTypeInfo& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string known_dtype_names() {
  std::string s;
  for (const DTypeInfo& d : kDTypes) s += std::string(s.empty() ? "" : ", ") + d.name;
  return s;
}

// A non-negative integer from a header field; `what` names it.
uint64_t header_uint(const Json& v, const std::string& what) {
  CB_CHECK(v.is_integer() && v.as_int() >= 0, what << " must be a non-negative integer, got " << v.dump());
  return uint64_t(v.as_int());
}

SafetensorsEntry parse_entry(const std::string& name, const Json& info, const std::string& where) {
  const std::string what = where + ": tensor '" + name + "'";
  CB_CHECK(info.is_object(), what << " must be an object with dtype, shape and data_offsets");
  for (const auto& [key, _] : info.as_object())
    CB_CHECK(key == "dtype" || key == "shape" || key == "data_offsets",
             what << " has an unknown field '" << key << "' (expected dtype, shape and data_offsets)");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    CB_CHECK(info.find(key), what << " has no '" << key << "'");

  SafetensorsEntry e;
  e.name = name;
  const Json& dtype = info.at("dtype");
  CB_CHECK(dtype.is_string(), what << ": dtype must be a string, got " << dtype.dump());
  e.dtype_name = dtype.as_string();
  const DTypeInfo* di = dtype_info(e.dtype_name);
  CB_CHECK(di, what << " has unknown dtype '" << e.dtype_name << "' (known: " << known_dtype_names() << ")");
  e.dtype = di->dtype;

  const Json& shape = info.at("shape");
  CB_CHECK(shape.is_array(), what << ": shape must be an array, got " << shape.dump());
  for (const Json& d : shape.as_array()) e.shape.push_back(int64_t(header_uint(d, what + ": every shape dimension")));
  const size_t nbytes = checked_nbytes(e.shape, di->size, what);

  const Json& offsets = info.at("data_offsets");
  CB_CHECK(offsets.is_array() && offsets.size() == 2,
           what << ": data_offsets must be [begin, end], got " << offsets.dump());
  e.begin = header_uint(offsets.at(size_t(0)), what + ": data_offsets begin");
  e.end = header_uint(offsets.at(size_t(1)), what + ": data_offsets end");
  CB_CHECK(e.begin <= e.end, what << ": data_offsets " << offsets.dump() << " end before they begin");
  CB_CHECK(e.end - e.begin == nbytes, what << ": data_offsets " << offsets.dump() << " hold " << (e.end - e.begin)
                                           << " bytes, but " << e.dtype_name << dims_str(e.shape) << " needs "
                                           << nbytes);
  return e;
}

}  // namespace

std::string safetensors_dtype_name(DType t) {
  for (const DTypeInfo& d : kDTypes)
    if (d.dtype == t && t != DType::undefined) return d.name;
  CB_FAIL("dtype " << dtype_name(t) << " has no safetensors name");
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->file_ = MappedFile::open(path);
  const size_t size = f->file_->size();
  CB_CHECK(size >= 8, path << ": " << size << " bytes is too small for a safetensors file (no header length)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, f->file_->data(), 8);
  CB_CHECK(header_len <= kMaxHeaderBytes,
           path << ": header length " << header_len << " is over the 100 MB limit (not a safetensors file?)");
  CB_CHECK(header_len <= size - 8,
           path << ": header length " << header_len << " runs past the end of the file (" << size << " bytes)");
  CB_CHECK(header_len >= 2 && f->file_->data()[8] == '{',
           path << ": the header does not start with '{' (not a safetensors file?)");
  f->data_start_ = 8 + size_t(header_len);
  const std::string where = path + " (safetensors header)";
  const Json header =
      json_parse(std::string_view(reinterpret_cast<const char*>(f->file_->data()) + 8, size_t(header_len)), where);
  CB_CHECK(header.is_object(), where << ": must be a JSON object");

  for (const auto& [name, info] : header.as_object()) {
    if (name == "__metadata__") {
      CB_CHECK(info.is_object(), where << ": __metadata__ must be an object of strings");
      for (const auto& [key, value] : info.as_object()) {
        CB_CHECK(value.is_string(), where << ": __metadata__ '" << key << "' must be a string, got " << value.dump());
        f->metadata_[key] = value.as_string();
      }
      continue;
    }
    f->entries_.push_back(parse_entry(name, info, where));
  }

  // The tensors must tile the data region: sorted by offset, each begins where
  // the previous one ends, and the last one ends at the end of the file.
  std::vector<const SafetensorsEntry*> by_offset;
  for (const SafetensorsEntry& e : f->entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  size_t expected = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry* e : by_offset) {
    CB_CHECK(e->begin == expected,
             where << ": tensor '" << e->name << "' begins at data offset " << e->begin << " but "
                   << (previous ? "'" + previous->name + "' ends" : std::string("the data begins")) << " at "
                   << expected << " (tensors must tile the data without gaps or overlap)");
    expected = e->end;
    previous = e;
  }
  const size_t data_size = size - f->data_start_;
  CB_CHECK(expected == data_size, where << ": the tensors cover " << expected << " bytes of data but the file holds "
                                        << data_size << " bytes after the header");
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const SafetensorsEntry& e, const std::string& n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  CB_CHECK(e, path_ << ": no tensor named '" << name << "'");
  return *e;
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  CB_CHECK(e.dtype != DType::undefined,
           path_ << ": tensor '" << name << "' has dtype " << e.dtype_name << ", which codebook has no type for");
  const uint8_t* bytes = file_->data() + data_start_ + e.begin;
  const size_t nbytes = e.end - e.begin;
  const bool aligned = reinterpret_cast<uintptr_t>(bytes) % dtype_size(e.dtype) == 0;
  if (nbytes > 0 && aligned && e.dtype != DType::boolean) {
    // The mapping is read-only; kernels never write to constant tensors.
    auto buf = buffer_view(const_cast<uint8_t*>(bytes), nbytes, std::static_pointer_cast<void>(file_));
    return Tensor::wrap(e.dtype, e.shape, std::move(buf));
  }
  Tensor t = allocate_for(path_ + ": tensor '" + name + "'", [&] { return Tensor::empty(e.dtype, e.shape); });
  if (e.dtype == DType::boolean) {
    for (size_t i = 0; i < nbytes; ++i) t.data<bool>()[i] = bytes[i] != 0;  // any non-zero byte is true
  } else if (nbytes > 0) {
    std::memcpy(t.raw(), bytes, nbytes);
  }
  return t;
}

Tensor SafetensorsFile::tensor_f32(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  if (e.dtype == DType::f32) return tensor(name);
  CB_CHECK(e.dtype == DType::f16 || e.dtype == DType::bf16 || e.dtype == DType::f64,
           path_ << ": tensor '" << name << "' has dtype " << e.dtype_name
                 << "; expected a floating-point tensor (F32, F16, BF16 or F64)");
  const uint8_t* bytes = file_->data() + data_start_ + e.begin;
  Tensor t = allocate_for(path_ + ": tensor '" + name + "'", [&] { return Tensor::empty(DType::f32, e.shape); });
  float* out = t.data<float>();
  const int64_t n = t.numel();
  if (e.dtype == DType::f64) {
    for (int64_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, bytes + 8 * i, 8);
      out[i] = float(d);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, bytes + 2 * i, 2);
      out[i] = e.dtype == DType::f16 ? half_to_float(h) : bf16_to_float(h);
    }
  }
  return t;
}

std::string safetensors_serialize(const NamedTensors& tensors, const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    CB_CHECK(!name.empty(), "safetensors: a tensor has an empty name");
    CB_CHECK(name != "__metadata__", "safetensors: '__metadata__' is reserved and cannot name a tensor");
    CB_CHECK(names.insert(name).second, "safetensors: two tensors are named '" << name << "'");
    CB_CHECK(t.defined(), "safetensors: tensor '" << name << "' is undefined");
  }
  // Larger elements first, then by name: every tensor starts at a multiple of
  // its element size (the data region starts 8-byte aligned).
  std::vector<const std::pair<std::string, Tensor>*> order;
  for (const auto& nt : tensors) order.push_back(&nt);
  std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) {
    const size_t sa = dtype_size(a->second.dtype()), sb = dtype_size(b->second.dtype());
    return sa != sb ? sa > sb : a->first < b->first;
  });

  Json header = Json::Object{};
  if (!metadata.empty()) {
    Json meta = Json::Object{};
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  size_t offset = 0;
  for (const auto* nt : order) {
    const Tensor& t = nt->second;
    Json shape = Json::Array{};
    for (int64_t d : t.dims()) shape.as_array().emplace_back(d);
    Json info = Json::Object{};
    info["dtype"] = safetensors_dtype_name(t.dtype());
    info["shape"] = std::move(shape);
    info["data_offsets"] = Json::Array{Json(int64_t(offset)), Json(int64_t(offset + t.nbytes()))};
    header[nt->first] = std::move(info);
    offset += t.nbytes();
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + header_text.size() + offset);
  const uint64_t header_len = header_text.size();
  out.append(reinterpret_cast<const char*>(&header_len), 8);
  out += header_text;
  for (const auto* nt : order) {
    const Tensor& t = nt->second;
    if (t.dtype() == DType::boolean) {
      for (int64_t i = 0; i < t.numel(); ++i) out += char(t.data<bool>()[i] ? 1 : 0);
    } else {
      out.append(static_cast<const char*>(t.raw()), t.nbytes());
    }
  }
  return out;
}

void safetensors_write(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, safetensors_serialize(tensors, metadata));
}

}  // namespace cb
