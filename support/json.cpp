// The strict JSON reader and the writer of support/json.h.
#include "support/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "support/error.h"
#include "support/file_io.h"
#include "support/input_file.h"
#include "support/utf8.h"

namespace cb {

const char* Json::type_name(Type t) {
  switch (t) {
    case Type::null: return "null";
    case Type::boolean: return "a boolean";
    case Type::integer: return "an integer";
    case Type::real: return "a real number";
    case Type::string: return "a string";
    case Type::array: return "an array";
    case Type::object: return "an object";
  }
  return "?";
}

void Json::integer_out_of_range(uint64_t v) { CB_FAIL("integer " << v << " does not fit a JSON integer (int64)"); }

#define CB_JSON_EXPECT(cond, expected) \
  CB_CHECK(cond, "JSON value is " << type_name(type()) << ", expected " << expected)

bool Json::as_bool() const {
  CB_JSON_EXPECT(is_bool(), "a boolean");
  return std::get<bool>(v_);
}

int64_t Json::as_int() const {
  if (is_integer()) return std::get<int64_t>(v_);
  CB_JSON_EXPECT(type() == Type::real, "an integer");
  const double d = std::get<double>(v_);
  // 2^63 is exactly representable; the valid range is [-2^63, 2^63).
  CB_CHECK(d == std::floor(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0,
           "JSON number " << d << " is not an integer");
  return int64_t(d);
}

double Json::as_double() const {
  if (is_integer()) return double(std::get<int64_t>(v_));
  CB_JSON_EXPECT(type() == Type::real, "a number");
  return std::get<double>(v_);
}

const std::string& Json::as_string() const {
  CB_JSON_EXPECT(is_string(), "a string");
  return std::get<std::string>(v_);
}

const Json::Array& Json::as_array() const {
  CB_JSON_EXPECT(is_array(), "an array");
  return std::get<Array>(v_);
}

Json::Array& Json::as_array() {
  CB_JSON_EXPECT(is_array(), "an array");
  return std::get<Array>(v_);
}

const Json::Object& Json::as_object() const {
  CB_JSON_EXPECT(is_object(), "an object");
  return std::get<Object>(v_);
}

Json::Object& Json::as_object() {
  CB_JSON_EXPECT(is_object(), "an object");
  return std::get<Object>(v_);
}

const Json* Json::find(const std::string& key) const {
  if (!is_object()) return nullptr;
  const Object& o = std::get<Object>(v_);
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->second;
}

const Json& Json::at(const std::string& key) const {
  const Json* v = find(key);
  CB_CHECK(
      v, (is_object() ? "JSON object has no member '" + key + "'"
                      : "JSON value is " + std::string(type_name(type())) + ", expected an object with '" + key + "'"));
  return *v;
}

const Json& Json::at(size_t index) const {
  const Array& a = as_array();
  CB_CHECK(index < a.size(), "JSON array index " << index << " out of range (size " << a.size() << ")");
  return a[index];
}

Json& Json::operator[](const std::string& key) {
  if (is_null()) v_ = Object{};
  return as_object()[key];
}

size_t Json::size() const {
  if (is_array()) return std::get<Array>(v_).size();
  if (is_object()) return std::get<Object>(v_).size();
  return 0;
}

bool Json::operator==(const Json& o) const {
  if (is_number() && o.is_number()) {
    if (is_integer() && o.is_integer()) return std::get<int64_t>(v_) == std::get<int64_t>(o.v_);
    return as_double() == o.as_double();
  }
  return v_ == o.v_;
}

// ---------------------------------------------------------------------------
// Writer

namespace {

void write_string(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

void write_real(std::string& out, double d) {
  CB_CHECK(std::isfinite(d), "cannot write " << d << " as JSON (JSON has no NaN or infinity)");
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  CB_CHECK(ec == std::errc(), "JSON: cannot format " << d);
  std::string s(buf, end);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";  // stays a real when read back
  out += s;
}

void write_value(std::string& out, const Json& v, int indent, int depth) {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent) * size_t(d), ' ');
  };
  switch (v.type()) {
    case Json::Type::null: out += "null"; break;
    case Json::Type::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Json::Type::integer: out += std::to_string(v.as_int()); break;
    case Json::Type::real: write_real(out, v.as_double()); break;
    case Json::Type::string: write_string(out, v.as_string()); break;
    case Json::Type::array: {
      const Json::Array& a = v.as_array();
      out += '[';
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        newline(depth + 1);
        write_value(out, a[i], indent, depth + 1);
      }
      if (!a.empty()) newline(depth);
      out += ']';
      break;
    }
    case Json::Type::object: {
      const Json::Object& o = v.as_object();
      out += '{';
      bool first = true;
      for (const auto& [key, member] : o) {
        if (!first) out += ',';
        first = false;
        newline(depth + 1);
        write_string(out, key);
        out += indent < 0 ? ":" : ": ";
        write_value(out, member, indent, depth + 1);
      }
      if (!o.empty()) newline(depth);
      out += '}';
      break;
    }
  }
}

