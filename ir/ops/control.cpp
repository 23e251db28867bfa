// Schemas of the control-flow ops If and Loop. Their output shapes depend on
// data (which branch runs, how many iterations), so at run time the kernel
// sizes the outputs (kernel_sizes_outputs); at compile time we infer what the
// subgraphs declare.
#include "ir/op_registry.h"

namespace cb {

static void register_if(OpRegistry& r) {
  OpSchema s;
  s.name = "If";
  s.min_inputs = s.max_inputs = 1;
  s.min_outputs = 1;
  s.max_outputs = 1 << 20;
  s.kernel_sizes_outputs = true;
  s.infer = [](InferContext& ctx) {
    auto then_g = ctx.node().attr_graph("then_branch");
    auto else_g = ctx.node().attr_graph("else_branch");
    ctx.check(then_g && else_g, "needs then_branch and else_branch subgraphs");
    ctx.check(then_g->outputs.size() == ctx.num_outputs() && else_g->outputs.size() == ctx.num_outputs(),
              "branches must each produce " + std::to_string(ctx.num_outputs()) + " outputs");
    for (size_t i = 0; i < ctx.num_outputs(); ++i) {
      const TensorType& a = then_g->outputs[i]->type;
      const TensorType& b = else_g->outputs[i]->type;
      ctx.check(a.dtype == b.dtype || a.dtype == DType::undefined || b.dtype == DType::undefined,
                "branches disagree on the dtype of output " + std::to_string(i));
      ctx.set_output(i, a.dtype != DType::undefined ? a.dtype : b.dtype, a == b ? a.shape : Shape::unknown_rank());
    }
  };
  r.add(std::move(s));
}

static void register_loop(OpRegistry& r) {
  OpSchema s;
  s.name = "Loop";
  s.min_inputs = 0;
  s.max_inputs = 1 << 20;
  s.min_outputs = 0;
  s.max_outputs = 1 << 20;
  s.kernel_sizes_outputs = true;
  s.infer = [](InferContext& ctx) {
    auto body = ctx.node().attr_graph("body");
    ctx.check(body != nullptr, "needs a body subgraph");
    size_t n_carried = ctx.num_inputs() > 2 ? ctx.num_inputs() - 2 : 0;
    ctx.check(body->inputs.size() == 2 + n_carried, "body takes " + std::to_string(body->inputs.size()) +
                                                        " inputs, expected " + std::to_string(2 + n_carried));
    ctx.check(body->outputs.size() >= 1 + n_carried && ctx.num_outputs() <= body->outputs.size() - 1,
              "body outputs do not match the node's outputs");
    for (size_t i = 0; i < ctx.num_outputs(); ++i) {
      const TensorType& bt = body->outputs[1 + i]->type;
      if (i < n_carried) {
        const TensorType& init = ctx.input_type(2 + i);
        ctx.set_output(i, init.dtype, bt.shape == init.shape ? init.shape : Shape::unknown_rank());
      } else {
        Shape sh = Shape::unknown_rank();
        if (bt.shape.rank_known) {
          sh = bt.shape;
          sh.dims.insert(sh.dims.begin(), Dim::unknown());
        }
        ctx.set_output(i, bt.dtype, sh);
      }
    }
  };
  r.add(std::move(s));
}

void register_control_ops(OpRegistry& r) {
  register_if(r);
  register_loop(r);
}

}  // namespace cb
