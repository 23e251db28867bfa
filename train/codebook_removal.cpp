#include "train/codebook_removal.h"

#include <vector>

#include "ir/builder.h"
#include "ir/codebook.h"
#include "passes/canonicalize.h"

namespace cb {

int64_t remove_codebooks(Graph& model, CodebookRemoval how) {
  std::vector<Node*> cbs;
  for (auto& n : model.nodes())
    if (is_codebook_node(*n)) cbs.push_back(n.get());
  Builder b(model);
  b.set_scope("codebook_removal");
  for (Node* n : cbs) {
    b.set_insertion_point_before(n);  // where the codebook was: the order stays topological
    Value* x = n->input(0);
    // x * 0: zeros of x's run-time shape (codebook inputs are f32).
    Value* replacement = how == CodebookRemoval::bypass ? x : b.mul(x, b.f32(0.f), "zeros");
    model.replace_all_uses(n->outputs[0], replacement);
  }
  model.remove_nodes_if(is_codebook_node);
  canonicalize(model);
  return int64_t(cbs.size());
}

}  // namespace cb
