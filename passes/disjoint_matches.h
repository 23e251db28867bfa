// Pattern-fusion passes (fuse-gelu, fuse-layer-norm) match a subgraph at
// each node; matches must not share nodes, or one rewrite would pull values
// from under another. This collects them: graph order, first match wins.
#pragma once
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "ir/graph.h"

namespace cb {

// matcher.match(Node&) returns std::optional<M> where M has `std::vector<Node*> nodes`.
// Returns the matches and the nodes they cover (what the rewrite removes).
template <typename Matcher>
auto disjoint_matches(Graph& g, Matcher& matcher) {
  using M = typename decltype(matcher.match(*g.nodes().front()))::value_type;  // unevaluated: no node read
  std::vector<M> matches;
  std::set<const Node*> covered;
  for (auto& n : g.nodes()) {
    std::optional<M> m = matcher.match(*n);
    if (!m) continue;
    bool overlaps = false;
    for (Node* p : m->nodes) overlaps |= covered.count(p) != 0;
    if (overlaps) continue;
    covered.insert(m->nodes.begin(), m->nodes.end());
    matches.push_back(std::move(*m));
  }
  return std::pair{std::move(matches), std::move(covered)};
}

}  // namespace cb
