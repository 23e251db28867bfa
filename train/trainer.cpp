#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <span>

#include "passes/bf16_matmuls.h"
#include "passes/place_devices.h"
#include "support/error.h"
#include "support/rng.h"
#include "train/parameters.h"

namespace cb {
namespace {

using Clock = std::chrono::steady_clock;

std::string usage_log_key(const std::string& site) { return "usage.log/" + site; }
std::string usage_replace_key(const std::string& site) { return "usage.replace/" + site; }
std::string mse_sum_key(const std::string& site) { return "stats.mse_sum/" + site; }
std::string replaced_key(const std::string& site) { return "stats.replaced/" + site; }
constexpr const char* kWindowStepsKey = "stats.window_steps";

Tensor f64_scalar(double v) { return Tensor::scalar<double>(v); }

double scalar_of(const Tensor& t) { return t.get_double(0); }

// Per (member, code): how many of `ids` [.., G, k] selected it.
void add_counts(const Tensor& ids, Tensor& counts) {
  int64_t G = counts.dim(0), K = counts.dim(1);
  CB_CHECK(ids.rank() == 4 && ids.dim(2) == G,
           "codebook ids " << dims_str(ids.dims()) << " do not match " << G << " members");
  int64_t k = ids.dim(3), tokens = ids.dim(0) * ids.dim(1);
  const int64_t* id = ids.data<int64_t>();
  int64_t* c = counts.data<int64_t>();
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t j = 0; j < k; ++j) {
        int64_t code = id[(t * G + g) * k + j];
        if (code >= 0 && code < K) ++c[g * K + code];
      }
}

// The step graph's mse output is a mean of per-member sums over d components.
double member_width(const CodebookOutputs& c) { return double(c.width / c.groups); }

// Adds the sums of one batch's u and y [B, T, G, d] to `s` (sq_centered is
// completed at the end from `component_sums`, the per-component sums of u).
void add_reconstruction(const Tensor& u, const Tensor& y, CodebookStats& s, std::vector<double>& component_sums) {
  int64_t D = u.dim(2) * u.dim(3), tokens = u.numel() / D;
  component_sums.resize(size_t(D), 0.0);
  const float* pu = u.data<float>();
  const float* py = y.data<float>();
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < D; ++j) {
      double a = pu[t * D + j], e = a - double(py[t * D + j]);
      s.sq_error += e * e;
      s.sq_norm += a * a;
      component_sums[size_t(j)] += a;
    }
}

}  // namespace

Trainer::Trainer(ModelFactory model, std::shared_ptr<const TokenDataset> data, const TrainerOptions& opts,
                 const Backend& backend)
    : model_(std::move(model)), data_(std::move(data)), opts_(opts) {
  CB_CHECK(opts_.batch_size > 0 && opts_.eval_batch_size > 0, "batch sizes must be positive");
  CB_CHECK(opts_.batch_size % ranks() == 0, "training_args.per_device_train_batch_size: the batch of "
                                                << opts_.batch_size << " (the global batch) does not split evenly over "
                                                << ranks() << " ranks");
  StepGraphOptions go = opts_.graph;
  go.codebook_inputs = opts_.replace_after_steps > 0;
  go.separate_optimizer = ranks() > 1;
  train_ = build_train_graph(model_(), go);
  go.codebook_inputs = false;
  eval_ = build_eval_graph(model_(), go);
  if (opts_.precision == Precision::bf16)
    for (Graph* g : {train_.graph.get(), eval_.graph.get()}) {
      Bf16MatMulsPass bf16;
      PassManager().run(bf16, *g);
    }
  CompileOptions co;
  co.num_threads = opts_.num_threads;
  co.profile = opts_.profile;
  co.profile_nodes = opts_.profile_nodes;
  if (const Backend* device = opts_.device_backend) {
    // What the device supports runs there; the updated parameters and
    // optimizer states stay there, fed back without copies.
    for (Graph* g : {train_.graph.get(), eval_.graph.get(), train_.optimizer.get()})
      if (g) place_devices(*g, placement_target(*device));
    co.device_backend = device;
  }
  CompileOptions train_co = co;
  for (auto& [input, output] : train_.updates) train_co.device_outputs.insert(output);
  train_exe_ = Executable::compile(train_.graph, backend, train_co);
  eval_exe_ = Executable::compile(eval_.graph, backend, co);
  std::vector<std::string> outs = train_exe_->output_names();
  for (size_t i = 0; i < outs.size(); ++i) train_output_index_[outs[i]] = int(i);
  if (train_.optimizer) {
    optimizer_exe_ = Executable::compile(train_.optimizer, backend, train_co);
    outs = optimizer_exe_->output_names();
    for (size_t i = 0; i < outs.size(); ++i) optimizer_output_index_[outs[i]] = int(i);
  }

  // The initial state: parameters copied (the model's may be read-only
  // mappings), zero optimizer states and counters.
  for (auto& [name, t] : train_.initial) state_[name] = t.clone();
  for (auto& c : train_.codebooks) {
    state_[usage_log_key(c.site)] = Tensor::zeros(DType::i64, {c.groups, c.num_codes});
    state_[usage_replace_key(c.site)] = Tensor::zeros(DType::i64, {c.groups, c.num_codes});
    state_[mse_sum_key(c.site)] = f64_scalar(0);
    state_[replaced_key(c.site)] = Tensor::scalar<int64_t>(0);
  }
  state_[kWindowStepsKey] = Tensor::scalar<int64_t>(0);
  // Every rank computed the same initial state (k-means included) from the
  // same seeds; rank 0's is sent anyway, so nothing depends on that.
  if (ranks() > 1) broadcast_state();
}

