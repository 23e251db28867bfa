// Recursive-descent parser for the IR's text form (grammar in ir/printer.h).
// A small lexer turns the text into tokens that remember their line:column;
// the parser builds the Graph directly. Value references are collected while
// parsing and resolved at the end, so a use may precede its definition (graph
// outputs are named in the header before the body defines them) and nested
// graphs can refer to values of the graphs around them.
#include "ir/parser.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <deque>
#include <limits>
#include <optional>

#include "ir/printer.h"
#include "support/error.h"

namespace cb {

namespace {

enum class Tok { End, ValueName, Ident, Number, String, Punct, NodeName };

struct Token {
  Tok kind = Tok::End;
  std::string text;  // unquoted for strings and value names; "->" for the arrow
  int line = 1, col = 1;
};

std::string describe_token(const Token& t) {
  switch (t.kind) {
    case Tok::End: return "end of input";
    case Tok::ValueName: return "%" + print_name(t.text);
    case Tok::String: return "string " + quote_string(t.text);
    case Tok::NodeName: return "'#'";
    default: return "'" + t.text + "'";
  }
}

[[noreturn]] void fail_at(int line, int col, const std::string& msg) {
  throw Error("parse error at " + std::to_string(line) + ":" + std::to_string(col) + ": " + msg);
}

class Lexer {
 public:
  explicit Lexer(const std::string& text) : s_(text) {}

  std::vector<Token> tokenize() {
    std::vector<Token> out;
    for (;;) {
      skip_space_and_comments();
      Token t;
      t.line = line_;
      t.col = col_;
      if (pos_ >= s_.size()) {
        out.push_back(t);
        return out;
      }
      char c = s_[pos_];
      if (c == '%') {
        advance();
        t.kind = Tok::ValueName;
        if (peek() == '"') {
          t.text = read_string();
        } else {
          while (pos_ < s_.size() && is_bare_name(std::string(1, s_[pos_]))) t.text += advance();
          if (t.text.empty()) fail_at(t.line, t.col, "expected a value name after '%'");
        }
      } else if (c == '"') {
        t.kind = Tok::String;
        t.text = read_string();
      } else if (c == '#') {
        advance();
        t.kind = Tok::NodeName;
        while (peek() == ' ' || peek() == '\t') advance();
        if (peek() == '"') {
          t.text = read_string();
        } else {
          while (pos_ < s_.size() && s_[pos_] != '\n') t.text += advance();
          while (!t.text.empty() && (t.text.back() == ' ' || t.text.back() == '\t' || t.text.back() == '\r'))
            t.text.pop_back();
        }
      } else if (is_digit(c) || ((c == '-' || c == '+') && (is_digit(peek(1)) || peek(1) == '.'))) {
        t.kind = Tok::Number;
        t.text = read_number();
      } else if (c == '-' && (s_.compare(pos_, 4, "-inf") == 0 || s_.compare(pos_, 4, "-nan") == 0) &&
                 !is_ident_char(peek(4))) {
        t.kind = Tok::Number;
        for (int i = 0; i < 4; ++i) t.text += advance();
      } else if (is_ident_start(c)) {
        t.kind = Tok::Ident;
        while (pos_ < s_.size() && is_ident_char(s_[pos_])) t.text += advance();
      } else if (c == '-' && peek(1) == '>') {
        t.kind = Tok::Punct;
        t.text = "->";
        advance();
        advance();
      } else if (std::string("(){}[]<>,=:*?.").find(c) != std::string::npos) {
        t.kind = Tok::Punct;
        t.text = std::string(1, advance());
      } else {
        fail_at(t.line, t.col, std::string("unexpected character '") + c + "'");
      }
      out.push_back(std::move(t));
    }
  }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
  static bool is_ident_char(char c) { return is_ident_start(c) || is_digit(c) || c == '.'; }

