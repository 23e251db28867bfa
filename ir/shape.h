// Shapes whose dimensions are static, symbolic (a named dimension such as
// "batch" that is fixed per run) or unknown. Two dims with the same symbol are
// equal in every run.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cb {

struct Dim {
  int64_t value = -1;  // >= 0: static size
  std::string symbol;  // when value < 0: named symbolic dim, or "" for unknown

  static Dim fixed(int64_t v) { return Dim{v, {}}; }
  static Dim sym(std::string s) { return Dim{-1, std::move(s)}; }
  static Dim unknown() { return Dim{}; }
  bool is_static() const { return value >= 0; }
  bool is_symbolic() const { return value < 0 && !symbol.empty(); }
  bool is_unknown() const { return value < 0 && symbol.empty(); }
  // Known to be equal in every run (same static value or same symbol).
  bool same_as(const Dim& o) const {
    return is_static() ? o.is_static() && value == o.value : is_symbolic() && symbol == o.symbol;
  }
  std::string str() const { return is_static() ? std::to_string(value) : is_symbolic() ? symbol : "?"; }
  bool operator==(const Dim& o) const { return value == o.value && symbol == o.symbol; }
};

struct Shape {
  std::vector<Dim> dims;
  bool rank_known = true;

  Shape() = default;
  explicit Shape(std::vector<Dim> d) : dims(std::move(d)) {}
  static Shape of(const std::vector<int64_t>& sizes) {
    Shape s;
    for (auto v : sizes) s.dims.push_back(Dim::fixed(v));
    return s;
  }
  static Shape unknown_rank() {
    Shape s;
    s.rank_known = false;
    return s;
  }

  size_t rank() const { return dims.size(); }
  bool is_static() const {
    if (!rank_known) return false;
    for (auto& d : dims)
      if (!d.is_static()) return false;
    return true;
  }
  // Static sizes; only valid when is_static().
  std::vector<int64_t> sizes() const {
    std::vector<int64_t> v;
    for (auto& d : dims) v.push_back(d.value);
    return v;
  }
  const Dim& operator[](size_t i) const { return dims[i]; }
  Dim& operator[](size_t i) { return dims[i]; }
  std::string str() const;  // "[batch,seq,768]" or "[*]" for unknown rank
  bool operator==(const Shape& o) const { return rank_known == o.rank_known && dims == o.dims; }
};

inline std::string Shape::str() const {
  if (!rank_known) return "[*]";
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    s += dims[i].str();
  }
  return s + "]";
}

}  // namespace cb
