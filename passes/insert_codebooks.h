// The codebook insertion pass: puts a codebook.Codebook node (ir/codebook.h)
// at every chosen site of every chosen layer, as in the original library's
// CodebookModel, but on the imported graph (docs/original.md#sites-and-placements):
//   x -> Codebook(x, codes, ln_scale, ln_bias) -> y, and every former use of
//   x reads y. qkv of separate q/k/v projections is quantised as one
//   [q|k|v] vector (Concat -> Codebook -> Split); attn_plus_mlp rewrites the
//   block output as input + Codebook(attn + mlp).
// New codebooks start as the original's: codes i.i.d. N(0, 1), LayerNorm
// scale 1 and bias 0, drawn from a generator seeded by (seed, site name) so
// adding a site never changes another site's codes. The configuration is also
// recorded as JSON in the graph metadata under "codebook.config"
// (docs/codebooks.md describes both).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ir/codebook.h"
#include "ir/graph.h"
#include "passes/pass.h"
#include "passes/transformer_anatomy.h"

namespace cb {

inline constexpr int64_t kGroupsPerHead = -1;  // PlacementConfig::groups: one member per head

struct PlacementConfig {
  Placement placement = Placement::mlp;
  int64_t num_codes = 1000;  // K per member
  int64_t k = 8;
  int64_t groups = 1;  // G, or kGroupsPerHead; qkv gets 3*G members (q, k, v chunks)
};

struct CodebookConfig {
  std::vector<PlacementConfig> placements;
  std::vector<int64_t> layers;  // empty = every layer; negative counts from the end
  CodebookMetric metric = CodebookMetric::inner_product;
  uint64_t seed = 0;
};

struct InsertedCodebook {
  std::string site;  // "layer0.mlp"
  Node* node = nullptr;
  int64_t width = 0, groups = 0, num_codes = 0, k = 0;
};

// Inserts the codebooks; returns them in graph order. Throws cb::Error when a
// layer or placement does not exist, G does not divide the width, or a site
// already has a codebook. The graph is re-sorted and re-typed.
std::vector<InsertedCodebook> insert_codebooks(Graph& g, const CodebookConfig& cfg);

// insert_codebooks as a pass ("insert-codebooks"); inserted() lists the
// codebooks once it ran.
class InsertCodebooksPass : public Pass {
 public:
  explicit InsertCodebooksPass(CodebookConfig cfg) : cfg_(std::move(cfg)) {}
  std::string name() const override { return "insert-codebooks"; }
  bool run(Graph& g) override {
    inserted_ = insert_codebooks(g, cfg_);
    return !inserted_.empty();
  }
  const std::vector<InsertedCodebook>& inserted() const { return inserted_; }

 private:
  CodebookConfig cfg_;
  std::vector<InsertedCodebook> inserted_;
};

// The configuration of every codebook in `g`, as the JSON kept in the graph
// metadata "codebook.config": {"version": 1, "codebooks": [{"site", "layer",
// "placement", "width", "groups", "num_codes", "k", "metric"}, ...]}.
std::string codebook_config_json(const Graph& g);

// The Codebook nodes of a compiled graph, by their `site` attribute.
std::vector<Node*> codebook_nodes(const Graph& g);
Node* find_codebook_node(const Graph& g, const std::string& site);

}  // namespace cb
