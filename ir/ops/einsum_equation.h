// Parsing of Einsum equations ("bij,bjk->bik", "ii", "...ij,...jk"), shared by
// the Einsum schema (shape inference) and the kernels, so both read an equation
// the same way. Semantics follow numpy.einsum, which ONNX's Einsum follows:
// repeated letters in one operand take a diagonal, letters absent from the
// output are summed, "..." stands for right-aligned broadcast dimensions, and
// an implicit output ("ij,jk") lists the ellipsis dims and then the letters
// that occur exactly once, in ASCII order. Size-1 dims broadcast against the
// other operands' sizes of the same label, as in numpy.
#pragma once
#include <string>
#include <vector>

namespace cb {

struct EinsumPlan {
  // Labels are numbered 0..num_labels-1: the ellipsis dims first (right-aligned
  // across operands), then the letters in order of first appearance.
  int num_labels = 0;
  std::vector<std::vector<int>> operand_labels;  // per operand, one label per dim
  std::vector<int> output_labels;                // one label per output dim
};

// Resolves `equation` for operands of the given ranks. Throws cb::Error with a
// message describing the problem (callers prefix the node).
EinsumPlan plan_einsum(const std::string& equation, const std::vector<size_t>& ranks);

}  // namespace cb
