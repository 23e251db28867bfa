#include "ir/precision.h"

#include "support/error.h"

namespace cb {

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "f32"; }

Precision parse_precision(const std::string& text, const std::string& where) {
  if (text == "f32" || text == "fp32") return Precision::f32;
  if (text == "bf16") return Precision::bf16;
  CB_FAIL(where << ": precision '" << text << "' is not one of f32, bf16");
}

Precision node_precision(const Node& n) {
  if (!n.has_attr(kPrecisionAttr)) return Precision::f32;
  return parse_precision(n.attr_string(kPrecisionAttr, "f32"), n.describe() + " attribute " + kPrecisionAttr);
}

}  // namespace cb