  char peek(size_t ahead = 0) const { return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0'; }
  char advance() {
    char c = s_[pos_++];
    if (c == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    return c;
  }

  void skip_space_and_comments() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        advance();
      } else if (c == '/' && peek(1) == '/') {
        while (pos_ < s_.size() && s_[pos_] != '\n') advance();
      } else {
        return;
      }
    }
  }

  std::string read_number() {
    std::string t;
    if (peek() == '-' || peek() == '+') t += advance();
    while (is_digit(peek()) || peek() == '.') t += advance();
    if (peek() == 'e' || peek() == 'E') {
      t += advance();
      if (peek() == '-' || peek() == '+') t += advance();
      while (is_digit(peek())) t += advance();
    }
    return t;
  }

  std::string read_string() {
    int line = line_, col = col_;
    advance();  // opening quote
    std::string v;
    for (;;) {
      if (pos_ >= s_.size() || s_[pos_] == '\n') fail_at(line, col, "unterminated string");
      char c = advance();
      if (c == '"') return v;
      if (c != '\\') {
        v += c;
        continue;
      }
      if (pos_ >= s_.size()) fail_at(line, col, "unterminated string");
      char e = advance();
      switch (e) {
        case 'n': v += '\n'; break;
        case 't': v += '\t'; break;
        case 'r': v += '\r'; break;
        case '"': v += '"'; break;
        case '\\': v += '\\'; break;
        case 'x': {
          std::string hex;
          for (int i = 0; i < 2 && std::isxdigit(static_cast<unsigned char>(peek())); ++i) hex += advance();
          if (hex.size() != 2) fail_at(line_, col_, "expected two hex digits after \\x");
          v += static_cast<char>(std::stoi(hex, nullptr, 16));
          break;
        }
        default: fail_at(line_, col_ - 1, std::string("unknown escape '\\") + e + "' in string");
      }
    }
  }

  const std::string& s_;
  size_t pos_ = 0;
  int line_ = 1, col_ = 1;
};

bool looks_float(const std::string& t) {
  return t.find_first_of(".eE") != std::string::npos || t == "nan" || t == "-nan" || t == "inf" || t == "-inf";
}

// Name scopes: one per graph; nested graphs see the values of their parents.
struct Scope {
  Graph* graph;
  Scope* parent;
  std::map<std::string, std::pair<Value*, Token>> defs;
};

struct PendingRef {
  Scope* scope;
  Node* node;  // null: graph output `index` of scope->graph
  size_t index;
  Token token;
};

class Parser {
 public:
  explicit Parser(const std::string& text) : toks_(Lexer(text).tokenize()) {}

  std::unique_ptr<Graph> parse_top() {
    auto g = std::make_unique<Graph>();
    parse_graph_into(*g, nullptr);
    if (cur().kind != Tok::End) error("expected end of input after the graph");
    resolve();
    return g;
  }

  TensorType parse_type_only() {
    TensorType t = parse_type();
    if (cur().kind != Tok::End) error("expected end of input after the type");
    return t;
  }

 private:
  const Token& cur() const { return toks_[pos_]; }
  const Token& next() const { return toks_[std::min(pos_ + 1, toks_.size() - 1)]; }
  Token take() {
    Token t = toks_[pos_];
    if (pos_ + 1 < toks_.size()) ++pos_;
    return t;
  }
  bool is_punct(const char* p) const { return cur().kind == Tok::Punct && cur().text == p; }
  bool is_ident(const char* p) const { return cur().kind == Tok::Ident && cur().text == p; }
  [[noreturn]] void error(const std::string& what) const {
    fail_at(cur().line, cur().col, what + ", found " + describe_token(cur()));
  }
  void expect(const char* p, const std::string& context) {
    if (!is_punct(p)) error(std::string("expected '") + p + "' " + context);
    take();
  }
  bool accept(const char* p) {
    if (!is_punct(p)) return false;
    take();
    return true;
  }
  // An identifier or a quoted string (names that need quotes).
  std::string take_name(const std::string& what) {
    if (cur().kind != Tok::Ident && cur().kind != Tok::String) error("expected " + what);
    return take().text;
  }

