#include "support/yaml.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "support/error.h"
#include "support/input_file.h"

namespace cb {

namespace {

// Nesting deeper than this (block and flow collections together) is an error:
// the parser recurses once per level, so hostile input must not exhaust the stack.
constexpr int kMaxDepth = 512;

struct Line {
  int indent;
  std::string text;  // without indentation and comment
  int number;        // 1-based
};

class YamlParser {
 public:
  YamlParser(const std::string& text, std::string what) : what_(std::move(what)) { split(text); }

  Json parse() {
    if (lines_.empty()) return Json();
    size_t i = 0;
    Json v = block(i, lines_[0].indent);
    if (i < lines_.size()) fail(lines_[i], "unexpected indentation");
    return v;
  }

  // One scalar or flow collection (also used for overrides); `column` is
  // where `s` starts on its line (0-based), for error messages.
  Json value(const std::string& s, int line, size_t column = 0) {
    size_t pos = 0;
    Json v = flow(s, pos, line, column);
    skip_spaces(s, pos);
    if (pos != s.size()) fail(line, "unexpected '" + s.substr(pos) + "' after a value");
    return v;
  }

 private:
  [[noreturn]] void fail(int line, const std::string& msg) const { CB_FAIL(what_ << ":" << line << ": " << msg); }
  [[noreturn]] void fail(const Line& l, const std::string& msg) const { fail(l.number, msg); }

  // One more level of nesting for the lifetime of the guard; throws at
  // `line`:`column` (1-based) past kMaxDepth.
  class NestingGuard {
   public:
    NestingGuard(YamlParser& p, int line, size_t column) : p_(p) {
      if (++p_.depth_ > kMaxDepth)
        CB_FAIL(p_.what_ << ":" << line << ":" << column << ": nesting deeper than " << kMaxDepth << " levels");
    }
    ~NestingGuard() { --p_.depth_; }
    NestingGuard(const NestingGuard&) = delete;
    NestingGuard& operator=(const NestingGuard&) = delete;

   private:
    YamlParser& p_;
  };

  // The first position i outside quotes (and, with `depth`, outside [..] and
  // {..}) where stop(i) holds; npos if none.
  template <typename Stop>
  static size_t scan(const std::string& s, bool track_depth, Stop stop) {
    char quote = 0;
    int depth = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      char c = s[i];
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (track_depth && (c == '[' || c == '{')) {
        ++depth;
      } else if (track_depth && (c == ']' || c == '}')) {
        --depth;
      } else if (depth == 0 && stop(i)) {
        return i;
      }
    }
    return std::string::npos;
  }

  // Position of a comment '#' (at the start or after a space, outside quotes), or npos.
  static size_t comment_start(const std::string& s) {
    return scan(s, false, [&](size_t i) { return s[i] == '#' && (i == 0 || s[i - 1] == ' '); });
  }

  void split(const std::string& text) {
    std::istringstream in(text);
    std::string raw;
    int number = 0;
    while (std::getline(in, raw)) {
      ++number;
      if (!raw.empty() && raw.back() == '\r') raw.pop_back();
      size_t c = comment_start(raw);
      if (c != std::string::npos) raw.resize(c);
      size_t indent = raw.find_first_not_of(' ');
      if (indent == std::string::npos) continue;  // blank
      if (raw[indent] == '\t') fail(number, "tabs cannot indent YAML");
      std::string body = raw.substr(indent);
      while (!body.empty() && (body.back() == ' ' || body.back() == '\t')) body.pop_back();
      if (body == "---" && lines_.empty()) continue;
      if (body == "---" || body == "...") fail(number, "multiple documents are not supported");
      if (body[0] == '&' || body[0] == '*' || body[0] == '!' || body[0] == '|' || body[0] == '>')
        fail(number, "anchors, tags and block scalars are not supported");
      lines_.push_back({int(indent), body, number});
    }
  }

  static bool is_item(const std::string& s) { return s == "-" || s.rfind("- ", 0) == 0; }

  // The ':' that separates a mapping key (followed by a space or the end),
  // outside quotes and brackets; npos if none.
  static size_t key_colon(const std::string& s) {
    return scan(s, true, [&](size_t i) { return s[i] == ':' && (i + 1 == s.size() || s[i + 1] == ' '); });
  }

  Json block(size_t& i, int indent) { return is_item(lines_[i].text) ? sequence(i, indent) : mapping(i, indent); }

  // The value after "key:" or "-" with nothing on the line: a nested block, or null.
  Json nested(size_t& i, int indent, bool allow_same_indent_sequence) {
    if (i < lines_.size() && lines_[i].indent > indent) return block(i, lines_[i].indent);
    if (allow_same_indent_sequence && i < lines_.size() && lines_[i].indent == indent && is_item(lines_[i].text))
      return sequence(i, indent);
    return Json();
  }