// ---------------------------------------------------------------------------
// Reader

constexpr int kMaxDepth = 512;

class Parser {
 public:
  Parser(std::string_view text, const std::string& what) : s_(text), what_(what) {}

  Json parse_document() {
    skip_whitespace();
    Json v = parse_value(0);
    skip_whitespace();
    if (pos_ != s_.size()) fail("unexpected " + describe_here() + " after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const { fail_at(pos_, msg); }
  [[noreturn]] void fail_at(size_t pos, const std::string& msg) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    CB_FAIL(what_ << ":" << line << ":" << col << ": " << msg);
  }
  std::string describe_here() const {
    if (pos_ >= s_.size()) return "end of input";
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x20 && c < 0x7f) return std::string("'") + char(c) + "'";
    std::ostringstream os;
    os << "byte 0x" << std::hex << int(c);
    return os.str();
  }

  void skip_whitespace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) ++pos_;
  }

  void expect_literal(const char* lit) {
    const size_t start = pos_;
    for (const char* p = lit; *p; ++p, ++pos_)
      if (pos_ >= s_.size() || s_[pos_] != *p) fail_at(start, std::string("invalid literal (expected '") + lit + "')");
  }

  Json parse_value(int depth) {
    if (depth >= kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    if (pos_ >= s_.size()) fail("unexpected end of input, expected a value");
    const char c = s_[pos_];
    switch (c) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': return Json(parse_string());
      case 't': expect_literal("true"); return Json(true);
      case 'f': expect_literal("false"); return Json(false);
      case 'n': expect_literal("null"); return Json(nullptr);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        fail("unexpected " + describe_here() + ", expected a value");
    }
  }

  Json parse_object(int depth) {
    ++pos_;  // '{'
    Json::Object o;
    skip_whitespace();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return Json(std::move(o));
    }
    while (true) {
      skip_whitespace();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("unexpected " + describe_here() + ", expected a string key");
      const size_t key_pos = pos_;
      std::string key = parse_string();
      skip_whitespace();
      if (pos_ >= s_.size() || s_[pos_] != ':') fail("unexpected " + describe_here() + ", expected ':'");
      ++pos_;
      skip_whitespace();
      Json value = parse_value(depth + 1);
      if (!o.emplace(key, std::move(value)).second) fail_at(key_pos, "duplicate key \"" + key + "\"");
      skip_whitespace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return Json(std::move(o));
      }
      fail("unexpected " + describe_here() + ", expected ',' or '}'");
    }
  }

  Json parse_array(int depth) {
    ++pos_;  // '['
    Json::Array a;
    skip_whitespace();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return Json(std::move(a));
    }
    while (true) {
      skip_whitespace();
      a.push_back(parse_value(depth + 1));
      skip_whitespace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return Json(std::move(a));
      }
      fail("unexpected " + describe_here() + ", expected ',' or ']'");
    }
  }

  Json parse_number() {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') fail_at(start, "number with a leading zero");
    } else if (digits() == 0) {
      fail_at(start, "invalid number");
    }
    bool integral = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      integral = false;
      if (digits() == 0) fail_at(start, "invalid number (no digits after '.')");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      integral = false;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) fail_at(start, "invalid number (no digits in the exponent)");
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + pos_;
    if (integral) {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(first, last, v);
      if (ec == std::errc() && end == last) return Json(v);
      // Out of int64 range: keep it as a real.
    }
    double d = 0;
    auto [end, ec] = std::from_chars(first, last, d);
    if (ec == std::errc::result_out_of_range) {
      // Underflow reads as zero (as in other JSON readers); overflow is an error.
      if (decimal_exponent(std::string_view(first, size_t(last - first))) < 0) return Json(*first == '-' ? -0.0 : 0.0);
      fail_at(start, "number " + std::string(first, last) + " is out of range");
    }
    if (ec != std::errc() || end != last || !std::isfinite(d)) fail_at(start, "invalid number");
    return Json(d);
  }

  // The power of ten of a valid number literal's leading digit (1.5e3 -> 3,
  // 0.01 -> -2); only its sign matters, to tell underflow from overflow.
  static int64_t decimal_exponent(std::string_view s) {
    size_t i = s[0] == '-' ? 1 : 0;
    int64_t lead = 0;  // position of the first non-zero digit relative to the point
    bool seen_nonzero = false, after_point = false;
    int64_t int_digits = 0, frac_zeros = 0;
    for (; i < s.size() && s[i] != 'e' && s[i] != 'E'; ++i) {
      if (s[i] == '.') {
        after_point = true;
      } else if (!after_point) {
        if (s[i] != '0' || seen_nonzero) ++int_digits, seen_nonzero = true;
      } else if (!seen_nonzero) {
        if (s[i] == '0')
          ++frac_zeros;
        else
          seen_nonzero = true;
      }
    }
    lead = int_digits > 0 ? int_digits - 1 : -(frac_zeros + 1);
    int64_t exponent = 0;
    if (i < s.size()) {
      ++i;
      const bool negative = s[i] == '-';
      if (s[i] == '-' || s[i] == '+') ++i;
      for (; i < s.size(); ++i) exponent = std::min<int64_t>(exponent * 10 + (s[i] - '0'), int64_t(1) << 40);
      if (negative) exponent = -exponent;
    }
    return lead + exponent;
  }

  // Four hex digits of a \u escape.
  uint32_t parse_hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= uint32_t(c - 'A' + 10);
      else
        fail_at(pos_ - 1, "invalid hex digit in \\u escape");
    }
    return v;
  }

  // One UTF-8 encoded character starting at pos_ (first byte >= 0x80),
  // validated (no overlong forms, surrogates or code points past U+10FFFF).
  void copy_utf8_char(std::string& out) {
    const size_t len = utf8_sequence_length(s_, pos_);
    if (len == 0) {
      const size_t announced = utf8_announced_length(static_cast<unsigned char>(s_[pos_]));
      if (announced && pos_ + announced > s_.size()) fail("invalid UTF-8 in string (truncated character)");
      fail("invalid UTF-8 in string");
    }
    out.append(s_.data() + pos_, len);
    pos_ += len;
  }

  std::string parse_string() {
    const size_t start = pos_;
    ++pos_;  // '"'
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail_at(start, "unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character (" + describe_here() + ") in string");
      if (c >= 0x80) {
        copy_utf8_char(out);
        continue;
      }
      if (c != '\\') {
        out += char(c);
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= s_.size()) fail_at(start, "unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const size_t esc = pos_ - 2;
          uint32_t cp = parse_hex4();
          if (cp >= 0xdc00 && cp <= 0xdfff) fail_at(esc, "unpaired low surrogate in \\u escape");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
              fail_at(esc, "unpaired high surrogate in \\u escape");
            pos_ += 2;
            const uint32_t lo = parse_hex4();
            if (lo < 0xdc00 || lo > 0xdfff) fail_at(esc, "unpaired high surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
          }
          utf8_append(out, cp);
          break;
        }
        default: fail_at(pos_ - 2, std::string("invalid escape '\\") + e + "' in string");
      }
    }
  }

  std::string_view s_;
  const std::string& what_;
  size_t pos_ = 0;
};

}  // namespace

std::string Json::dump(int indent) const {
  std::string out;
  write_value(out, *this, indent, 0);
  return out;
}

Json json_parse(std::string_view text, const std::string& what) { return Parser(text, what).parse_document(); }

Json json_read_file(const std::string& path) { return json_parse(read_input_file(path, "JSON file"), path); }

bool json_file_has_format(const std::string& path, const std::string& format) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  try {
    Json j = json_read_file(path);
    const Json* f = j.find("format");
    return f && f->is_string() && f->as_string() == format;
  } catch (const Error&) {
    return false;
  }
}

void json_write_file(const std::string& path, const Json& value, int indent) {
  write_file_atomic(path, value.dump(indent) + "\n");
}

}  // namespace cb
