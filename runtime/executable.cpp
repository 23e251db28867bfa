#include "runtime/executable.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <unordered_set>

#include "ir/op_registry.h"
#include "ir/placement.h"
#include "ir/verifier.h"
#include "runtime/control_flow.h"
#include "runtime/memory_plan.h"
#include "support/checked_size.h"
#include "support/error.h"
#include "support/threads.h"

namespace cb {

std::unique_ptr<Executable> Executable::compile(std::shared_ptr<const Graph> graph, const Backend& backend,
                                                CompileOptions opts) {
  std::vector<Value*> captured = graph_captures(*graph);
  if (captured.empty()) verify_graph(*graph);  // subgraphs are verified with their parent
  std::unique_ptr<Executable> ex(new Executable());
  ex->graph_ = graph;
  ex->opts_ = opts;
  ex->opts_.num_threads = resolve_thread_count(opts.num_threads);  // 0: all cores (support/threads.h)
  ex->device_backend_ = opts.device_backend;
  ex->memories_.push_back({Device::host(), BufferPool(), nullptr});
  if (const Backend* d = opts.device_backend; d && !d->device().is_host())
    ex->memories_.push_back({d->device(), BufferPool([d](size_t bytes) { return d->allocate(bytes); }), nullptr});

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
    // Without a device backend, copy nodes are plain host copies (the host
    // backend's kernels); any other placed node is an error.
    const bool host_copy = !opts.device_backend && (is_copy_to_device(*n) || is_copy_to_host(*n));
    const int memory = host_copy ? 0 : ex->memory_of(node_device(*n), *n);
    const Backend& runs_on = memory == 0 ? backend : *opts.device_backend;
    st.kernel = is_control_flow_op(*n) ? make_control_flow_kernel(*n, backend, opts) : runs_on.create_kernel(*n);
    CB_CHECK(st.kernel, "backend '" << runs_on.name() << "' has no kernel for " << n->describe());
    st.in_device = host_copy ? Device::host() : input_device(*n);
    st.out_device = host_copy ? Device::host() : output_device(*n);
    st.any_input_device = reads_only_dims(*n);
    if (memory != 0 && is_copy_to_device(*n) && n->inputs[0] && n->inputs[0]->is_constant()) {
      // A constant is copied to the device once, here, and stays there.
      Tensor host = *n->inputs[0]->constant;
      Tensor on_device = Tensor::wrap(host.dtype(), host.dims(), runs_on.allocate(host.nbytes()));
      KernelContext ctx{*n, {&host}, {&on_device}, opts.num_threads, nullptr};
      st.kernel->run(ctx);
      runs_on.synchronize();
      int s = slot(n->outputs[0]);
      ex->slots_[size_t(s)] = on_device;
      ex->is_constant_slot_[size_t(s)] = true;
      if (ex->host_mirror_.size() <= size_t(s)) ex->host_mirror_.resize(size_t(s) + 1);
      ex->host_mirror_[size_t(s)] = host;
      continue;
    }
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
    st.copies_to_device = memory != 0 && is_copy_to_device(*n) && n->inputs[0];
    if (st.copies_to_device)
      st.copies_graph_input = std::count(graph->inputs.begin(), graph->inputs.end(), n->inputs[0]) > 0;
    if (memory != 0 && is_copy_to_host(*n) && n->outputs[0] && opts.device_outputs.count(n->outputs[0]->name))
      st.keeps_on_device = std::count(graph->outputs.begin(), graph->outputs.end(), n->outputs[0]) > 0;
    ex->steps_.push_back(std::move(st));
  }
  for (Value* v : graph->outputs) ex->output_slots_.push_back(slot(v));
  ex->device_feeds_.resize(ex->slots_.size());
  for (int s : ex->input_slots_) {
    bool host_reader = false;
    for (const Step& st : ex->steps_)
      if (!st.copies_graph_input && !st.any_input_device && st.in_device.is_host())
        host_reader |= std::count(st.in_slots.begin(), st.in_slots.end(), s) > 0;
    ex->input_has_host_readers_.push_back(host_reader);
  }
  std::vector<bool> keep(ex->slots_.size(), false);
  for (const Step& st : ex->steps_)
    if (st.keeps_on_device) keep[size_t(st.in_slots[0])] = true;  // returned: never in the arena
  for (int s : ex->output_slots_) keep[size_t(s)] = true;
  for (int s : ex->input_slots_) keep[size_t(s)] = true;
  for (auto& [v, s] : ex->captured_slots_) keep[size_t(s)] = true;
  for (auto [s, step] : last_use)
    if (!keep[size_t(s)] && !ex->is_constant_slot_[size_t(s)]) ex->steps_[step].free_after.push_back(s);
  ex->is_kept_slot_ = keep;
  ex->memory_.resize(ex->slots_.size());
  for (size_t i = 0; i < ex->steps_.size(); ++i)
    for (int s : ex->steps_[i].out_slots)
      if (s >= 0) ex->memory_[size_t(s)].first = ex->memory_[size_t(s)].last = int64_t(i);
  for (auto [s, step] : last_use) ex->memory_[size_t(s)].last = std::max(ex->memory_[size_t(s)].last, int64_t(step));
  for (size_t i = 0; i < ex->steps_.size(); ++i)
    for (int s : ex->steps_[i].out_slots)
      if (s >= 0) ex->memory_[size_t(s)].memory = ex->memory_of(ex->steps_[i].out_device, *ex->steps_[i].node);
  return ex;
}