void Trainer::broadcast_state() {
  size_t bytes = 0;
  for (auto& [name, t] : state_) bytes += t.nbytes();
  std::vector<std::byte> buffer(bytes);
  size_t at = 0;
  for (auto& [name, t] : state_) {
    std::memcpy(buffer.data() + at, t.raw(), t.nbytes());
    at += t.nbytes();
  }
  opts_.collective->broadcast(buffer, "the initial state");
  at = 0;
  for (auto& [name, t] : state_) {
    std::memcpy(t.raw(), buffer.data() + at, t.nbytes());
    at += t.nbytes();
  }
}

Tensor& Trainer::host_state(const std::string& name) const {
  Tensor& t = state_.at(name);
  if (t.buffer() && !t.device().is_host()) {
    Tensor host = Tensor::empty(t.dtype(), t.dims());
    opts_.device_backend->copy_to_host(t, host);
    t = std::move(host);
  }
  return t;
}

const std::map<std::string, Tensor>& Trainer::state() const {
  for (auto& [name, t] : state_) host_state(name);
  return state_;
}

std::map<std::string, OpProfile> Trainer::train_profile() const {
  std::map<std::string, OpProfile> out = train_exe_->profile();
  if (optimizer_exe_)
    for (auto& [op, p] : optimizer_exe_->profile()) {
      out[op].calls += p.calls;
      out[op].ms += p.ms;
    }
  return out;
}

void Trainer::clear_train_profile() {
  train_exe_->clear_profile();
  if (optimizer_exe_) optimizer_exe_->clear_profile();
}

int64_t Trainer::num_trained_parameters() const {
  int64_t n = 0;
  for (auto& p : train_.parameters) n += state_.at(p).numel();
  return n;
}

std::map<std::string, Tensor> Trainer::feeds(const StepGraph& g, const Tensor& input_ids) const {
  std::map<std::string, Tensor> in = causal_lm_feeds(g.data_inputs, input_ids);
  for (const std::string& p : g.parameters) in[p] = state_.at(p);
  return in;
}

