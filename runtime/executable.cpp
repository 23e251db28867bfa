#include "runtime/executable.h"

#include <algorithm>
#include <chrono>

#include "ir/op_registry.h"
#include "ir/verifier.h"
#include "runtime/control_flow.h"
#include "support/checked_size.h"
#include "support/error.h"

namespace cb {

std::unique_ptr<Executable> Executable::compile(std::shared_ptr<const Graph> graph, const Backend& backend,
                                                CompileOptions opts) {
  std::vector<Value*> captured = graph_captures(*graph);
  if (captured.empty()) verify_graph(*graph);  // subgraphs are verified with their parent
  std::unique_ptr<Executable> ex(new Executable());
  ex->graph_ = graph;
  ex->opts_ = opts;

  auto slot = [&](const Value* v) {
    auto it = ex->slot_of_.find(v);
    if (it != ex->slot_of_.end()) return it->second;
    int s = int(ex->slots_.size());
    ex->slot_of_[v] = s;
    ex->slots_.emplace_back();
    ex->is_constant_slot_.push_back(v->is_constant());
    if (v->is_constant()) ex->slots_.back() = *v->constant;
    return s;
  };
  for (Value* v : graph->inputs) ex->input_slots_.push_back(slot(v));
  for (Value* v : captured) ex->captured_slots_.emplace_back(v, slot(v));
  std::map<int, size_t> last_use;
  for (auto& n : graph->nodes()) {
    Step st;
    st.node = n.get();
    st.kernel = is_control_flow_op(*n) ? make_control_flow_kernel(*n, backend, opts) : backend.create_kernel(*n);
    CB_CHECK(st.kernel, "backend '" << backend.name() << "' has no kernel for " << n->describe());
    const OpSchema* schema = OpRegistry::global().find(n->domain, n->op_type);
    st.sizes_own_outputs = schema && schema->kernel_sizes_outputs;
    for (Value* v : n->inputs) {
      st.in_slots.push_back(v ? slot(v) : -1);
      if (v) last_use[st.in_slots.back()] = ex->steps_.size();
    }
    // Values captured by a node's subgraphs are read at that step too.
    for (auto& [k, a] : n->attrs)
      if (auto sg = std::get_if<std::shared_ptr<Graph>>(&a))
        for (Value* v : graph_captures(**sg)) last_use[slot(v)] = ex->steps_.size();
    for (Value* v : n->outputs) st.out_slots.push_back(v ? slot(v) : -1);
    ex->steps_.push_back(std::move(st));
  }
  for (Value* v : graph->outputs) ex->output_slots_.push_back(slot(v));
  std::vector<bool> keep(ex->slots_.size(), false);
  for (int s : ex->output_slots_) keep[size_t(s)] = true;
  for (int s : ex->input_slots_) keep[size_t(s)] = true;
  for (auto& [v, s] : ex->captured_slots_) keep[size_t(s)] = true;
  for (auto [s, step] : last_use)
    if (!keep[size_t(s)] && !ex->is_constant_slot_[size_t(s)]) ex->steps_[step].free_after.push_back(s);
  return ex;
}

std::vector<std::string> Executable::input_names() const {
  std::vector<std::string> v;
  for (Value* x : graph_->inputs) v.push_back(x->name);
  return v;
}

std::vector<std::string> Executable::output_names() const {
  std::vector<std::string> v;
  for (Value* x : graph_->outputs) v.push_back(x->name);
  return v;
}

void Executable::bind_inputs(const std::map<std::string, Tensor>& inputs) {
  std::map<std::string, int64_t> bound;  // symbolic dim -> size in this run
  for (const auto& [name, t] : inputs) {
    bool known = false;
    for (Value* v : graph_->inputs) known |= v->name == name;
    if (!known) {
      std::string names;
      for (Value* v : graph_->inputs) names += (names.empty() ? "" : ", ") + v->name;
      CB_FAIL("unknown input '" << name << "' (the model's inputs are: " << names << ")");
    }
  }
  for (size_t i = 0; i < graph_->inputs.size(); ++i) {
    const Value* v = graph_->inputs[i];
    auto it = inputs.find(v->name);
    CB_CHECK(it != inputs.end(), "missing input '" << v->name << "' of type " << v->type.str());
    const Tensor& t = it->second;
    const TensorType& want = v->type;
    auto mismatch = [&]() {
      return "input '" + v->name + "': expected " + want.str() + ", got " + std::string(dtype_name(t.dtype())) +
             dims_str(t.dims());
    };
    CB_CHECK(want.dtype == DType::undefined || t.dtype() == want.dtype, mismatch());
    if (want.shape.rank_known) {
      CB_CHECK(t.rank() == want.shape.rank(), mismatch());
      for (size_t d = 0; d < t.rank(); ++d) {
        const Dim& dim = want.shape.dims[d];
        if (dim.is_static()) {
          CB_CHECK(dim.value == t.dim(d), mismatch());
        } else if (dim.is_symbolic()) {
          auto [b, inserted] = bound.emplace(dim.symbol, t.dim(d));
          CB_CHECK(inserted || b->second == t.dim(d),
                   mismatch() << " (dimension '" << dim.symbol << "' is " << b->second << " in another input)");
        }
      }
    }
    slots_[size_t(input_slots_[i])] = t;
  }
}

std::vector<Tensor> Executable::run(const std::map<std::string, Tensor>& inputs) {
  bind_inputs(inputs);
  CB_CHECK(captured_slots_.empty(), "graph '" << graph_->name << "' reads values of an enclosing graph ('"
                                              << captured_slots_[0].first->name << "'); run it as a subgraph");
  return execute(nullptr);
}

std::vector<Tensor> Executable::run_subgraph(const std::vector<Tensor>& inputs,
                                             const std::function<const Tensor*(const Value*)>& outer) {
  CB_CHECK(inputs.size() == input_slots_.size(),
           "subgraph '" << graph_->name << "' takes " << input_slots_.size() << " inputs, got " << inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) slots_[size_t(input_slots_[i])] = inputs[i];
  for (auto& [v, s] : captured_slots_) {
    const Tensor* t = outer(v);
    CB_CHECK(t && t->defined(), "subgraph '" << graph_->name << "': outer value '" << v->name << "' is not available");
    slots_[size_t(s)] = *t;
  }
  return execute(&outer);
}

std::vector<Tensor> Executable::execute(const std::function<const Tensor*(const Value*)>* parent) {
  // Nested subgraphs resolve captured values here first, then in our parent.
  std::function<const Tensor*(const Value*)> lookup = [&](const Value* v) -> const Tensor* {
    auto it = slot_of_.find(v);
    if (it != slot_of_.end() && slots_[size_t(it->second)].defined()) return &slots_[size_t(it->second)];
    return parent ? (*parent)(v) : nullptr;
  };
  std::vector<TensorType> in_types;
  std::vector<const TensorType*> in_type_ptrs;
  std::vector<const Tensor*> in_values;
  std::vector<Tensor*> out_ptrs;
  using Clock = std::chrono::steady_clock;
  for (auto& st : steps_) {
    const Node& n = *st.node;
    in_types.assign(st.in_slots.size(), TensorType{});
    in_type_ptrs.assign(st.in_slots.size(), nullptr);
    in_values.assign(st.in_slots.size(), nullptr);
    for (size_t i = 0; i < st.in_slots.size(); ++i) {
      int s = st.in_slots[i];
      if (s < 0) continue;
      const Tensor& t = slots_[size_t(s)];
      CB_CHECK(t.defined(),
               n.describe() << ": input '" << n.inputs[i]->name << "' has no value (is it produced by any node?)");
      in_types[i] = TensorType{t.dtype(), Shape::of(t.dims())};
      in_type_ptrs[i] = &in_types[i];
      in_values[i] = &t;
    }
    bool kernel_sizes = st.sizes_own_outputs;
    std::vector<TensorType> out_types;
    if (!kernel_sizes) out_types = infer_node(n, in_type_ptrs, in_values);
    out_ptrs.assign(st.out_slots.size(), nullptr);
    for (size_t o = 0; o < st.out_slots.size(); ++o) {
      int s = st.out_slots[o];
      if (s < 0) continue;
      if (kernel_sizes) {
        slots_[size_t(s)] = Tensor();
        out_ptrs[o] = &slots_[size_t(s)];
        continue;
      }
      const TensorType& ot = out_types[o];
      CB_CHECK(ot.shape.is_static() && ot.dtype != DType::undefined,
               n.describe() << ": could not size output " << o << " (" << ot.str() << ")");
      std::vector<int64_t> dims = ot.shape.sizes();
      std::shared_ptr<Buffer> buf;
      try {
        buf = pool_.get(checked_nbytes(dims, dtype_size(ot.dtype), "output"));
      } catch (const Error& e) {
        CB_FAIL(n.describe() << ": output '" << n.outputs[o]->name << "' " << ot.str() << ": " << e.what());
      }
      slots_[size_t(s)] = Tensor::wrap(ot.dtype, dims, std::move(buf));
      out_ptrs[o] = &slots_[size_t(s)];
    }
    KernelContext ctx{n, in_values, out_ptrs, opts_.num_threads, &lookup};
    if (opts_.profile) {
      auto t0 = Clock::now();
      st.kernel->run(ctx);
      auto& p = profile_[n.op_type];
      p.calls++;
      p.ms += std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    } else {
      st.kernel->run(ctx);
    }
    for (int s : st.free_after) slots_[size_t(s)] = Tensor();
  }
  std::vector<Tensor> outs;
  for (int s : output_slots_) outs.push_back(slots_[size_t(s)]);
  // Drop references so the pool can reuse everything but the returned outputs.
  for (size_t s = 0; s < slots_.size(); ++s)
    if (!is_constant_slot_[s]) slots_[s] = Tensor();
  return outs;
}

}  // namespace cb
