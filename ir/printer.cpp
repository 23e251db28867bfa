// Prints a Graph in the text form described in ir/printer.h. The printer is
// the single authority on the format's spelling; ir/parser.cpp mirrors it.
#include "ir/printer.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

namespace cb {

namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == '/' || c == '-';
}

// Dim symbols and attribute names: identifiers that cannot be read as numbers.
bool is_identifier(const std::string& s) {
  if (s.empty()) return false;
  char c0 = s[0];
  if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '_')) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
      return false;
  return true;
}

std::string print_ident(const std::string& s) { return is_identifier(s) ? s : quote_string(s); }

uint64_t fnv1a(const void* data, size_t n) {
  uint64_t h = 1469598103934665603ull;
  auto p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

// Shortest decimal that reads back (as a float, then rounded) to the same
// 16-bit pattern: "0.1" for bf16 0.10009765625 rather than "0.10009766".
std::string format_16bit(uint16_t bits, bool is_half) {
  float f = is_half ? half_to_float(bits) : bf16_to_float(bits);
  if (!std::isfinite(f)) return format_float(f, true);
  for (int precision = 1; precision < 9; ++precision) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::general, precision);
    float back = 0;
    std::from_chars(buf, r.ptr, back);  // reads back as the parser does
    if ((is_half ? float_to_half(back) : float_to_bf16(back)) == bits) {
      double shortest = 0;  // respelled like format_float ("1e-05", "0.1")
      std::from_chars(buf, r.ptr, shortest);
      return format_float(shortest, false);
    }
  }
  return format_float(f, true);
}

std::string format_element(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::f32: return format_float(t.data<float>()[i], true);
    case DType::f64: return format_float(t.data<double>()[i], false);
    case DType::f16: return format_16bit(t.data<Half>()[i].bits, true);
    case DType::bf16: return format_16bit(t.data<BFloat16>()[i].bits, false);
    case DType::u64: return std::to_string(t.data<uint64_t>()[i]);
    case DType::boolean: return t.data<bool>()[i] ? "true" : "false";
    default: return std::to_string(t.get_int(i));
  }
}

// "{1, 2, 3}" or "dense<N bytes, fnv1a 0x...>".
std::string tensor_body(const Tensor& t, const PrintOptions& opts) {
  if (opts.elide_large_constants && t.numel() > opts.max_inline_elements) {
    char hash[32];
    std::snprintf(hash, sizeof hash, "0x%016llx", static_cast<unsigned long long>(fnv1a(t.raw(), t.nbytes())));
    return "dense<" + std::to_string(t.nbytes()) + " bytes, fnv1a " + hash + ">";
  }
  std::string s = "{";
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (i) s += ", ";
    s += format_element(t, i);
  }
  return s + "}";
}

std::string value_ref(const Value* v) {
  if (!v) return "_";
  std::string s(1, '%');
  s += print_name(v->name);
  return s;
}

// "%x: f32[2]" or "%x" when nothing is known about its type.
std::string value_decl(const Value* v) {
  if (!v) return "_";
  std::string s = value_ref(v);
  if (v->type.dtype != DType::undefined || v->type.shape.rank_known) s += ": " + print_type(v->type);
  return s;
}

std::string indent_str(int indent) { return std::string(size_t(indent) * 2, ' '); }

void print_graph_into(std::ostringstream& os, const Graph& g, const PrintOptions& opts, int indent);

std::string attr_value(const AttrValue& a, const PrintOptions& opts, int indent) {
  struct Visitor {
    const PrintOptions& opts;
    int indent;
    std::string operator()(int64_t v) const { return std::to_string(v); }
    std::string operator()(float v) const {
      std::string s = format_float(v, true);
      if (s.find_first_of(".en") == std::string::npos) s += ".0";
      return s;
    }
    std::string operator()(const std::string& v) const { return quote_string(v); }
    std::string operator()(const Tensor& t) const { return print_tensor(t, opts); }
    std::string operator()(const std::shared_ptr<Graph>& g) const {
      if (!g) return "graph null() -> () {}";
      std::ostringstream os;
      print_graph_into(os, *g, opts, indent);
      std::string s = os.str();
      s.pop_back();  // the final newline: the node line goes on after the '}'
      return s;
    }
    std::string operator()(const std::vector<int64_t>& v) const {
      if (v.empty()) return "ints[]";
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + (*this)(v[i]);
      return s + "]";
    }
    std::string operator()(const std::vector<float>& v) const {
      if (v.empty()) return "floats[]";
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + (*this)(v[i]);
      return s + "]";
    }
    std::string operator()(const std::vector<std::string>& v) const {
      if (v.empty()) return "strings[]";
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + quote_string(v[i]);
      return s + "]";
    }
  };
  return std::visit(Visitor{opts, indent}, a);
}