  void parse_graph_into(Graph& g, Scope* parent) {
    if (!is_ident("graph")) error("expected 'graph'");
    take();
    g.name = take_name("the graph's name");
    scopes_.push_back(Scope{&g, parent, {}});
    Scope* scope = &scopes_.back();
    expect("(", "to open the graph's inputs");
    if (!is_punct(")")) {
      do {
        if (cur().kind != Tok::ValueName) error("expected a graph input such as %x: f32[2]");
        Token name = take();
        TensorType type;
        if (accept(":")) type = parse_type();
        Value* v = define(*scope, name, type);
        g.inputs.push_back(v);
        if (accept("=")) {
          if (!is_ident("const")) error("expected 'const' after '=' in a graph input");
          take();
          v->constant = parse_tensor_body(type, name);
        }
      } while (accept(","));
    }
    expect(")", "to close the graph's inputs");
    expect("->", "after the graph's inputs");
    expect("(", "to open the graph's outputs");
    if (!is_punct(")")) {
      do {
        if (cur().kind != Tok::ValueName) error("expected a graph output such as %y");
        pending_.push_back({scope, nullptr, g.outputs.size(), take()});
        g.outputs.push_back(nullptr);
      } while (accept(","));
    }
    expect(")", "to close the graph's outputs");
    expect("{", "to open the graph's body");
    while (!is_punct("}")) {
      if (cur().kind == Tok::End) error("expected '}' to close graph '" + g.name + "'");
      parse_statement(*scope);
    }
    take();
  }

  void parse_statement(Scope& scope) {
    Graph& g = *scope.graph;
    // Outputs: %v[: type] or _, separated by commas, then '='.
    std::vector<std::pair<Token, std::optional<TensorType>>> outs;  // text "" = omitted
    bool has_outputs = cur().kind == Tok::ValueName || (is_ident("_") && !is_punct_at(next(), "("));
    if (has_outputs) {
      do {
        if (is_ident("_")) {
          Token t = take();
          t.text.clear();
          outs.push_back({t, std::nullopt});
        } else if (cur().kind == Tok::ValueName) {
          Token t = take();
          std::optional<TensorType> type;
          if (accept(":")) type = parse_type();
          outs.push_back({t, type});
        } else {
          error("expected an output value such as %y or '_'");
        }
      } while (accept(","));
      expect("=", "after the outputs of a statement");
    }
    if (is_ident("const") && !is_punct_at(next(), "(")) {
      Token kw = take();
      if (outs.size() != 1 || outs[0].first.text.empty() || !outs[0].second)
        fail_at(kw.line, kw.col, "a constant needs exactly one value with its type: %c: f32[2] = const {...}");
      Value* v = define(scope, outs[0].first, *outs[0].second);
      v->constant = parse_tensor_body(*outs[0].second, outs[0].first);
      return;
    }
    // The op: [domain.]Op, either part quoted when it needs it.
    std::string domain, op;
    if (cur().kind == Tok::String) {
      std::string first = take().text;
      if (accept(".")) {
        domain = first;
        op = take_name("an op name after '" + domain + ".'");
      } else {
        op = first;
      }
    } else if (cur().kind == Tok::Ident) {
      std::string q = take().text;
      if (q.back() == '.') {  // domain."Op"
        domain = q.substr(0, q.size() - 1);
        if (cur().kind != Tok::String) error("expected an op name after '" + q + "'");
        op = take().text;
      } else {
        size_t dot = q.rfind('.');
        if (dot != std::string::npos) {
          domain = q.substr(0, dot);
          op = q.substr(dot + 1);
        } else {
          op = q;
        }
      }
    } else {
      error(has_outputs ? "expected an op name or 'const' after '='" : "expected a statement");
    }
    std::string what = "of " + (domain.empty() ? op : domain + "." + op);
    expect("(", "to open the inputs " + what);
    std::vector<Token> args;  // text "" = omitted
    if (!is_punct(")")) {
      do {
        if (is_ident("_")) {
          Token t = take();
          t.text.clear();
          args.push_back(t);
        } else if (cur().kind == Tok::ValueName) {
          args.push_back(take());
        } else {
          error("expected an input value such as %x or '_' " + what);
        }
      } while (accept(","));
    }
    expect(")", "to close the inputs " + what);
    std::map<std::string, AttrValue> attrs;
    if (accept("{")) {
      if (!is_punct("}")) {
        do {
          Token key = cur();
          std::string k = take_name("an attribute name " + what);
          if (attrs.count(k)) fail_at(key.line, key.col, "attribute '" + k + "' is given twice");
          expect("=", "after attribute '" + k + "'");
          attrs[k] = parse_attr_value(scope);
        } while (accept(","));
      }
      expect("}", "to close the attributes " + what);
    }
    std::string node_name;
    if (cur().kind == Tok::NodeName) node_name = take().text;

    std::vector<Value*> out_values;
    for (auto& [tok, type] : outs)
      out_values.push_back(tok.text.empty() ? nullptr : define(scope, tok, type.value_or(TensorType{})));
    Node* n = g.add_node(op, std::vector<Value*>(args.size(), nullptr), out_values, std::move(attrs), "", domain);
    n->name = node_name;
    for (size_t i = 0; i < args.size(); ++i)
      if (!args[i].text.empty()) pending_.push_back({&scope, n, i, args[i]});
  }

