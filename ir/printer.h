// The IR's text form, for humans (dumps, `codebook inspect`) and for tests
// (pass tests are written as before/after text). ir/parser.h reads it back:
// parse_graph(print_graph(g)) rebuilds g, and printing that again gives the
// same text. The grammar, by example:
//
//   graph main(%ids: i64[batch,seq], %w_in: f32[2] = const {0.5, 1}) -> (%logits) {
//     %emb: f32[50,4] = const dense<800 bytes, fnv1a 0x3f2a...>   // elided form
//     %b: f16[2] = const {1, -inf}
//     %0: f32[batch,seq,4] = Gather(%emb, %ids) {axis = 0}      # gather_node
//     %y, _ = Dropout(%0, _, _) {seed = 1}
//     %logits = codebook.CodebookSnap(%y, %codes) {k = 8, metric = "inner_product"}
//   }
//
// - Values are %name; names outside [A-Za-z0-9_./-] are quoted: %"onnx::Gather_1".
// - Types are dtype + dims: f32[batch,seq,768], `?` an unknown dim, `[*]` an
//   unknown rank, `?` as the dtype when only the shape is known; a value whose
//   type is wholly unknown is printed without `: type`.
// - Constants are printed before the nodes, in full (floats in shortest exact
//   form, so they read back bit for bit; nan/inf by name) or, with
//   elide_large_constants, as `dense<N bytes, fnv1a HASH>` (not parseable).
//   A graph input that also holds a constant (an overridable initializer)
//   carries `= const {...}` in the signature.
// - `_` is an omitted optional input or output. Ops in a domain print as
//   domain.Op. Attributes are sorted by name: ints (1), floats (1.0, 1e-05,
//   nan), strings ("s"), lists ([1, 2], [0.5], ["a"]; empty ones as ints[],
//   floats[], strings[]), tensors (f32[2] {1, 2}) and graphs (graph body(...)
//   -> (...) {...}).
// - A node's name follows `#` at the end of its line (quoted if it needs it);
//   `//` starts a comment.
#pragma once
#include <cstdint>
#include <string>

#include "ir/graph.h"

namespace cb {

struct PrintOptions {
  // Print constants of more than max_inline_elements as dense<bytes, hash>.
  bool elide_large_constants = false;
  int64_t max_inline_elements = 16;
  // Print `# name` after each node (needed for an exact round trip).
  bool node_names = true;
};

std::string print_graph(const Graph& g, const PrintOptions& opts = {});
// One node as its line (without indentation or newline), e.g. "%y = Relu(%x)".
std::string print_node(const Node& n, const PrintOptions& opts = {});
std::string print_type(const TensorType& t);  // "f32[batch,768]"
// A tensor literal with its type: "f32[2] {1, 2.5}".
std::string print_tensor(const Tensor& t, const PrintOptions& opts = {});

// Text helpers shared with the parser.
bool is_bare_name(const std::string& s);         // needs no quotes after %
std::string quote_string(const std::string& s);  // "..." with C escapes
std::string print_name(const std::string& s);    // bare or quoted
// Shortest text that reads back to exactly the same value; nan/inf by name.
std::string format_float(double v, bool is_f32);

}  // namespace cb
