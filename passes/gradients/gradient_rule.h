// What a gradient rule is and the builder it emits nodes with. passes/autodiff
// walks the forward nodes between the parameters and the loss in reverse and
// calls the rule of each node's op (one file per op family in this folder,
// collected in the table below); a rule receives the gradients of the node's
// outputs and returns the gradients of the inputs that need one, as ordinary
// IR nodes appended to the graph.
//
// Rule contract:
//   - return one entry per forward input: the gradient (same dtype and shape
//     as the input; use GradBuilder::sum_to after broadcasting ops) or null
//     (no gradient: not wanted, not differentiable, or zero);
//   - compute only what `wants` asks for (frozen parameters cost nothing);
//   - ctx.dy[i] is null for an output no gradient reaches (treat as zero).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ir/builder.h"
#include "ir/graph.h"
#include "ir/op_table.h"

namespace cb {

// The builder gradient rules emit with: an ir Builder (ir/builder.h) that
// appends after every forward node (so order stays topological), names new
// nodes and values "grad/<forward node>/<Op>_<n>" (constants numbered with
// them, outputs "_out<i>"), and infers each new node's output types at once,
// so rules can look at the shapes of what they built. Rules may pass omitted
// (null) optional inputs. On top: the shape helpers and broadcast reduction.
class GradBuilder : public Builder {
 public:
  explicit GradBuilder(Graph& g);

  // Names of new nodes and values start with "grad/" + the forward node's name.
  void set_scope_for(const Node& forward) { set_scope("grad/" + forward.name); }

  // One output whose type is declared as like's type before inference (for
  // ops whose output shape comes from a run-time Shape value).
  Value* op_like(const Value* like, const std::string& type, std::vector<Value*> inputs, Attrs attrs = {},
                 const std::string& domain = "");

  // The shape of v as a 1-D i64 tensor: a constant when static, else a Shape
  // node (one per value).
  Value* shape_tensor(Value* v);
  // Zeros with v's shape and dtype (ConstantOfShape).
  Value* zeros_like(Value* v);
  // grad (the shape of a broadcast result) summed back to `like`'s shape:
  // ReduceSum over the leading extra axes and the axes where `like` has a
  // static 1, keeping dims, then Squeeze of the leading ones. Dims of `like`
  // that are not a static 1 are taken to match grad's (a symbolic dim that
  // is 1 at run time is not supported). Returns grad when nothing broadcast.
  Value* sum_to(Value* grad, const Value* like);
  // Reshape of grad to v's shape.
  Value* reshape_like(Value* grad, Value* v);
  Value* mul_scalar(Value* a, double s);  // a * s in a's dtype (a itself when s == 1)

 private:
  std::map<const Value*, Value*> shapes_;
};

struct GradientContext {
  GradBuilder& b;
  Node& node;               // the forward node (a rule may add outputs to it)
  std::vector<Value*> dy;   // per output: the gradient reaching it, or null
  std::vector<bool> wants;  // per input: is its gradient needed?

  Value* in(size_t i) const { return node.input(i); }
  Value* out(size_t i) const { return i < node.outputs.size() ? node.outputs[i] : nullptr; }
  bool want(size_t i) const { return i < wants.size() && wants[i]; }
  // ctx.dy[i], or zeros of output i's shape when no gradient reached it.
  Value* dy_or_zeros(size_t i);
  // A result vector sized to the node's inputs, all null.
  std::vector<Value*> none() const { return std::vector<Value*>(node.inputs.size(), nullptr); }
};

using GradientRule = std::function<std::vector<Value*>(GradientContext&)>;

using GradientTable = OpTable<GradientRule>;

// Every rule (built on first use).
const GradientTable& gradient_rules();

// Registration, one function per op family (passes/gradients/*.cpp).
void register_elementwise_gradients(GradientTable& t);
void register_tensor_gradients(GradientTable& t);
void register_reduction_gradients(GradientTable& t);
void register_nn_gradients(GradientTable& t);
void register_codebook_gradients(GradientTable& t);
void register_attention_gradients(GradientTable& t);

}  // namespace cb