StepMetrics Trainer::train_step() {
  auto t0 = Clock::now();
  const int64_t rows = opts_.batch_size / ranks(), first_row = (opts_.collective ? opts_.collective->rank() : 0) * rows;
  Tensor ids = data_->train_rows(step_, opts_.batch_size, first_row, rows);
  std::map<std::string, Tensor> in = feeds(train_, ids);
  float lr = opts_.schedule.at(step_);
  // The update's inputs: with a separate optimizer graph, its own feeds.
  std::map<std::string, Tensor> optimizer_in;
  std::map<std::string, Tensor>& update_in = train_.optimizer ? optimizer_in : in;
  for (auto& [input, output] : train_.updates) update_in[input] = state_.at(input);
  update_in[kStepInput] = Tensor::scalar<float>(float(step_ + 1));
  update_in[kLearningRateInput] = Tensor::scalar<float>(lr);
  std::vector<Tensor> out = train_exe_->run(in);
  auto at = [&](const std::string& name) -> const Tensor& { return out.at(size_t(train_output_index_.at(name))); };
  std::vector<Tensor> optimizer_out;
  auto t_exchange = Clock::now();
  if (train_.optimizer) add_mean_gradients(out, optimizer_in);
  collective_seconds_ += std::chrono::duration<double>(Clock::now() - t_exchange).count();
  auto updated = [&](const std::string& name) -> const Tensor& {
    return train_.optimizer ? optimizer_out.at(size_t(optimizer_output_index_.at(name))) : at(name);
  };

  // This step's loss, accuracy and reconstruction errors (means over the
  // ranks) and code usage (sums over the ranks).
  std::vector<double> means = {scalar_of(at(kLossOutput)), scalar_of(at(kAccuracyOutput))};
  std::vector<Tensor> counts;
  size_t count_values = 0;
  for (auto& c : train_.codebooks) {
    means.push_back(scalar_of(at(c.mse)));
    counts.push_back(Tensor::zeros(DType::i64, {c.groups, c.num_codes}));
    add_counts(at(c.ids), counts.back());
    count_values += size_t(counts.back().numel());
  }
  if (ranks() > 1) {
    t_exchange = Clock::now();
    std::string what = "metrics of step " + std::to_string(step_ + 1);
    opts_.collective->allreduce_sum(std::span<double>(means), what);
    for (double& v : means) v /= double(ranks());
    std::vector<int64_t> flat;
    flat.reserve(count_values);
    for (const Tensor& t : counts) flat.insert(flat.end(), t.data<int64_t>(), t.data<int64_t>() + t.numel());
    opts_.collective->allreduce_sum(std::span<int64_t>(flat), "code usage of step " + std::to_string(step_ + 1));
    size_t from = 0;
    for (Tensor& t : counts) {
      std::copy_n(flat.data() + from, t.numel(), t.data<int64_t>());
      from += size_t(t.numel());
    }
    collective_seconds_ += std::chrono::duration<double>(Clock::now() - t_exchange).count();
  }
  if (train_.optimizer) optimizer_out = optimizer_exe_->run(optimizer_in);

  ++step_;
  for (auto& [input, output] : train_.updates) state_[input] = updated(output);
  for (size_t i = 0; i < train_.codebooks.size(); ++i) {
    const std::string& site = train_.codebooks[i].site;
    for (const std::string& key : {usage_log_key(site), usage_replace_key(site)}) {
      int64_t* window = state_[key].data<int64_t>();
      const int64_t* step_counts = counts[i].data<int64_t>();
      for (int64_t j = 0; j < counts[i].numel(); ++j) window[j] += step_counts[j];
    }
    state_[mse_sum_key(site)] = f64_scalar(scalar_of(state_[mse_sum_key(site)]) + means[2 + i]);
  }
  state_[kWindowStepsKey] = Tensor::scalar<int64_t>(state_[kWindowStepsKey].get_int(0) + 1);
  if (opts_.replace_after_steps > 0 && step_ % opts_.replace_after_steps == 0) replace_dead_codes(out);

  StepMetrics m;
  m.loss = means[0];
  m.accuracy = means[1];
  m.grad_norm = scalar_of(updated(kGradNormOutput));
  m.learning_rate = lr;
  m.tokens = ids.numel() * ranks();
  m.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return m;
}

void Trainer::add_mean_gradients(const std::vector<Tensor>& outputs, std::map<std::string, Tensor>& into) {
  // One sum for all gradients: one buffer, one collective.
  size_t total = 0;
  std::vector<const Tensor*> grads;
  for (const std::string& name : train_.gradients) {
    grads.push_back(&outputs.at(size_t(train_output_index_.at(name))));
    total += size_t(grads.back()->numel());
  }
  std::vector<float> flat(total);
  size_t at = 0;
  for (const Tensor* g : grads) {
    std::copy_n(g->data<float>(), g->numel(), flat.data() + at);
    at += size_t(g->numel());
  }
  opts_.collective->allreduce_sum(std::span<float>(flat), "gradients of step " + std::to_string(step_ + 1));
  const float scale = 1.f / float(ranks());
  at = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    Tensor mean = Tensor::empty(DType::f32, grads[i]->dims());
    for (int64_t j = 0; j < mean.numel(); ++j) mean.data<float>()[j] = flat[at + size_t(j)] * scale;
    at += size_t(mean.numel());
    into[train_.gradients[i]] = mean;
  }
}

