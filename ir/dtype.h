// Element types of tensors and values, and the one place that maps them to
// ONNX's TensorProto.DataType numbers and to names used by the text IR.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace cb {

enum class DType : uint8_t {
  undefined,
  f32,
  f16,
  bf16,
  f64,
  i64,
  i32,
  i16,
  i8,
  u64,
  u32,
  u16,
  u8,
  boolean,
};

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // "f32", "i64", "bool", ...
std::optional<DType> dtype_from_name(std::string_view name);
std::optional<DType> dtype_from_onnx(int32_t onnx_type);  // nullopt: not supported
int32_t dtype_to_onnx(DType t);
std::string onnx_dtype_name(int32_t onnx_type);  // "FLOAT8E4M3FN", for error messages
bool dtype_is_float(DType t);
bool dtype_is_signed_int(DType t);
bool dtype_is_unsigned_int(DType t);
inline bool dtype_is_int(DType t) { return dtype_is_signed_int(t) || dtype_is_unsigned_int(t); }

// 16-bit float storage types. Arithmetic is done in float; conversion rounds to nearest even.
struct Half {
  uint16_t bits = 0;
};
struct BFloat16 {
  uint16_t bits = 0;
};
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
inline float bf16_to_float(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t float_to_bf16(float f);

// C++ type for each DType, for typed kernels.
template <DType T>
struct CType;
template <>
struct CType<DType::f32> {
  using type = float;
};
template <>
struct CType<DType::f64> {
  using type = double;
};
template <>
struct CType<DType::f16> {
  using type = Half;
};
template <>
struct CType<DType::bf16> {
  using type = BFloat16;
};
template <>
struct CType<DType::i64> {
  using type = int64_t;
};
template <>
struct CType<DType::i32> {
  using type = int32_t;
};
template <>
struct CType<DType::i16> {
  using type = int16_t;
};
template <>
struct CType<DType::i8> {
  using type = int8_t;
};
template <>
struct CType<DType::u64> {
  using type = uint64_t;
};
template <>
struct CType<DType::u32> {
  using type = uint32_t;
};
template <>
struct CType<DType::u16> {
  using type = uint16_t;
};
template <>
struct CType<DType::u8> {
  using type = uint8_t;
};
template <>
struct CType<DType::boolean> {
  using type = bool;
};

// Calls fn(T{}) with T the C type of `t`. Throws on undefined.
template <typename Fn>
decltype(auto) dtype_dispatch(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: return fn(float{});
    case DType::f64: return fn(double{});
    case DType::f16: return fn(Half{});
    case DType::bf16: return fn(BFloat16{});
    case DType::i64: return fn(int64_t{});
    case DType::i32: return fn(int32_t{});
    case DType::i16: return fn(int16_t{});
    case DType::i8: return fn(int8_t{});
    case DType::u64: return fn(uint64_t{});
    case DType::u32: return fn(uint32_t{});
    case DType::u16: return fn(uint16_t{});
    case DType::u8: return fn(uint8_t{});
    case DType::boolean: return fn(bool{});
    default: break;
  }
  throw std::runtime_error("dtype_dispatch: undefined dtype");
}

// Value conversions used by kernels that compute in a wider type.
template <typename T>
inline double to_double(T v) {
  return static_cast<double>(v);
}
template <>
inline double to_double<Half>(Half v) {
  return half_to_float(v.bits);
}
template <>
inline double to_double<BFloat16>(BFloat16 v) {
  return bf16_to_float(v.bits);
}
template <typename T>
inline T from_double(double v) {
  return static_cast<T>(v);
}
template <>
inline Half from_double<Half>(double v) {
  return Half{float_to_half(float(v))};
}
template <>
inline BFloat16 from_double<BFloat16>(double v) {
  return BFloat16{float_to_bf16(float(v))};
}
template <>
inline bool from_double<bool>(double v) {
  return v != 0.0;
}

template <typename T>
DType dtype_of();
template <>
inline DType dtype_of<float>() {
  return DType::f32;
}
template <>
inline DType dtype_of<double>() {
  return DType::f64;
}
template <>
inline DType dtype_of<Half>() {
  return DType::f16;
}
template <>
inline DType dtype_of<BFloat16>() {
  return DType::bf16;
}
template <>
inline DType dtype_of<int64_t>() {
  return DType::i64;
}
template <>
inline DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
inline DType dtype_of<int16_t>() {
  return DType::i16;
}
template <>
inline DType dtype_of<int8_t>() {
  return DType::i8;
}
template <>
inline DType dtype_of<uint64_t>() {
  return DType::u64;
}
template <>
inline DType dtype_of<uint32_t>() {
  return DType::u32;
}
template <>
inline DType dtype_of<uint16_t>() {
  return DType::u16;
}
template <>
inline DType dtype_of<uint8_t>() {
  return DType::u8;
}
template <>
inline DType dtype_of<bool>() {
  return DType::boolean;
}

}  // namespace cb
