#include "ir/dtype.h"

#include <cmath>

namespace cb {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64:
    case DType::i64:
    case DType::u64: return 8;
    case DType::f32:
    case DType::i32:
    case DType::u32: return 4;
    case DType::f16:
    case DType::bf16:
    case DType::i16:
    case DType::u16: return 2;
    case DType::i8:
    case DType::u8:
    case DType::boolean: return 1;
    default: return 0;
  }
}

namespace {
struct DTypeInfo {
  DType t;
  const char* name;
  int32_t onnx;
};
constexpr DTypeInfo kInfo[] = {
    {DType::f32, "f32", 1},    {DType::u8, "u8", 2},    {DType::i8, "i8", 3},    {DType::u16, "u16", 4},
    {DType::i16, "i16", 5},    {DType::i32, "i32", 6},  {DType::i64, "i64", 7},  {DType::boolean, "bool", 9},
    {DType::f16, "f16", 10},   {DType::f64, "f64", 11}, {DType::u32, "u32", 12}, {DType::u64, "u64", 13},
    {DType::bf16, "bf16", 16},
};
}  // namespace

std::string_view dtype_name(DType t) {
  for (auto& i : kInfo)
    if (i.t == t) return i.name;
  return "undefined";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (auto& i : kInfo)
    if (name == i.name) return i.t;
  return std::nullopt;
}

std::optional<DType> dtype_from_onnx(int32_t onnx_type) {
  for (auto& i : kInfo)
    if (i.onnx == onnx_type) return i.t;
  return std::nullopt;
}

int32_t dtype_to_onnx(DType t) {
  for (auto& i : kInfo)
    if (i.t == t) return i.onnx;
  return 0;
}

std::string onnx_dtype_name(int32_t v) {
  static const char* names[] = {
      "UNDEFINED", "FLOAT",      "UINT8",      "INT8",         "UINT16",         "INT16",      "INT32",
      "INT64",     "STRING",     "BOOL",       "FLOAT16",      "DOUBLE",         "UINT32",     "UINT64",
      "COMPLEX64", "COMPLEX128", "BFLOAT16",   "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ",
      "UINT4",     "INT4",       "FLOAT4E2M1", "FLOAT8E8M0",   "UINT2",          "INT2"};
  if (v >= 0 && v < int32_t(sizeof(names) / sizeof(names[0]))) return names[v];
  return "type#" + std::to_string(v);
}

bool dtype_is_float(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16; }
bool dtype_is_signed_int(DType t) { return t == DType::i64 || t == DType::i32 || t == DType::i16 || t == DType::i8; }
bool dtype_is_unsigned_int(DType t) { return t == DType::u64 || t == DType::u32 || t == DType::u16 || t == DType::u8; }

float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while (!(mant & 0x400));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = (x >> 16) & 0x8000;
  uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0);  // inf/nan
  if (absx >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: overflow to inf
  if (absx < 0x38800000u) {                       // result is subnormal or zero: scale and round in float arithmetic
    float a;
    std::memcpy(&a, &absx, 4);
    return sign | uint16_t(std::nearbyint(a * 16777216.0f));  // 2^24 = 1 / smallest subnormal
  }
  uint32_t mant_odd = (absx >> 13) & 1;
  absx += 0xfff + mant_odd;  // round to nearest even
  return sign | uint16_t(((absx >> 13) - ((127 - 15) << 10)) & 0x7fff);
}

uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

}  // namespace cb