  Json mapping(size_t& i, int indent) {
    NestingGuard guard(*this, lines_[i].number, size_t(indent) + 1);
    Json::Object obj;
    while (i < lines_.size() && lines_[i].indent == indent && !is_item(lines_[i].text)) {
      const Line& l = lines_[i];
      size_t colon = key_colon(l.text);
      if (colon == std::string::npos) fail(l, "expected 'key: value', got '" + l.text + "'");
      std::string key_text = l.text.substr(0, colon);
      while (!key_text.empty() && key_text.back() == ' ') key_text.pop_back();
      Json key = value(key_text, l.number, size_t(l.indent));
      if (!key.is_string() && !key.is_number() && !key.is_bool()) fail(l, "a key must be a scalar");
      std::string k = key.is_string() ? key.as_string() : key.dump();
      if (obj.count(k)) fail(l, "duplicate key '" + k + "'");
      std::string rest = l.text.substr(colon + 1);
      size_t start = rest.find_first_not_of(' ');
      ++i;
      obj[k] = start == std::string::npos ? nested(i, indent, true)
                                          : value(rest.substr(start), l.number, size_t(l.indent) + colon + 1 + start);
    }
    if (i < lines_.size() && lines_[i].indent > indent) fail(lines_[i], "unexpected indentation");
    return Json(std::move(obj));
  }

  Json sequence(size_t& i, int indent) {
    NestingGuard guard(*this, lines_[i].number, size_t(indent) + 1);
    Json::Array arr;
    while (i < lines_.size() && lines_[i].indent == indent && is_item(lines_[i].text)) {
      Line& l = lines_[i];
      std::string rest = l.text.size() > 1 ? l.text.substr(2) : "";
      size_t start = rest.find_first_not_of(' ');
      if (start == std::string::npos) {
        ++i;
        arr.push_back(nested(i, indent, false));
      } else if (key_colon(rest.substr(start)) != std::string::npos || is_item(rest.substr(start))) {
        // "- key: value" starts a mapping (or "- - x" a sequence) whose column is the item's content.
        l.indent = indent + 2 + int(start);
        l.text = rest.substr(start);
        arr.push_back(block(i, l.indent));
      } else {
        ++i;
        arr.push_back(value(rest.substr(start), l.number, size_t(l.indent) + 2 + start));
      }
    }
    return Json(std::move(arr));
  }

  static void skip_spaces(const std::string& s, size_t& pos) {
    while (pos < s.size() && s[pos] == ' ') ++pos;
  }

  // `column`: where `s` starts on its line (0-based).
  Json flow(const std::string& s, size_t& pos, int line, size_t column, bool in_flow = false) {
    skip_spaces(s, pos);
    if (pos < s.size() && s[pos] == '[') {
      NestingGuard guard(*this, line, column + pos + 1);
      Json::Array arr;
      ++pos;
      skip_spaces(s, pos);
      if (pos < s.size() && s[pos] == ']') return ++pos, Json(std::move(arr));
      while (true) {
        arr.push_back(flow(s, pos, line, column, true));
        skip_spaces(s, pos);
        if (pos < s.size() && s[pos] == ',') {
          ++pos;
          continue;
        }
        if (pos < s.size() && s[pos] == ']') {
          ++pos;
          return Json(std::move(arr));
        }
        fail(line, "expected ',' or ']' in '" + s + "'");
      }
    }
    if (pos < s.size() && s[pos] == '{') {
      NestingGuard guard(*this, line, column + pos + 1);
      Json::Object obj;
      ++pos;
      skip_spaces(s, pos);
      if (pos < s.size() && s[pos] == '}') return ++pos, Json(std::move(obj));
      while (true) {
        Json key = flow(s, pos, line, column, true);
        skip_spaces(s, pos);
        if (pos >= s.size() || s[pos] != ':') fail(line, "expected ':' in '" + s + "'");
        ++pos;
        std::string k = key.is_string() ? key.as_string() : key.dump();
        obj[k] = flow(s, pos, line, column, true);
        skip_spaces(s, pos);
        if (pos < s.size() && s[pos] == ',') {
          ++pos;
          continue;
        }
        if (pos < s.size() && s[pos] == '}') {
          ++pos;
          return Json(std::move(obj));
        }
        fail(line, "expected ',' or '}' in '" + s + "'");
      }
    }
    if (pos < s.size() && (s[pos] == '"' || s[pos] == '\'')) return quoted(s, pos, line);
    size_t start = pos;
    while (pos < s.size() && !(in_flow && (s[pos] == ',' || s[pos] == ']' || s[pos] == '}' ||
                                           (s[pos] == ':' && (pos + 1 == s.size() || s[pos + 1] == ' ')))))
      ++pos;
    std::string plain = s.substr(start, pos - start);
    while (!plain.empty() && plain.back() == ' ') plain.pop_back();
    return scalar(plain, line);
  }

