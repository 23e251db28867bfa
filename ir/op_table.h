// A table keyed by (domain, op type), the one shape of every per-op table:
// a backend's kernels (backends/backend.h) and the gradient rules
// (passes/gradients/gradient_rule.h). "" and "ai.onnx" name the same domain.
// An op is registered once: a second registration is a programming error
// (it would leave one of the two entries unreachable).
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "support/error.h"

namespace cb {

template <typename Entry>
class OpTable {
 public:
  void add(const std::string& op_type, Entry entry, const std::string& domain = "") {
    bool inserted = entries_.emplace(std::pair{canonical_domain(domain), op_type}, std::move(entry)).second;
    CB_CHECK(inserted, "op " << (domain.empty() ? "" : domain + ".") << op_type << " registered twice in one table");
  }
  // The entry, or an empty one (null function) when the op has none.
  Entry find(const std::string& domain, const std::string& op_type) const {
    auto it = entries_.find({canonical_domain(domain), op_type});
    return it == entries_.end() ? Entry{} : it->second;
  }
  // "Add", "codebook.Codebook", ... in (domain, op) order.
  std::vector<std::string> op_names() const {
    std::vector<std::string> v;
    for (auto& [key, entry] : entries_) v.push_back(key.first.empty() ? key.second : key.first + "." + key.second);
    return v;
  }

 private:
  static std::string canonical_domain(const std::string& d) { return d == "ai.onnx" ? "" : d; }
  std::map<std::pair<std::string, std::string>, Entry> entries_;
};

}  // namespace cb