// The memories_ index of `device`, on which `node` runs or puts its outputs.
int Executable::memory_of(const Device& device, const Node& node) const {
  if (device.is_host()) return 0;
  CB_CHECK(memories_.size() > 1 && memories_[1].device == device,
           node.describe() << " is placed on " << device.str() << ", but "
                           << (memories_.size() > 1 ? "the device backend given runs on " + memories_[1].device.str()
                                                    : std::string("no device backend was given")));
  return 1;
}

size_t Executable::pooled_bytes() const {
  size_t n = 0;
  for (const DeviceMemory& m : memories_) n += m.pool.bytes_held() + (m.arena ? m.arena->size() : 0);
  return n;
}

size_t Executable::arena_bytes() const {
  size_t n = 0;
  for (const DeviceMemory& m : memories_) n += arena_bytes(m.device);
  return n;
}

size_t Executable::arena_bytes(const Device& device) const {
  for (const DeviceMemory& m : memories_)
    if (m.device == device && planned_ && m.arena) return m.arena->size();
  return 0;
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
    const size_t s = size_t(input_slots_[i]);
    device_feeds_[s] = Tensor();
    slots_[s] = t;
    if (t.buffer() && !t.device().is_host()) {
      CB_CHECK(device_backend_ && t.device() == device_backend_->device(),
               "input '" << v->name << "' is on " << t.device().str() << ", but this graph runs on "
                         << (device_backend_ ? device_backend_->device().str() + " and the host" : "the host"));
      device_feeds_[s] = t;
      if (input_has_host_readers_[i]) {
        slots_[s] = Tensor::empty(t.dtype(), t.dims());
        device_backend_->copy_to_host(t, slots_[s]);
      }
    }
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

namespace {

// Bytes of a value whose inference read it, for the sized-types cache; larger
// values are not cached (re-inferred every run).
constexpr size_t kMaxCachedValueBytes = 4096;
// Host values copied to the device that stay readable for shape inference
// (index inputs are a few int64s; activations are never read this way).
constexpr size_t kMaxMirroredBytes = 4096;

bool same_bytes(const Tensor& t, const std::vector<uint8_t>& bytes) {
  return t.nbytes() == bytes.size() && (bytes.empty() || std::memcmp(t.raw(), bytes.data(), bytes.size()) == 0);
}

}  // namespace

bool Executable::cached_types(Step& st, const std::vector<const Tensor*>& in_values,
                              const std::vector<const Tensor*>& readable) {
  const Step::Sized& c = st.sized;
  if (!c.valid) return false;
  for (size_t i = 0; i < in_values.size(); ++i) {
    const Tensor* t = in_values[i];
    if (!t) {
      if (c.in_dtypes[i] != DType::undefined) return false;
      continue;
    }
    if (t->dtype() != c.in_dtypes[i] || t->dims() != c.in_dims[i]) return false;
  }
  size_t r = 0;
  for (size_t i = 0; i < in_values.size(); ++i)
    if (c.values_read >> i & 1) {
      if (!readable[i] || !same_bytes(*readable[i], c.read_values[r])) return false;
      ++r;
    }
  return true;
}

void Executable::remember_types(Step& st, const std::vector<const Tensor*>& in_values,
                                const std::vector<const Tensor*>& readable, uint64_t values_read,
                                const std::vector<TensorType>& out_types) {
  Step::Sized& c = st.sized;
  c.out_dtypes.clear();
  c.out_dims.clear();
  for (const TensorType& t : out_types) {
    c.out_dtypes.push_back(t.dtype);
    c.out_dims.push_back(t.shape.is_static() ? t.shape.sizes() : std::vector<int64_t>{});
  }
  // Reusable next run unless inference read an input past 63 (not tracked)
  // or a large value.
  c.valid = !(values_read >> 63 & 1);
  c.values_read = values_read;
  c.in_dtypes.assign(in_values.size(), DType::undefined);
  c.in_dims.resize(in_values.size());
  c.read_values.clear();
  for (size_t i = 0; i < in_values.size() && c.valid; ++i) {
    c.in_dims[i].clear();
    if (!in_values[i]) continue;
    const Tensor& t = *in_values[i];
    c.in_dtypes[i] = t.dtype();
    c.in_dims[i] = t.dims();
    if (values_read >> i & 1) {
      if (!readable[i]) {  // inference cannot have read it; never cache what was not seen
        c.valid = false;
        break;
      }
      const auto* p = static_cast<const uint8_t*>(readable[i]->raw());
      if (t.nbytes() > kMaxCachedValueBytes)
        c.valid = false;
      else
        c.read_values.emplace_back(p, p + t.nbytes());
    }
  }
}

void Executable::readable_inputs(const Step& st, const std::vector<const Tensor*>& in_values,
                                 std::vector<const Tensor*>& readable) const {
  // The host reads host values only: a device input is read through its
  // host mirror (a constant's), or not at all.
  readable.assign(in_values.begin(), in_values.end());
  for (size_t i = 0; i < readable.size(); ++i)
    if (readable[i] && !readable[i]->device().is_host()) {
      const size_t s = size_t(st.in_slots[i]);
      if (s < host_mirror_.size() && host_mirror_[s].defined())
        readable[i] = &host_mirror_[s];
      else
        readable[i] = s < run_mirror_.size() && run_mirror_[s].defined() ? &run_mirror_[s] : nullptr;
    }
}

Tensor Executable::allocate_output(const Step& st, size_t o, DType dtype, std::vector<int64_t> dims, int slot) {
  const Node& n = *st.node;
  SlotMemory& m = memory_[size_t(slot)];
  size_t bytes = 0;
  try {
    bytes = checked_nbytes(dims, dtype_size(dtype), "output");
    DeviceMemory& mem = memories_[size_t(m.memory)];
    if (planned_ && m.offset >= 0) {
      if (bytes == m.planned_bytes) return Tensor::wrap(dtype, std::move(dims), mem.arena, size_t(m.offset));
      plan_broken_ = true;  // sizes changed: pooled now, planned again once they repeat
    }
    std::shared_ptr<Buffer> buf = mem.pool.get(bytes);
    if (!planned_) {
      m.bytes = bytes;
      m.buffer = buf.get();
      root_of_buffer_[buf.get()] = slot;
    }
    return Tensor::wrap(dtype, std::move(dims), std::move(buf));
  } catch (const Error& e) {
    CB_FAIL(n.describe() << ": output '" << n.outputs[o]->name << "' " << dtype_name(dtype) << dims_str(dims) << ": "
                         << e.what());
  }
}

// A kernel may replace an output by a view of an input (Reshape) and control
// flow returns whatever its body produced. While recording, note which pooled
// buffer each such output shares, so the plan keeps that buffer alive as long
// as the view. In a planned run, a view into the arena that the plan did not
// expect is copied out, since the arena bytes under it may be reused.
void Executable::check_outputs_after(const Step& st, const std::vector<const Buffer*>& given) {
  for (size_t o = 0; o < st.out_slots.size(); ++o) {
    int s = st.out_slots[o];
    if (s < 0) continue;
    Tensor& t = slots_[size_t(s)];
    const Buffer* b = t.buffer().get();
    if (!b || b == given[o]) continue;
    SlotMemory& m = memory_[size_t(s)];
    if (!planned_) {
      auto it = root_of_buffer_.find(b);
      if (it == root_of_buffer_.end()) continue;  // a constant, an input or the kernel's own memory
      int root = it->second;
      while (memory_[size_t(root)].alias_of >= 0) root = memory_[size_t(root)].alias_of;
      if (root != s) m.alias_of = root;
      continue;
    }
    DeviceMemory& mem = memories_[size_t(m.memory)];
    if (b != mem.arena.get()) continue;
    if (m.alias_of >= 0) {
      const SlotMemory& r = memory_[size_t(m.alias_of)];
      auto* base = static_cast<const uint8_t*>(mem.arena->data());
      auto* p = static_cast<const uint8_t*>(t.raw());
      if (r.offset >= 0 && p >= base + r.offset && p + t.nbytes() <= base + r.offset + r.planned_bytes) continue;
    }
    CB_CHECK(mem.device.is_host(), st.node->describe()
                                       << ": output '" << st.node->outputs[o]->name << "' is an unplanned view of "
                                       << mem.device.str() << " memory the plan may reuse");
    Tensor copy = Tensor::wrap(t.dtype(), t.dims(), mem.pool.get(t.nbytes()));
    if (t.nbytes()) std::memcpy(copy.raw(), t.raw(), t.nbytes());
    t = std::move(copy);
    plan_broken_ = true;
  }
}

// Every input must be where the step's kernel reads it: a host kernel given
// device memory would read garbage or crash.
void Executable::check_devices(const Step& st, const std::vector<const Tensor*>& in_values) const {
  if (st.any_input_device) return;
  for (size_t i = 0; i < in_values.size(); ++i)
    if (const Tensor* t = in_values[i]; t && t->buffer() && !(t->device() == st.in_device))
      CB_FAIL(st.node->describe() << ": input '" << st.node->inputs[i]->name << "' is on " << t->device().str()
                                  << ", but its kernel reads " << st.in_device.str()
                                  << " memory (place the graph with passes/place_devices.h)");
}

// Plans the arena when this recording run's sizes and views equal the
// previous one's; a planned run whose sizes broke the plan records again.
void Executable::finish_run() {
  if (planned_) {
    if (plan_broken_) {
      planned_ = false;
      prev_bytes_.clear();
    }
    return;
  }
  std::vector<size_t> bytes(memory_.size());
  std::vector<int> alias(memory_.size());
  for (size_t s = 0; s < memory_.size(); ++s) {
    bytes[s] = memory_[s].bytes;
    alias[s] = memory_[s].alias_of;
  }
  root_of_buffer_.clear();
  if (bytes == prev_bytes_ && alias == prev_alias_) {
    build_plan();
    return;
  }
  prev_bytes_ = std::move(bytes);
  prev_alias_ = std::move(alias);
}

void Executable::build_plan() {
  // Roots are values with their own pooled buffer; a view extends its root's
  // lifetime, and a root whose view is kept (a graph output) stays pooled.
  std::vector<int64_t> last(memory_.size());
  std::vector<bool> pooled(memory_.size(), false);
  for (size_t s = 0; s < memory_.size(); ++s) {
    last[s] = memory_[s].last;
    pooled[s] = is_kept_slot_[s] || is_constant_slot_[s] || memory_[s].bytes == 0 || memory_[s].alias_of >= 0;
  }
  for (size_t s = 0; s < memory_.size(); ++s) {
    int r = memory_[s].alias_of;
    if (r < 0) continue;
    last[size_t(r)] = std::max(last[size_t(r)], memory_[s].last);
    if (is_kept_slot_[s]) pooled[size_t(r)] = true;
  }
  // Each device's values are planned into that device's arena.
  bool any = false;
  for (size_t d = 0; d < memories_.size(); ++d) {
    std::vector<PlannedValue> values;
    std::vector<size_t> slot_of_value;
    for (size_t s = 0; s < memory_.size(); ++s) {
      if (size_t(memory_[s].memory) != d) continue;
      memory_[s].offset = -1;
      if (pooled[s]) continue;
      values.push_back({memory_[s].bytes, memory_[s].first, last[s]});
      slot_of_value.push_back(s);
    }
    if (values.empty()) continue;
    any = true;
    MemoryPlan plan = plan_memory(values);
    DeviceMemory& mem = memories_[d];
    if (!mem.arena || mem.arena->size() < plan.arena_bytes)
      mem.arena = d == 0 ? buffer_allocate(plan.arena_bytes) : device_backend_->allocate(plan.arena_bytes);
    for (size_t i = 0; i < values.size(); ++i) {
      SlotMemory& m = memory_[slot_of_value[i]];
      m.offset = int64_t(plan.offsets[i]);
      m.planned_bytes = m.bytes;
    }
  }
  if (!any) return;
  // The pooled buffers that only planned values took are not needed any more.
  std::unordered_set<const Buffer*> unused, used;
  for (const SlotMemory& m : memory_)
    if (m.buffer) (m.offset >= 0 ? unused : used).insert(m.buffer);
  for (const Buffer* b : used) unused.erase(b);
  for (DeviceMemory& mem : memories_) mem.pool.release(unused);
  planned_ = true;
  plan_broken_ = false;
}

std::vector<Tensor> Executable::execute(const std::function<const Tensor*(const Value*)>* parent) {
  // Nested subgraphs resolve captured values here first, then in our parent.
  std::function<const Tensor*(const Value*)> lookup = [&](const Value* v) -> const Tensor* {
    auto it = slot_of_.find(v);
    if (it != slot_of_.end() && slots_[size_t(it->second)].defined()) return &slots_[size_t(it->second)];
    return parent ? (*parent)(v) : nullptr;
  };
  if (!planned_)
    for (SlotMemory& m : memory_) {
      m.bytes = 0;
      m.buffer = nullptr;
      m.alias_of = -1;
    }
  plan_broken_ = false;
  std::vector<TensorType> in_types;
  std::vector<const TensorType*> in_type_ptrs;
  std::vector<const Tensor*> in_values, readable;
  std::vector<Tensor*> out_ptrs;
  std::vector<const Buffer*> given;
  using Clock = std::chrono::steady_clock;
  const auto run_start = Clock::now();
  double kernel_ms = 0;
  for (auto& st : steps_) {
    const Node& n = *st.node;
    // Copies the data does not need: a graph input given on the device, and
    // an output to return there.
    const Tensor* passed = nullptr;
    if (st.copies_graph_input && device_feeds_[size_t(st.in_slots[0])].defined())
      passed = &device_feeds_[size_t(st.in_slots[0])];
    else if (st.keeps_on_device)
      passed = &slots_[size_t(st.in_slots[0])];
    if (passed) {
      slots_[size_t(st.out_slots[0])] = *passed;
      if (size_t(st.out_slots[0]) < run_mirror_.size()) run_mirror_[size_t(st.out_slots[0])] = Tensor();
      for (int s : st.free_after) slots_[size_t(s)] = Tensor();
      continue;
    }
    in_values.assign(st.in_slots.size(), nullptr);
    for (size_t i = 0; i < st.in_slots.size(); ++i) {
      int s = st.in_slots[i];
      if (s < 0) continue;
      const Tensor& t = slots_[size_t(s)];
      CB_CHECK(t.defined(),
               n.describe() << ": input '" << n.inputs[i]->name << "' has no value (is it produced by any node?)");
      in_values[i] = &t;
    }
    check_devices(st, in_values);
    bool kernel_sizes = st.sizes_own_outputs;
    // The inputs' readable bytes, only where the sizes cache compares values
    // or inference runs (not on most steps of a repeated run).
    bool have_readable = !kernel_sizes && (!st.sized.valid || st.sized.values_read != 0);
    if (have_readable) readable_inputs(st, in_values, readable);
    if (!kernel_sizes && !cached_types(st, in_values, readable)) {
      if (!have_readable) readable_inputs(st, in_values, readable);
      in_types.assign(st.in_slots.size(), TensorType{});
      in_type_ptrs.assign(st.in_slots.size(), nullptr);
      for (size_t i = 0; i < st.in_slots.size(); ++i) {
        if (!in_values[i]) continue;
        in_types[i] = TensorType{in_values[i]->dtype(), Shape::of(in_values[i]->dims())};
        in_type_ptrs[i] = &in_types[i];
      }
      uint64_t values_read = 0;
      std::vector<TensorType> out_types = infer_node(n, in_type_ptrs, readable, &values_read);
      for (size_t o = 0; o < st.out_slots.size(); ++o) {
        const TensorType& ot = out_types[o];
        CB_CHECK(st.out_slots[o] < 0 || (ot.shape.is_static() && ot.dtype != DType::undefined),
                 n.describe() << ": could not size output " << o << " (" << ot.str() << ")");
      }
      remember_types(st, in_values, readable, values_read, out_types);
    }
    out_ptrs.assign(st.out_slots.size(), nullptr);
    given.assign(st.out_slots.size(), nullptr);
    for (size_t o = 0; o < st.out_slots.size(); ++o) {
      int s = st.out_slots[o];
      if (s < 0) continue;
      if (kernel_sizes) {
        slots_[size_t(s)] = Tensor();
      } else {
        slots_[size_t(s)] = allocate_output(st, o, st.sized.out_dtypes[o], st.sized.out_dims[o], s);
        given[o] = slots_[size_t(s)].buffer().get();
      }
      out_ptrs[o] = &slots_[size_t(s)];
    }
    KernelContext ctx{n, in_values, out_ptrs, opts_.num_threads, &lookup};
    if (opts_.profile) {
      auto t0 = Clock::now();
      st.kernel->run(ctx);
      auto& p = profile_[opts_.profile_nodes ? n.op_type + " " + n.name : n.op_type];
      if (opts_.profile_nodes && p.calls == 0)
        for (const Tensor* t : in_values) p.inputs += (p.inputs.empty() ? "" : " ") + (t ? dims_str(t->dims()) : "-");
      p.calls++;
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      p.ms += ms;
      kernel_ms += ms;
    } else {
      st.kernel->run(ctx);
    }
    // A small host value copied to the device (an index input: a shape,
    // axes) stays readable by the shape inference of the device nodes that
    // size their outputs from it.
    if (st.copies_to_device && in_values[0] && in_values[0]->nbytes() <= kMaxMirroredBytes) {
      // A copy of its bytes: the host value itself may sit in the arena,
      // whose bytes later steps reuse.
      if (run_mirror_.size() < slots_.size()) run_mirror_.resize(slots_.size());
      Tensor& m = run_mirror_[size_t(st.out_slots[0])];
      const Tensor& v = *in_values[0];
      if (!m.defined() || m.dtype() != v.dtype() || m.dims() != v.dims()) m = Tensor::empty(v.dtype(), v.dims());
      if (v.nbytes()) std::memcpy(m.raw(), v.raw(), v.nbytes());
    }
    check_outputs_after(st, given);
    for (size_t o = 0; o < st.out_slots.size(); ++o)
      if (int s = st.out_slots[o]; s >= 0 && slots_[size_t(s)].buffer())
        CB_CHECK(slots_[size_t(s)].device() == st.out_device,
                 n.describe() << ": its kernel left output '" << n.outputs[o]->name << "' on "
                              << slots_[size_t(s)].device().str() << ", expected " << st.out_device.str());
    for (int s : st.free_after) slots_[size_t(s)] = Tensor();
  }
  if (device_backend_) device_backend_->synchronize();
  std::vector<Tensor> outs;
  for (int s : output_slots_) {
    outs.push_back(slots_[size_t(s)]);
    Tensor& t = outs.back();
    if (memories_[0].arena && t.buffer() == memories_[0].arena) t = t.clone();  // never hand arena bytes out
  }
  // Drop references so the pool can reuse everything but the returned outputs.
  for (size_t s = 0; s < slots_.size(); ++s)
    if (!is_constant_slot_[s]) slots_[s] = Tensor();
  for (Tensor& t : device_feeds_) t = Tensor();
  finish_run();
  if (opts_.profile) {
    auto& p = profile_["(runtime, outside kernels)"];
    p.calls++;
    p.ms += std::chrono::duration<double, std::milli>(Clock::now() - run_start).count() - kernel_ms;
  }
  return outs;
}

}  // namespace cb