  static bool is_punct_at(const Token& t, const char* p) { return t.kind == Tok::Punct && t.text == p; }

  TensorType parse_type() {
    TensorType t;
    if (accept("?")) {
      t.dtype = DType::undefined;
    } else if (cur().kind == Tok::Ident) {
      auto d = dtype_from_name(cur().text);
      if (!d)
        error(
            "expected a dtype (f32, f16, bf16, f64, i64, i32, i16, i8, u64, u32, u16, u8, bool or "
            "?)");
      t.dtype = *d;
      take();
    } else {
      error("expected a type such as f32[batch,768]");
    }
    expect("[", "after the dtype");
    if (accept("*")) {
      t.shape = Shape::unknown_rank();
      expect("]", "after '[*'");
      return t;
    }
    t.shape = Shape();
    if (!is_punct("]")) {
      do {
        if (cur().kind == Tok::Number) {
          Token n = take();
          int64_t v = 0;
          auto r = std::from_chars(n.text.data(), n.text.data() + n.text.size(), v);
          if (r.ec != std::errc() || r.ptr != n.text.data() + n.text.size() || v < 0)
            fail_at(n.line, n.col, "expected a dimension (a size >= 0, a name or ?), found '" + n.text + "'");
          t.shape.dims.push_back(Dim::fixed(v));
        } else if (accept("?")) {
          t.shape.dims.push_back(Dim::unknown());
        } else if (cur().kind == Tok::Ident || cur().kind == Tok::String) {
          t.shape.dims.push_back(Dim::sym(take().text));
        } else {
          error("expected a dimension (a size, a name or ?)");
        }
      } while (accept(","));
    }
    expect("]", "to close the dimensions");
    return t;
  }

  // "{e0, e1, ...}" for a tensor of the given (static) type.
  Tensor parse_tensor_body(const TensorType& type, const Token& where) {
    if (is_ident("dense"))
      error(
          "elided constants (dense<...>) cannot be read back; print with elide_large_constants = "
          "false");
    if (type.dtype == DType::undefined || !type.shape.is_static())
      fail_at(where.line, where.col, "a constant needs a dtype and static dimensions, got " + print_type(type));
    // Every element is written out, so a count beyond the tokens left is an
    // error (checked before allocating: the dims may be absurd).
    int64_t numel = 1;
    for (int64_t d : type.shape.sizes())
      if (__builtin_mul_overflow(numel, d, &numel) || numel > int64_t(toks_.size() - pos_))
        error("the text has fewer elements than " + print_type(type) + " needs");
    Tensor t = Tensor::empty(type.dtype, type.shape.sizes());
    expect("{", "to open the tensor's elements");
    int64_t count = 0;
    if (!is_punct("}")) {
      do {
        if (count >= t.numel())
          error("too many elements for " + print_type(type) + " (" + std::to_string(t.numel()) + ")");
        store_element(t, count++);
      } while (accept(","));
    }
    if (count != t.numel())
      error("expected " + std::to_string(t.numel()) + " elements for " + print_type(type) + ", got " +
            std::to_string(count));
    expect("}", "to close the tensor's elements");
    return t;
  }