void Trainer::replace_dead_codes(const std::vector<Tensor>& outputs) {
  // Per member with dead codes: the codes, and the whole batch's rows they
  // get (a seeded permutation of the global row order, which is rank after
  // rank); the same on every rank (global counts, shared seeds).
  struct MemberReplacement {
    size_t codebook;
    int64_t member;
    std::vector<int64_t> dead, rows;
    Rng rng;           // goes on to draw the noise
    size_t picked_at;  // where its rows are in `picked`
  };
  std::vector<MemberReplacement> plan;
  size_t picked_floats = 0;
  for (size_t ci = 0; ci < train_.codebooks.size(); ++ci) {
    const CodebookOutputs& c = train_.codebooks[ci];
    const Tensor& counts = state_.at(usage_replace_key(c.site));
    const Tensor& u = outputs.at(size_t(train_output_index_.at(c.input)));  // this rank's [B / N, T, G, d]
    int64_t G = c.groups, K = c.num_codes, d = u.dim(3), N = u.numel() / (G * d) * ranks();
    for (int64_t g = 0; g < G; ++g) {
      std::vector<int64_t> dead;
      for (int64_t code = 0; code < K; ++code)
        if (counts.data<int64_t>()[g * K + code] == 0) dead.push_back(code);
      if (dead.empty()) continue;
      MemberReplacement r{ci,
                          g,
                          std::move(dead),
                          std::vector<int64_t>(size_t(N)),
                          Rng::derive(opts_.seed, uint64_t(step_), uint64_t(ci) * 65536 + uint64_t(g)),
                          picked_floats};
      std::iota(r.rows.begin(), r.rows.end(), 0);
      r.rng.shuffle(r.rows);
      r.rows.resize(std::min(r.dead.size(), r.rows.size()));  // the rows used (tiled when fewer than dead codes)
      picked_floats += r.rows.size() * size_t(d);
      plan.push_back(std::move(r));
    }
  }
  // The picked rows, d floats each: each rank copies those it holds (zeros
  // elsewhere), so the sum over the ranks holds them all. Only these rows
  // travel, never the whole batch.
  std::vector<float> picked(picked_floats, 0.f);
  const int64_t rank = opts_.collective ? opts_.collective->rank() : 0;
  for (const MemberReplacement& r : plan) {
    const CodebookOutputs& c = train_.codebooks[r.codebook];
    const Tensor& u = outputs.at(size_t(train_output_index_.at(c.input)));
    int64_t G = c.groups, d = u.dim(3), local_rows = u.numel() / (G * d);
    for (size_t i = 0; i < r.rows.size(); ++i)
      if (r.rows[i] / local_rows == rank)
        std::copy_n(u.data<float>() + ((r.rows[i] - rank * local_rows) * G + r.member) * d, d,
                    picked.data() + r.picked_at + i * size_t(d));
  }
  if (ranks() > 1) {
    auto t0 = Clock::now();
    opts_.collective->allreduce_sum(std::span<float>(picked), "rows for dead codes at step " + std::to_string(step_));
    collective_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  std::vector<int64_t> replaced(train_.codebooks.size(), 0);
  for (MemberReplacement& r : plan) {
    const CodebookOutputs& c = train_.codebooks[r.codebook];
    Tensor& codes = host_state(c.codes);  // [G, K, d], an output of the last step: ours to write
    int64_t K = c.num_codes, d = codes.dim(2), g = r.member;
    std::vector<float> noise(static_cast<size_t>(d));
    for (size_t i = 0; i < r.dead.size(); ++i) {
      const float* row = picked.data() + r.picked_at + (i % r.rows.size()) * size_t(d);
      float* dst = codes.data<float>() + (g * K + r.dead[i]) * d;
      double norm = 0;
      for (int64_t j = 0; j < d; ++j) norm += double(row[j]) * row[j];
      float scale = float(opts_.replace_rho * std::sqrt(norm));
      r.rng.fill_normal(noise.data(), d);
      for (int64_t j = 0; j < d; ++j) dst[j] = row[j] + scale * noise[size_t(j)];
      // Fresh codes restart their optimizer moments.
      for (const char* suffix : {".adam_m", ".adam_v", ".momentum"}) {
        if (state_.count(c.codes + suffix))
          std::fill_n(host_state(c.codes + suffix).data<float>() + (g * K + r.dead[i]) * d, d, 0.f);
      }
    }
    replaced[r.codebook] += int64_t(r.dead.size());
  }
  for (size_t ci = 0; ci < train_.codebooks.size(); ++ci) {
    const std::string& site = train_.codebooks[ci].site;
    Tensor& counts = state_[usage_replace_key(site)];
    std::fill_n(counts.data<int64_t>(), counts.numel(), 0);
    state_[replaced_key(site)] = Tensor::scalar<int64_t>(state_[replaced_key(site)].get_int(0) + replaced[ci]);
  }
}

std::vector<CodebookStats> Trainer::take_codebook_stats() {
  std::vector<CodebookStats> out;
  int64_t steps = state_[kWindowStepsKey].get_int(0);
  for (auto& c : train_.codebooks) {
    CodebookStats s;
    s.site = c.site;
    Tensor& counts = state_[usage_log_key(c.site)];
    int64_t dead = 0;
    for (int64_t i = 0; i < counts.numel(); ++i) dead += counts.data<int64_t>()[i] == 0;
    s.dead_fraction = double(dead) / double(counts.numel());
    s.mse = steps > 0 ? scalar_of(state_[mse_sum_key(c.site)]) / double(steps) / member_width(c) : 0.0;
    if (int64_t r = opts_.replace_after_steps; r > 0) s.replacements = step_ / r - (step_ - steps) / r;
    const Tensor& codes = host_state(c.codes);
    int64_t rows = codes.dim(0) * codes.dim(1), d = codes.dim(2);
    double sum = 0, mx = 0;
    for (int64_t r = 0; r < rows; ++r) {
      double n2 = 0;
      for (int64_t j = 0; j < d; ++j) n2 += double(codes.data<float>()[r * d + j]) * codes.data<float>()[r * d + j];
      sum += std::sqrt(n2);
      mx = std::max(mx, std::sqrt(n2));
    }
    s.mean_code_norm = sum / double(rows);
    s.max_code_norm = mx;
    s.replaced = state_[replaced_key(c.site)].get_int(0);
    std::fill_n(counts.data<int64_t>(), counts.numel(), 0);
    state_[mse_sum_key(c.site)] = f64_scalar(0);
    state_[replaced_key(c.site)] = Tensor::scalar<int64_t>(0);
    out.push_back(s);
  }
  state_[kWindowStepsKey] = Tensor::scalar<int64_t>(0);
  return out;
}

EvalMetrics evaluate_step_graph(Executable& exe, const StepGraph& graph, const std::map<std::string, Tensor>& params,
                                const TokenDataset& data, int64_t batch_size, int64_t max_samples,
                                Collective* collective) {
  auto t0 = Clock::now();
  EvalMetrics m;
  int64_t n = data.eval_size();
  if (max_samples >= 0) n = std::min(n, max_samples);
  CB_CHECK(n > 0, "the dataset has no evaluation samples");
  std::vector<std::string> outs = exe.output_names();
  auto idx = [&](const std::string& name) {
    for (size_t i = 0; i < outs.size(); ++i)
      if (outs[i] == name) return i;
    throw Error("eval graph has no output " + name);
  };
  std::vector<Tensor> counts;
  for (auto& c : graph.codebooks) counts.push_back(Tensor::zeros(DType::i64, {c.groups, c.num_codes}));
  std::vector<double> mse(graph.codebooks.size(), 0.0);
  std::vector<CodebookStats> recon(graph.codebooks.size());
  std::vector<std::vector<double>> component_sums(graph.codebooks.size());
  double loss_sum = 0, acc_sum = 0;
  int64_t predictions = 0;
  const int64_t rank = collective ? collective->rank() : 0, ranks = collective ? collective->size() : 1;
  for (int64_t first = rank * batch_size; first < n; first += ranks * batch_size) {
    int64_t count = std::min(batch_size, n - first);
    Tensor ids = data.eval_batch(first, count);
    std::map<std::string, Tensor> in = causal_lm_feeds(graph.data_inputs, ids);
    for (const std::string& p : graph.parameters) in[p] = params.at(p);
    std::vector<Tensor> out = exe.run(in);
    // Token-weighted means over the batches (the loss is a mean over B*(T-1)).
    int64_t preds = count * (ids.dim(1) - 1);
    loss_sum += scalar_of(out[idx(kLossOutput)]) * double(preds);
    acc_sum += scalar_of(out[idx(kAccuracyOutput)]) * double(preds);
    predictions += preds;
    m.tokens += ids.numel();
    for (size_t i = 0; i < graph.codebooks.size(); ++i) {
      add_counts(out[idx(graph.codebooks[i].ids)], counts[i]);
      mse[i] += scalar_of(out[idx(graph.codebooks[i].mse)]) * double(count);
      if (!graph.codebooks[i].output.empty())
        add_reconstruction(out[idx(graph.codebooks[i].input)], out[idx(graph.codebooks[i].output)], recon[i],
                           component_sums[i]);
    }
  }
  if (ranks > 1) {
    // Every sum over the ranks, in one buffer of doubles (counts are exact
    // in a double far beyond any evaluation set's size).
    std::vector<double> sums = {loss_sum, acc_sum, double(predictions), double(m.tokens)};
    for (size_t i = 0; i < graph.codebooks.size(); ++i) {
      sums.insert(sums.end(), {mse[i], recon[i].sq_error, recon[i].sq_norm});
      component_sums[i].resize(size_t(graph.codebooks[i].width), 0.0);
      sums.insert(sums.end(), component_sums[i].begin(), component_sums[i].end());
      for (int64_t j = 0; j < counts[i].numel(); ++j) sums.push_back(double(counts[i].data<int64_t>()[j]));
    }
    collective->allreduce_sum(std::span<double>(sums), "evaluation sums");
    size_t at = 0;
    loss_sum = sums[at++];
    acc_sum = sums[at++];
    predictions = int64_t(sums[at++]);
    m.tokens = int64_t(sums[at++]);
    for (size_t i = 0; i < graph.codebooks.size(); ++i) {
      mse[i] = sums[at++];
      recon[i].sq_error = sums[at++];
      recon[i].sq_norm = sums[at++];
      for (double& c : component_sums[i]) c = sums[at++];
      for (int64_t j = 0; j < counts[i].numel(); ++j) counts[i].data<int64_t>()[j] = int64_t(sums[at++]);
    }
  }
  m.samples = n;
  m.loss = loss_sum / double(predictions);
  m.accuracy = acc_sum / double(predictions);
  m.perplexity = m.loss > 700 ? INFINITY : std::exp(m.loss);
  for (size_t i = 0; i < graph.codebooks.size(); ++i) {
    CodebookStats s;
    s.site = graph.codebooks[i].site;
    int64_t dead = 0;
    for (int64_t j = 0; j < counts[i].numel(); ++j) dead += counts[i].data<int64_t>()[j] == 0;
    s.dead_fraction = double(dead) / double(counts[i].numel());
    s.mse = mse[i] / double(n) / member_width(graph.codebooks[i]);
    if (!graph.codebooks[i].output.empty()) {
      // sum |u - mean|^2 = sum |u|^2 - N |mean|^2
      double mean_sq = 0;
      double N = double(m.tokens);
      for (double c : component_sums[i]) mean_sq += (c / N) * (c / N);
      s.sq_error = recon[i].sq_error;
      s.sq_norm = recon[i].sq_norm;
      s.sq_centered = recon[i].sq_norm - N * mean_sq;
      s.has_reconstruction = true;
    }
    m.codebooks.push_back(s);
  }
  m.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return m;
}

EvalMetrics Trainer::evaluate() {
  return evaluate_step_graph(*eval_exe_, eval_, state_, *data_, opts_.eval_batch_size, opts_.max_eval_samples,
                             opts_.collective);
}

void Trainer::load_state(const std::map<std::string, Tensor>& state, int64_t step) {
  for (auto& [name, t] : state_) {
    auto it = state.find(name);
    CB_CHECK(it != state.end(), "the saved state has no tensor '" << name << "'");
    CB_CHECK(it->second.dtype() == t.dtype() && it->second.dims() == t.dims(),
             "saved tensor '" << name << "' is " << dtype_name(it->second.dtype()) << dims_str(it->second.dims())
                              << ", the run expects " << dtype_name(t.dtype()) << dims_str(t.dims()));
  }
  for (auto& [name, t] : state) {
    CB_CHECK(state_.count(name), "the saved state has a tensor '" << name << "' this run does not use");
    state_[name] = t.clone();
  }
  step_ = step;
}

void Trainer::continue_from(const Trainer& earlier) {
  for (auto& [name, t] : earlier.state()) {
    // Log-window statistics restart: they describe this trainer's codebooks.
    if (name.rfind("stats.", 0) == 0 || name.rfind("usage.", 0) == 0) continue;
    auto it = state_.find(name);
    if (it != state_.end() && it->second.dtype() == t.dtype() && it->second.dims() == t.dims()) it->second = t.clone();
  }
  step_ = earlier.step_;
}

std::shared_ptr<Graph> Trainer::trained_model() const {
  std::shared_ptr<Graph> g = model_();
  std::map<std::string, Tensor> params;
  for (auto& p : train_.parameters) params[p] = host_state(p);
  assign_constants(*g, params);
  return g;
}

}  // namespace cb