  Json quoted(const std::string& s, size_t& pos, int line) {
    char q = s[pos++];
    std::string out;
    while (pos < s.size()) {
      char c = s[pos++];
      if (c == q) {
        if (q == '\'' && pos < s.size() && s[pos] == '\'') {  // '' inside single quotes
          out += '\'';
          ++pos;
          continue;
        }
        return Json(out);
      }
      if (q == '"' && c == '\\' && pos < s.size()) {
        char e = s[pos++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          default: fail(line, std::string("unsupported escape \\") + e);
        }
        continue;
      }
      out += c;
    }
    fail(line, "unterminated string in '" + s + "'");
  }

  // The number of ASCII digits at s[pos...], advancing pos past them.
  static size_t digits(const std::string& s, size_t& pos) {
    size_t from = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    return pos - from;
  }
  // [-+]?[0-9]+  (matched by hand: std::regex recurses once per character,
  // so a long scalar overflowed the stack)
  static bool is_integer_literal(const std::string& s) {
    size_t pos = s[0] == '-' || s[0] == '+';
    return digits(s, pos) > 0 && pos == s.size();
  }
  // [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
  static bool is_real_literal(const std::string& s) {
    size_t pos = s[0] == '-' || s[0] == '+';
    size_t int_digits = digits(s, pos);
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      if (digits(s, pos) == 0 && int_digits == 0) return false;
    } else if (int_digits == 0) {
      return false;
    }
    if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
      ++pos;
      if (pos < s.size() && (s[pos] == '-' || s[pos] == '+')) ++pos;
      if (digits(s, pos) == 0) return false;
    }
    return pos == s.size();
  }

  Json scalar(const std::string& s, int line) {
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return Json();
    if (s == "true" || s == "True" || s == "TRUE") return Json(true);
    if (s == "false" || s == "False" || s == "FALSE") return Json(false);
    if (is_integer_literal(s)) {
      int64_t v = 0;
      const char* first = s.data() + (s[0] == '+');
      auto [end, ec] = std::from_chars(first, s.data() + s.size(), v);
      if (ec != std::errc() || end != s.data() + s.size()) fail(line, "integer out of range: " + s);
      return Json(v);
    }
    if (is_real_literal(s)) {
      // Overflow is an error (it would read as infinity); underflow reads as
      // zero or a subnormal, as in the JSON reader.
      errno = 0;
      double d = std::strtod(s.c_str(), nullptr);
      if (errno == ERANGE && std::isinf(d)) fail(line, "number out of range: " + s);
      return Json(d);
    }
    if (s == ".inf" || s == "-.inf" || s == ".nan") fail(line, "infinite or NaN numbers are not supported");
    if (s[0] == '&' || s[0] == '*' || s[0] == '!') fail(line, "anchors and tags are not supported");
    return Json(s);
  }

  std::string what_;
  std::vector<Line> lines_;
  int depth_ = 0;  // collections open around the one being parsed
};

}  // namespace

Json parse_yaml(const std::string& text, const std::string& what) { return YamlParser(text, what).parse(); }

Json read_yaml_file(const std::string& path) { return parse_yaml(read_input_file(path, "config file"), path); }

void apply_override(Json& config, const std::string& assignment) {
  // Quoted whole in messages unless long (a hostile one may be 100 KB).
  const std::string shown = assignment.size() > 80 ? assignment.substr(0, 80) + "..." : assignment;
  size_t eq = assignment.find('=');
  CB_CHECK(eq != std::string::npos && eq > 0, "override '" << shown << "': expected key=value (e.g. lr=1e-3)");
  std::string path = assignment.substr(0, eq);
  Json v = YamlParser("", "override '" + shown + "'").value(assignment.substr(eq + 1), 1, eq + 1);
  Json* node = &config;
  std::stringstream ss(path);
  std::string key;
  std::vector<std::string> keys;
  while (std::getline(ss, key, '.')) {
    CB_CHECK(!key.empty(), "override '" << shown << "': empty key");
    keys.push_back(key);
    // Each key is one level of nesting, as deep as a collection in a file can go.
    CB_CHECK(keys.size() <= size_t(kMaxDepth),
             "override '" << shown << "': key path deeper than " << kMaxDepth << " levels");
  }
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    Json& next = (*node)[keys[i]];
    CB_CHECK(next.is_null() || next.is_object(), "override '" << shown << "': '" << keys[i] << "' is not a mapping");
    node = &next;
  }
  (*node)[keys.back()] = std::move(v);
}

}  // namespace cb