  void store_element(Tensor& t, int64_t i) {
    const Token& tok = cur();
    DType dt = t.dtype();
    if (dt == DType::boolean) {
      if (is_ident("true") || (tok.kind == Tok::Number && tok.text == "1"))
        t.data<bool>()[i] = true;
      else if (is_ident("false") || (tok.kind == Tok::Number && tok.text == "0"))
        t.data<bool>()[i] = false;
      else
        error("expected true or false");
      take();
      return;
    }
    if (dtype_is_float(dt)) {
      if (dt == DType::f64) {
        t.data<double>()[i] = parse_float<double>();
      } else {
        float f = parse_float<float>();
        if (dt == DType::f32)
          t.data<float>()[i] = f;
        else if (dt == DType::f16)
          t.data<Half>()[i].bits = float_to_half(f);
        else
          t.data<BFloat16>()[i].bits = float_to_bf16(f);
      }
      return;
    }
    if (tok.kind != Tok::Number || looks_float(tok.text)) error("expected an integer");
    const char* b = tok.text.data();
    const char* e = b + tok.text.size();
    if (*b == '+') ++b;
    if (dt == DType::u64) {
      uint64_t v = 0;
      auto r = std::from_chars(b, e, v);
      if (r.ec != std::errc() || r.ptr != e) error("expected an integer in range of u64");
      t.data<uint64_t>()[i] = v;
      take();
      return;
    }
    int64_t v = 0;
    auto r = std::from_chars(b, e, v);
    bool ok = r.ec == std::errc() && r.ptr == e;
    dtype_dispatch(dt, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, uint64_t>) {
        ok = ok && v >= int64_t(std::numeric_limits<T>::min()) && v <= int64_t(std::numeric_limits<T>::max());
        if (ok) t.data<T>()[i] = static_cast<T>(v);
      }
    });
    if (!ok) error(std::string("expected an integer in range of ") + std::string(dtype_name(dt)));
    take();
  }

  // A float from a number token (or nan/inf), rounded once to F.
  template <typename F>
  static F float_from(const Token& tok) {
    auto bad = [&](const std::string& what) { fail_at(tok.line, tok.col, what + ", found " + describe_token(tok)); };
    const std::string& s = tok.text;
    if (tok.kind != Tok::Number && !(tok.kind == Tok::Ident && (s == "nan" || s == "inf"))) bad("expected a number");
    bool neg = !s.empty() && s[0] == '-';
    std::string body = (neg || (!s.empty() && s[0] == '+')) ? s.substr(1) : s;
    F v{};
    if (body == "nan") {
      v = std::numeric_limits<F>::quiet_NaN();
    } else if (body == "inf") {
      v = std::numeric_limits<F>::infinity();
    } else {
      auto r = std::from_chars(body.data(), body.data() + body.size(), v);
      if (r.ptr != body.data() + body.size() || (r.ec != std::errc() && r.ec != std::errc::result_out_of_range))
        bad("expected a number");
      if (r.ec == std::errc::result_out_of_range) bad("number out of range");
    }
    return neg ? std::copysign(v, F(-1)) : v;
  }

  template <typename F>
  F parse_float() {
    F v = float_from<F>(cur());
    take();
    return v;
  }

  AttrValue parse_attr_value(Scope& scope) {
    const Token& t = cur();
    if (t.kind == Tok::String) return take().text;
    if (t.kind == Tok::Number || (t.kind == Tok::Ident && (t.text == "nan" || t.text == "inf"))) {
      if (looks_float(t.text)) return parse_float<float>();
      int64_t v = 0;
      const char* b = t.text.data() + (t.text[0] == '+');
      auto r = std::from_chars(b, t.text.data() + t.text.size(), v);
      if (r.ec != std::errc() || r.ptr != t.text.data() + t.text.size()) error("expected an integer");
      take();
      return v;
    }
    if (t.kind == Tok::Ident) {
      if (t.text == "graph") {
        auto sub = std::make_shared<Graph>();
        parse_graph_into(*sub, &scope);
        return sub;
      }
      if ((t.text == "ints" || t.text == "floats" || t.text == "strings") && is_punct_at(next(), "[")) {
        std::string kind = take().text;
        take();
        expect("]", "after '" + kind + "[' (only empty lists are written this way)");
        if (kind == "ints") return std::vector<int64_t>{};
        if (kind == "floats") return std::vector<float>{};
        return std::vector<std::string>{};
      }
      if (dtype_from_name(t.text) && is_punct_at(next(), "[")) {
        Token where = cur();
        TensorType type = parse_type();
        return parse_tensor_body(type, where);
      }
      error("expected an attribute value (number, string, list, tensor or graph)");
    }
    if (accept("[")) {
      std::vector<Token> items;
      if (!is_punct("]")) {
        do {
          if (cur().kind != Tok::Number && cur().kind != Tok::String &&
              !(cur().kind == Tok::Ident && (cur().text == "nan" || cur().text == "inf")))
            error("expected a number or a string in the list");
          items.push_back(cur());
          take();
        } while (accept(","));
      }
      expect("]", "to close the list");
      if (items.empty()) fail_at(t.line, t.col, "write an empty list as ints[], floats[] or strings[]");
      bool strings = items[0].kind == Tok::String;
      bool floats = false;
      for (auto& it : items) {
        if ((it.kind == Tok::String) != strings) fail_at(it.line, it.col, "a list mixes strings and numbers");
        floats |= !strings && looks_float(it.text);
      }
      if (strings) {
        std::vector<std::string> v;
        for (auto& it : items) v.push_back(it.text);
        return v;
      }
      if (floats) {
        std::vector<float> v;
        for (auto& it : items) v.push_back(float_from<float>(it));
        return v;
      }
      std::vector<int64_t> v;
      for (auto& it : items) {
        int64_t x = 0;
        const char* b = it.text.data() + (it.text[0] == '+');
        auto r = std::from_chars(b, it.text.data() + it.text.size(), x);
        if (r.ec != std::errc() || r.ptr != it.text.data() + it.text.size())
          fail_at(it.line, it.col, "expected an integer");
        v.push_back(x);
      }
      return v;
    }
    error("expected an attribute value (number, string, list, tensor or graph)");
  }

  Value* define(Scope& scope, const Token& name, const TensorType& type) {
    auto it = scope.defs.find(name.text);
    if (it != scope.defs.end())
      fail_at(name.line, name.col,
              "value %" + print_name(name.text) + " is defined twice (first at " +
                  std::to_string(it->second.second.line) + ":" + std::to_string(it->second.second.col) + ")");
    Value* v = scope.graph->add_value(name.text, type);
    scope.defs.emplace(name.text, std::make_pair(v, name));
    return v;
  }

  void resolve() {
    for (auto& p : pending_) {
      Value* v = nullptr;
      for (Scope* s = p.scope; s && !v; s = s->parent) {
        auto it = s->defs.find(p.token.text);
        if (it != s->defs.end()) v = it->second.first;
      }
      if (!v) fail_at(p.token.line, p.token.col, "undefined value %" + print_name(p.token.text));
      if (p.node)
        p.node->inputs[p.index] = v;
      else
        p.scope->graph->outputs[p.index] = v;
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  std::deque<Scope> scopes_;
  std::vector<PendingRef> pending_;
};

}  // namespace

std::unique_ptr<Graph> parse_graph(const std::string& text) { return Parser(text).parse_top(); }

TensorType parse_type(const std::string& text) { return Parser(text).parse_type_only(); }

}  // namespace cb
