// A minimal JSON value type with a strict reader and a writer, for the JSON we
// read and write ourselves: Hugging Face config.json files, safetensors
// headers, training configs and checkpoint metadata.
//
// The reader accepts exactly RFC 8259 JSON: no comments, trailing commas,
// single quotes, NaN/Infinity, leading zeros or control characters in
// strings; strings must be valid UTF-8 (\u escapes, surrogate pairs included,
// become UTF-8); duplicate object keys and nesting deeper than 512 levels are
// errors. Every error is a cb::Error saying what was being read, the line and
// column, and what is wrong. docs/support.md says why this is not nlohmann/json.
//
// Numbers written as integers (no fraction or exponent) that fit in int64 are
// kept exactly as int64; all others are doubles. Objects keep their keys
// sorted, so written JSON is deterministic.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace cb {

class Json {
 public:
  enum class Type { null, boolean, integer, real, string, array, object };
  using Array = std::vector<Json>;
  using Object = std::map<std::string, Json>;

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : v_(b) {}
  // Any integer type; unsigned values above INT64_MAX throw cb::Error.
  template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Json(T v) : v_(to_int64(v)) {}
  Json(double v) : v_(v) {}
  Json(const char* s) : v_(std::string(s)) {}
  Json(std::string s) : v_(std::move(s)) {}
  Json(Array a) : v_(std::move(a)) {}
  Json(Object o) : v_(std::move(o)) {}

  Type type() const { return Type(v_.index()); }
  bool is_null() const { return type() == Type::null; }
  bool is_bool() const { return type() == Type::boolean; }
  bool is_number() const { return type() == Type::integer || type() == Type::real; }
  bool is_integer() const { return type() == Type::integer; }  // written without fraction/exponent
  bool is_string() const { return type() == Type::string; }
  bool is_array() const { return type() == Type::array; }
  bool is_object() const { return type() == Type::object; }

  // Typed access; each throws cb::Error naming the actual and expected type.
  bool as_bool() const;
  // An integer, or a real with an integral value in int64 range (2.0 -> 2).
  int64_t as_int() const;
  double as_double() const;  // any number
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();

  // Object member or nullptr (also nullptr when this is not an object).
  const Json* find(const std::string& key) const;
  // Object member; throws cb::Error naming the key when missing.
  const Json& at(const std::string& key) const;
  // Array element; throws cb::Error when out of range.
  const Json& at(size_t index) const;
  // Object member, created (as null) if missing; turns a null into an object.
  Json& operator[](const std::string& key);
  size_t size() const;  // elements of an array or members of an object, else 0

  // Structural equality; numbers compare by value (1 == 1.0).
  bool operator==(const Json& o) const;

  // Serialises. indent < 0: one line without spaces; otherwise pretty-printed
  // with that many spaces per level. Reals are written in the shortest form that
  // reads back to the same double, with ".0" added to integral ones so they
  // stay reals. Throws cb::Error for a non-finite real (JSON cannot hold it).
  std::string dump(int indent = -1) const;

  static const char* type_name(Type t);

 private:
  template <typename T>
  static int64_t to_int64(T v) {
    if constexpr (std::is_unsigned_v<T>)
      if (uint64_t(v) > uint64_t(INT64_MAX)) integer_out_of_range(uint64_t(v));
    return int64_t(v);
  }
  [[noreturn]] static void integer_out_of_range(uint64_t v);

  std::variant<std::nullptr_t, bool, int64_t, double, std::string, Array, Object> v_;
};

// Parses one JSON value (surrounded by optional whitespace). `what` names the
// source in error messages ("config.json", "safetensors header of X").
Json json_parse(std::string_view text, const std::string& what = "JSON");
// Reads and parses a file; errors name the path.
Json json_read_file(const std::string& path);
// Whether `path` is a readable JSON file whose top-level "format" is `format`
// (the marker files that say a folder is ours: run.json, cache.json). Never throws.
bool json_file_has_format(const std::string& path, const std::string& format);
// Writes dump(indent) plus a newline atomically (temporary file + rename).
void json_write_file(const std::string& path, const Json& value, int indent = 2);

}  // namespace cb
