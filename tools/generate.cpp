#include "tools/generate.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>

#include "ir/codebook.h"
#include "ir/graph_clone.h"
#include "passes/inference_pipeline.h"
#include "passes/kv_cache.h"
#include "passes/last_position_logits.h"
#include "support/error.h"
#include "support/json.h"

namespace cb::tools {

namespace {

// A record position of an intervention, for a call that processes positions
// past..past+n-1: every position and negative (call-relative) positions are
// kept; an absolute position becomes relative to the call, or drops out.
bool remap_position(int64_t& p, int64_t past, int64_t n) {
  if (p == kAll || p < 0) return true;
  if (p < past || p >= past + n) return false;
  p -= past;
  return true;
}

template <class Record>
void remap_records(std::vector<Record>& records, int64_t past, int64_t n) {
  std::vector<Record> kept;
  for (Record r : records)
    if (remap_position(r.position, past, n)) kept.push_back(r);
  records = std::move(kept);
}

// The codebook attributes of every codebook node for a call at (past, n).
std::vector<CodebookAttrs> remapped_attrs(const Graph& g, int64_t past, int64_t n) {
  std::vector<CodebookAttrs> out;
  for (auto& node : g.nodes()) {
    if (!is_codebook_node(*node)) continue;
    CodebookAttrs a = CodebookAttrs::from_node(*node);
    remap_records(a.ablate, past, n);
    remap_records(a.disable_topk, past, n);
    remap_records(a.force, past, n);
    out.push_back(std::move(a));
  }
  return out;
}

std::string records_key(const std::vector<CodebookAttrs>& attrs) {
  std::ostringstream o;
  for (const CodebookAttrs& a : attrs) {
    o << "|";
    for (auto& r : a.ablate) o << "a" << r.group << "," << r.position << "," << r.code << ";";
    for (auto& r : a.disable_topk) o << "d" << r.group << "," << r.position << "," << r.m << ";";
    for (auto& r : a.force) o << "f" << r.group << "," << r.position << "," << r.slot << "," << r.code << ";";
  }
  return o.str();
}

bool has_absolute_positions(const Graph& g) {
  for (auto& node : g.nodes()) {
    if (!is_codebook_node(*node)) continue;
    CodebookAttrs a = CodebookAttrs::from_node(*node);
    auto absolute = [](int64_t p) { return p != kAll && p >= 0; };
    for (auto& r : a.ablate)
      if (absolute(r.position)) return true;
    for (auto& r : a.disable_topk)
      if (absolute(r.position)) return true;
    for (auto& r : a.force)
      if (absolute(r.position)) return true;
  }
  return false;
}

int output_index(const Graph& g, const std::string& name) {
  for (size_t i = 0; i < g.outputs.size(); ++i)
    if (g.outputs[i]->name == name) return int(i);
  return -1;
}

}  // namespace

Generator::Generator(std::shared_ptr<Graph> model, GeneratorOptions opts) : graph_(std::move(model)), opts_(opts) {
  LastPositionLogitsPass last;
  PassManager().run(last, *graph_);
  KvCacheOptions kv_opts;
  kv_opts.context = opts_.context;
  KvCachePass kv(kv_opts);
  PassManager().run(kv, *graph_);
  layers_ = kv.num_layers();
  heads_ = kv.num_heads();
  head_dim_ = kv.head_dim();
  context_ = kv.context();
  for (const Value* in : graph_->inputs) {
    if (in->name == "position_ids") has_position_ids_ = true;
    if (in->name == "attention_mask") has_attention_mask_ = true;
  }
  positional_ = has_absolute_positions(*graph_);
  backend_ = make_backend(opts_.backend);
}

Tensor Generator::in_cache_memory(const Tensor& t) const {
  const Backend& memory = cache_memory();
  if (!t.buffer() || t.device() == memory.device()) return t;
  Tensor there = Tensor::wrap(t.dtype(), t.dims(), memory.allocate(t.nbytes()));
  memory.copy_to_device(t, there);
  return there;
}

Executable& Generator::executable_for(int64_t past, int64_t n) {
  std::vector<CodebookAttrs> attrs;
  std::string key;
  if (positional_) {
    attrs = remapped_attrs(*graph_, past, n);
    key = records_key(attrs);
  }
  auto it = variants_.find(key);
  if (it != variants_.end()) return *it->second;
  std::shared_ptr<Graph> g = graph_;
  if (positional_) {
    g = clone_graph(*graph_);
    size_t i = 0;
    for (auto& node : g->nodes())
      if (is_codebook_node(*node)) attrs[i++].to_node(*node);
  }
  CompileOptions copts;
  copts.num_threads = opts_.threads;
  copts.profile = opts_.profile;
  copts.profile_nodes = opts_.profile_nodes;
  if (opts_.device_backend)  // the new keys and values stay on the device, for its caches
    for (int64_t l = 0; l < layers_; ++l) copts.device_outputs.insert({present_key_name(l), present_value_name(l)});
  std::shared_ptr<Graph> fused = placed_inference_graph(g, opts_.device_backend, copts, opts_.precision);
  return *(variants_[key] = Executable::compile(fused, *backend_, copts));
}

std::map<std::string, OpProfile> Generator::profile() const {
  std::map<std::string, OpProfile> sum;
  for (auto& [key, exe] : variants_)
    for (auto& [op, p] : exe->profile()) {
      sum[op].calls += p.calls;
      sum[op].ms += p.ms;
    }
  return sum;
}

void Generator::ensure_capacity(int64_t needed) {
  if (needed <= capacity_) return;
  int64_t cap = capacity_ ? std::max(needed, 2 * capacity_)
                          : std::max(needed, opts_.initial_capacity > 0 ? opts_.initial_capacity
                                                                        : std::max<int64_t>(16, 2 * needed));
  cap = std::min(cap, context_);
  // Rows of keys (B * H * dh) and blocks of values (B * H), each along the
  // capacity, in the memory of the device that runs the attention.
  const int64_t B = batch_, H = heads_, dh = head_dim_;
  const Backend& memory = cache_memory();
  // Slots past the length must be finite: zeros.
  auto zeros = [&](std::vector<int64_t> dims) { return in_cache_memory(Tensor::zeros(DType::f32, dims)); };
  const size_t f = sizeof(float);
  for (int64_t l = 0; l < layers_; ++l) {
    Tensor k = zeros({B, H, dh, cap}), v = zeros({B, H, cap, dh});
    if (capacity_) {  // keep what the old caches hold
      memory.copy_rows(keys_[size_t(l)], k,
                       {0, size_t(capacity_) * f, 0, size_t(cap) * f, size_t(length_) * f, size_t(B * H * dh)});
      memory.copy_rows(
          values_[size_t(l)], v,
          {0, size_t(capacity_ * dh) * f, 0, size_t(cap * dh) * f, size_t(length_ * dh) * f, size_t(B * H)});
    }
    if (keys_.size() <= size_t(l)) {
      keys_.push_back(k);
      values_.push_back(v);
    } else {
      keys_[size_t(l)] = k;
      values_[size_t(l)] = v;
    }
  }
  if (capacity_) ++growths_;
  capacity_ = cap;
}

const std::vector<float>& Generator::run(const std::vector<int64_t>& ids, int64_t n) {
  const int64_t past = length_, B = batch_;
  CB_CHECK(n > 0, "generate: no tokens to run");
  CB_CHECK(int64_t(ids.size()) == B * n, "generate: " << ids.size() << " tokens for " << B << " rows of " << n);
  CB_CHECK(past + n <= context_,
           "generate: " << past + n << " tokens exceed the model's context of " << context_ << " tokens");
  ensure_capacity(past + n);
  std::map<std::string, Tensor> feeds;
  feeds["input_ids"] = Tensor::from_vector<int64_t>(ids, {B, n});
  feeds[kPastLengthInput] = Tensor::from_vector<int64_t>({past}, {1});
  if (has_position_ids_) {
    std::vector<int64_t> pos(static_cast<size_t>(B * n));
    for (int64_t b = 0; b < B; ++b) std::iota(pos.begin() + b * n, pos.begin() + (b + 1) * n, past);
    feeds["position_ids"] = Tensor::from_vector<int64_t>(pos, {B, n});
  }
  if (has_attention_mask_)
    feeds["attention_mask"] = Tensor::from_vector<int64_t>(std::vector<int64_t>(size_t(B * n), 1), {B, n});
  for (int64_t l = 0; l < layers_; ++l) {
    feeds[past_key_name(l)] = keys_[size_t(l)];
    feeds[past_value_name(l)] = values_[size_t(l)];
  }
  Executable& exe = executable_for(past, n);
  std::vector<Tensor> outs = exe.run(feeds);
  const Graph& g = exe.graph();
  const int64_t H = heads_, dh = head_dim_, C = capacity_;
  for (int64_t l = 0; l < layers_; ++l) {
    const Tensor& pk = outs[size_t(output_index(g, present_key_name(l)))];
    const Tensor& pv = outs[size_t(output_index(g, present_value_name(l)))];
    CB_CHECK(pk.numel() == B * H * dh * n && pv.numel() == B * H * dh * n,
             "generate: layer " << l << " returned keys " << dims_str(pk.dims()) << " and values "
                                << dims_str(pv.dims()) << " for " << B << " x " << n << " tokens");
    // The new columns into the caches, where they live (present.* normally
    // stay on the device; one made on the host goes over first).
    const size_t f = sizeof(float);
    const Tensor pk_there = in_cache_memory(pk), pv_there = in_cache_memory(pv);
    cache_memory().copy_rows(pk_there, keys_[size_t(l)],
                             {0, size_t(n) * f, size_t(past) * f, size_t(C) * f, size_t(n) * f, size_t(B * H * dh)});
    cache_memory().copy_rows(
        pv_there, values_[size_t(l)],
        {0, size_t(n * dh) * f, size_t(past * dh) * f, size_t(C * dh) * f, size_t(n * dh) * f, size_t(B * H)});
  }
  int li = output_index(g, "logits");
  if (li < 0)
    for (size_t i = 0; i < outs.size() && li < 0; ++i)
      if (outs[i].rank() == 3 && outs[i].dtype() == DType::f32 && g.outputs[i]->name.rfind("present.", 0) != 0)
        li = int(i);
  CB_CHECK(li >= 0, "generate: the model has no logits output");
  const Tensor& logits = outs[size_t(li)];
  CB_CHECK(logits.dim(0) == B, "generate: logits " << dims_str(logits.dims()) << " for " << B << " rows");
  const int64_t vocab = logits.dim(2), T = logits.dim(1);
  logits_.resize(size_t(B * vocab));
  for (int64_t b = 0; b < B; ++b) {
    const float* last = logits.data<float>() + (b * T + T - 1) * vocab;
    std::copy(last, last + vocab, logits_.begin() + b * vocab);
  }
  vocab_ = vocab;
  length_ = past + n;
  return logits_;
}

const std::vector<float>& Generator::prefill(const std::vector<int64_t>& ids) { return prefill_batch({ids}); }

const std::vector<float>& Generator::step(int64_t token) { return step_batch({token}); }

const std::vector<float>& Generator::prefill_batch(const std::vector<std::vector<int64_t>>& rows) {
  CB_CHECK(!rows.empty() && !rows[0].empty(), "generate: the prompt has no tokens");
  const int64_t n = int64_t(rows[0].size());
  std::vector<int64_t> ids;
  for (const std::vector<int64_t>& r : rows) {
    CB_CHECK(int64_t(r.size()) == n,
             "generate: a batch's prompts must have one length, got " << n << " and " << r.size() << " tokens");
    ids.insert(ids.end(), r.begin(), r.end());
  }
  if (int64_t(rows.size()) != batch_) {  // new caches for the new batch size
    keys_.clear();
    values_.clear();
    capacity_ = 0;
    batch_ = int64_t(rows.size());
  }
  length_ = 0;
  return run(ids, n);
}

const std::vector<float>& Generator::step_batch(const std::vector<int64_t>& tokens) {
  CB_CHECK(length_ > 0, "generate: step() before prefill()");
  CB_CHECK(int64_t(tokens.size()) == batch_, "generate: " << tokens.size() << " tokens for a batch of " << batch_);
  return run(tokens, 1);
}

int64_t default_generation_context(const Graph& model) {
  if (position_table_rows(model) > 0) return -1;
  // A model imported from (or trained with) a Hugging Face config says it.
  auto config = model.metadata.find("hf_config");
  if (config != model.metadata.end()) {
    try {
      Json c = json_parse(config->second, "hf_config");
      const Json* n = c.is_object() ? c.find("max_position_embeddings") : nullptr;
      if (n && n->is_integer() && n->as_int() > 0) return n->as_int();
    } catch (const Error&) {  // not ours to check: the default below
    }
  }
  constexpr int64_t kRotaryContext = 2048;
  return kRotaryContext;
}

Sampler::Sampler(SamplingOptions o) : o_(o), rng_(o.seed) {
  CB_CHECK(o_.temperature >= 0 && std::isfinite(o_.temperature),
           "--temperature must be >= 0 (0: greedy), got " << o_.temperature);
  CB_CHECK(o_.top_k >= 0, "--top-k must be >= 0 (0: no limit), got " << o_.top_k);
  CB_CHECK(o_.top_p > 0 && o_.top_p <= 1, "--top-p must be in (0, 1], got " << o_.top_p);
}

int64_t Sampler::next(const std::vector<float>& logits) { return next(logits.data(), int64_t(logits.size())); }

int64_t Sampler::next(const float* logits, int64_t V) {
  CB_CHECK(V > 0, "sampling from empty logits");
  if (o_.temperature == 0) return int64_t(std::max_element(logits, logits + V) - logits);
  // Candidates, most likely first when a filter needs the order (ties: lower id).
  std::vector<int64_t> ids(static_cast<size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  auto better = [&](int64_t a, int64_t b) {
    return logits[size_t(a)] != logits[size_t(b)] ? logits[size_t(a)] > logits[size_t(b)] : a < b;
  };
  if (o_.top_k > 0 && o_.top_k < V) {
    std::partial_sort(ids.begin(), ids.begin() + o_.top_k, ids.end(), better);
    ids.resize(size_t(o_.top_k));
  } else if (o_.top_p < 1) {
    std::sort(ids.begin(), ids.end(), better);
  }
  const double mx = logits[size_t(*std::max_element(
      ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return logits[size_t(a)] < logits[size_t(b)]; }))];
  std::vector<double> p(ids.size());
  double z = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    z += (p[i] = std::exp((double(logits[size_t(ids[i])]) - mx) / o_.temperature));
  if (o_.top_p < 1) {
    double cum = 0;
    size_t keep = 0;
    while (keep < p.size() && cum < o_.top_p * z) cum += p[keep++];
    p.resize(std::max<size_t>(keep, 1));
    z = std::accumulate(p.begin(), p.end(), 0.0);
  }
  double u = rng_.uniform_double() * z, cum = 0;
  for (size_t i = 0; i < p.size(); ++i)
    if ((cum += p[i]) > u) return ids[i];
  return ids[p.size() - 1];
}

}  // namespace cb::tools
