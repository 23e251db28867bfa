// Reads the IR's text form (see ir/printer.h for the grammar) back into a
// Graph. print_graph(*parse_graph(print_graph(g))) == print_graph(g) for any
// graph printed without elided constants. The parser checks syntax and names
// (every %value used is defined once, in this graph or an enclosing one; uses
// may come before definitions) but not ops: run verify_graph / infer_types for
// that. Errors are cb::Error reading "parse error at LINE:COL: expected ...".
#pragma once
#include <memory>
#include <string>

#include "ir/graph.h"

namespace cb {

std::unique_ptr<Graph> parse_graph(const std::string& text);

// A type on its own, e.g. "f32[batch,seq,768]" (for tests and tools).
TensorType parse_type(const std::string& text);

}  // namespace cb