std::string node_line(const Node& n, const PrintOptions& opts, int indent) {
  std::string s;
  for (size_t i = 0; i < n.outputs.size(); ++i) s += (i ? ", " : "") + value_decl(n.outputs[i]);
  if (!n.outputs.empty()) s += " = ";
  if (!n.domain.empty()) s += print_ident(n.domain) + ".";
  bool bare_op = is_identifier(n.op_type) && n.op_type.find('.') == std::string::npos;
  s += (bare_op ? n.op_type : quote_string(n.op_type)) + "(";
  for (size_t i = 0; i < n.inputs.size(); ++i) s += (i ? ", " : "") + value_ref(n.inputs[i]);
  s += ")";
  if (!n.attrs.empty()) {
    s += " {";
    bool first = true;
    for (auto& [k, v] : n.attrs) {
      s += (first ? "" : ", ") + print_ident(k) + " = " + attr_value(v, opts, indent);
      first = false;
    }
    s += "}";
  }
  if (opts.node_names && !n.name.empty()) {
    bool plain = n.name.front() != ' ' && n.name.back() != ' ' && n.name.front() != '"';
    for (char c : n.name) plain &= static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
    s += " # " + (plain ? n.name : quote_string(n.name));
  }
  return s;
}

void print_graph_into(std::ostringstream& os, const Graph& g, const PrintOptions& opts, int indent) {
  os << "graph " << print_ident(g.name) << "(";
  std::set<const Value*> inputs(g.inputs.begin(), g.inputs.end());
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const Value* v = g.inputs[i];
    os << (i ? ", " : "") << value_decl(v);
    if (v->constant) os << " = const " << tensor_body(*v->constant, opts);
  }
  os << ") -> (";
  for (size_t i = 0; i < g.outputs.size(); ++i) os << (i ? ", " : "") << value_ref(g.outputs[i]);
  os << ") {\n";
  std::string pad = indent_str(indent + 1);
  for (auto& v : g.values()) {
    if (!v->constant || inputs.count(v.get())) continue;
    const Tensor& t = *v->constant;
    os << pad << value_ref(v.get()) << ": " << dtype_name(t.dtype()) << dims_str(t.dims()) << " = const "
       << tensor_body(t, opts) << "\n";
  }
  for (auto& n : g.nodes()) os << pad << node_line(*n, opts, indent + 1) << "\n";
  os << indent_str(indent) << "}\n";
}

}  // namespace

bool is_bare_name(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_name_char(c)) return false;
  return true;
}

std::string quote_string(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': q += "\\\""; break;
      case '\\': q += "\\\\"; break;
      case '\n': q += "\\n"; break;
      case '\t': q += "\\t"; break;
      case '\r': q += "\\r"; break;
      default:
        if (u < 0x20 || u == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", u);
          q += buf;
        } else {
          q += c;  // UTF-8 passes through unchanged
        }
    }
  }
  return q + "\"";
}

std::string print_name(const std::string& s) { return is_bare_name(s) ? s : quote_string(s); }

std::string format_float(double v, bool is_f32) {
  if (std::isnan(v)) return std::signbit(v) ? "-nan" : "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  char buf[64];
  auto r =
      is_f32 ? std::to_chars(buf, buf + sizeof buf, static_cast<float>(v)) : std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string print_type(const TensorType& t) {
  std::string s = t.dtype == DType::undefined ? "?" : std::string(dtype_name(t.dtype));
  if (!t.shape.rank_known) return s + "[*]";
  s += "[";
  for (size_t i = 0; i < t.shape.rank(); ++i) {
    const Dim& d = t.shape.dims[i];
    s += i ? "," : "";
    s += d.is_static() ? std::to_string(d.value) : d.is_symbolic() ? print_ident(d.symbol) : "?";
  }
  return s + "]";
}

std::string print_tensor(const Tensor& t, const PrintOptions& opts) {
  if (!t.defined()) return "?[*] {}";
  return std::string(dtype_name(t.dtype())) + dims_str(t.dims()) + " " + tensor_body(t, opts);
}

std::string print_node(const Node& n, const PrintOptions& opts) { return node_line(n, opts, 0); }

std::string print_graph(const Graph& g, const PrintOptions& opts) {
  std::ostringstream os;
  print_graph_into(os, g, opts, 0);
  return os.str();
}

}  // namespace cb
