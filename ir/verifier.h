// Structural checks and whole-graph type inference.
#pragma once
#include "ir/graph.h"

namespace cb {

// Checks that every node's op is registered, that its arity fits the schema,
// that every input is a graph input, a constant or the output of an earlier
// node, and that no value has two producers. Throws cb::Error naming the node.
void verify_graph(const Graph& g);

// Runs each schema's inference in order and stores the results in the output
// values' types (where inference knows more than the value already says).
// Throws cb::Error at the first node whose inputs it rejects.
void infer_types(Graph& g);
// The same for one node, from its inputs' current types.
void infer_node_types(Node& n);

}  // namespace cb
