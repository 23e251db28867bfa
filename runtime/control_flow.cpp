#include "runtime/control_flow.h"

#include <cstring>

#include "support/error.h"

namespace cb {

bool is_control_flow_op(const Node& node) {
  return node.domain.empty() && (node.op_type == "If" || node.op_type == "Loop");
}

namespace {

bool scalar_true(const Tensor& t, const Node& node, const char* what) {
  CB_CHECK(t.numel() == 1, node.describe()
                               << ": " << what << " must have one element, has shape " << dims_str(t.dims()));
  return t.get_double(0) != 0.0;
}

std::unique_ptr<Executable> compile_body(const Node& node, const char* attr, const Backend& backend,
                                         const CompileOptions& opts) {
  auto g = node.attr_graph(attr);
  CB_CHECK(g, node.describe() << ": missing subgraph attribute '" << attr << "'");
  return Executable::compile(g, backend, opts);
}

class IfKernel : public Kernel {
 public:
  IfKernel(const Node& node, const Backend& backend, const CompileOptions& opts)
      : then_(compile_body(node, "then_branch", backend, opts)),
        else_(compile_body(node, "else_branch", backend, opts)) {}

  void run(KernelContext& ctx) override {
    Executable& branch = scalar_true(ctx.in(0), ctx.node, "condition") ? *then_ : *else_;
    std::vector<Tensor> outs = branch.run_subgraph({}, *ctx.outer_values);
    CB_CHECK(outs.size() >= ctx.outputs.size(),
             ctx.node.describe() << ": branch produced " << outs.size() << " outputs, node has " << ctx.outputs.size());
    for (size_t i = 0; i < ctx.outputs.size(); ++i)
      if (ctx.outputs[i]) *ctx.outputs[i] = outs[i];
  }

 private:
  std::unique_ptr<Executable> then_, else_;
};

// Stacks equally shaped tensors along a new leading axis.
Tensor stack(const std::vector<Tensor>& parts, const Node& node) {
  const Tensor& first = parts.front();
  std::vector<int64_t> dims = first.dims();
  dims.insert(dims.begin(), int64_t(parts.size()));
  Tensor out = Tensor::empty(first.dtype(), dims);
  auto* dst = static_cast<uint8_t*>(out.raw());
  for (const Tensor& p : parts) {
    CB_CHECK(p.dims() == first.dims() && p.dtype() == first.dtype(),
             node.describe() << ": scan output changes shape between iterations (" << dims_str(first.dims()) << " vs "
                             << dims_str(p.dims()) << ")");
    std::memcpy(dst, p.raw(), p.nbytes());
    dst += p.nbytes();
  }
  return out;
}

class LoopKernel : public Kernel {
 public:
  LoopKernel(const Node& node, const Backend& backend, const CompileOptions& opts)
      : body_(compile_body(node, "body", backend, opts)) {}

  void run(KernelContext& ctx) override {
    const Node& node = ctx.node;
    const Tensor* max_trips = ctx.inputs.size() > 0 ? ctx.inputs[0] : nullptr;
    const Tensor* cond_in = ctx.inputs.size() > 1 ? ctx.inputs[1] : nullptr;
    size_t n_carried = ctx.inputs.size() > 2 ? ctx.inputs.size() - 2 : 0;
    size_t n_body_out = body_->graph().outputs.size();
    CB_CHECK(n_body_out >= 1 + n_carried,
             node.describe() << ": body has " << n_body_out << " outputs, needs at least " << 1 + n_carried);
    size_t n_scan = n_body_out - 1 - n_carried;
    int64_t trips = max_trips ? max_trips->get_int(0) : INT64_MAX;
    bool cond = cond_in ? scalar_true(*cond_in, node, "condition") : true;
    std::vector<Tensor> carried;
    for (size_t i = 0; i < n_carried; ++i) carried.push_back(ctx.in(2 + i));
    std::vector<std::vector<Tensor>> scans(n_scan);
    constexpr int64_t kMaxIterations = int64_t(1) << 31;
    int64_t i = 0;
    for (; i < trips && cond; ++i) {
      CB_CHECK(i < kMaxIterations, node.describe() << ": more than " << kMaxIterations << " iterations");
      std::vector<Tensor> in = {Tensor::scalar<int64_t>(i), Tensor::scalar<bool>(cond)};
      in.insert(in.end(), carried.begin(), carried.end());
      std::vector<Tensor> out = body_->run_subgraph(in, *ctx.outer_values);
      cond = scalar_true(out[0], node, "body condition output");
      for (size_t c = 0; c < n_carried; ++c) carried[c] = out[1 + c];
      for (size_t s = 0; s < n_scan; ++s) scans[s].push_back(out[1 + n_carried + s]);
    }
    for (size_t c = 0; c < n_carried && c < ctx.outputs.size(); ++c)
      if (ctx.outputs[c]) *ctx.outputs[c] = carried[c];
    for (size_t s = 0; s < n_scan && n_carried + s < ctx.outputs.size(); ++s) {
      Tensor* o = ctx.outputs[n_carried + s];
      if (!o) continue;
      if (!scans[s].empty()) {
        *o = stack(scans[s], node);
      } else {
        const TensorType& t = body_->graph().outputs[1 + n_carried + s]->type;
        std::vector<int64_t> dims = {0};
        if (t.shape.is_static())
          for (auto d : t.shape.sizes()) dims.push_back(d);
        *o = Tensor::empty(t.dtype == DType::undefined ? DType::f32 : t.dtype, dims);
      }
    }
  }

 private:
  std::unique_ptr<Executable> body_;
};

}  // namespace

std::unique_ptr<Kernel> make_control_flow_kernel(const Node& node, const Backend& backend, const CompileOptions& opts) {
  if (node.op_type == "If") return std::make_unique<IfKernel>(node, backend, opts);
  if (node.op_type == "Loop") return std::make_unique<LoopKernel>(node, backend, opts);
  CB_FAIL("not a control-flow op: " << node.describe());
}

}  // namespace cb
