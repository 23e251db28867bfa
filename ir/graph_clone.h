// A deep copy of a graph: new Values and Nodes with the same names, types,
// attributes and order, sharing the constants' bytes (tensors share
// buffers; constants are never written). Used where one model needs several
// variants that differ in a few attributes (generation's intervention
// positions) or where a pass evaluates part of a graph on its own (the
// kv-cache pass tabulating attention masks).
#pragma once
#include <map>
#include <memory>

#include "ir/graph.h"

namespace cb {

// Throws cb::Error for graphs with subgraph attributes (If/Loop bodies
// capture values of the enclosing graph by pointer, which a copy would have
// to remap). `mapping`, when given, receives old value -> new value.
std::shared_ptr<Graph> clone_graph(const Graph& g, std::map<const Value*, Value*>* mapping = nullptr);

}  // namespace cb
