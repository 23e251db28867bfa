#include "train/tokfsm_eval.h"

#include <algorithm>
#include <cmath>

#include "ir/graph_clone.h"
#include "support/error.h"
#include "support/rng.h"
#include "tools/generate.h"
#include "train/training_graph.h"

namespace cb {

LanguageModel::LanguageModel(std::shared_ptr<const Graph> model, const Backend& backend, int num_threads)
    : graph_(std::move(model)), backend_(backend.name()), num_threads_(num_threads) {
  CompileOptions co;
  co.num_threads = num_threads;
  exe_ = Executable::compile(graph_, backend, co);
}

namespace {

// softmax(logits[0..V)) in double precision.
std::vector<double> softmax(const float* l, int64_t V) {
  std::vector<double> p(static_cast<size_t>(V));
  double mx = l[0], sum = 0;
  for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(l[v]));
  for (int64_t v = 0; v < V; ++v) sum += p[size_t(v)] = std::exp(double(l[v]) - mx);
  for (double& x : p) x /= sum;
  return p;
}

// The token whose cumulative probability first exceeds a uniform draw.
int64_t draw(const std::vector<double>& probs, Rng& rng) {
  double u = rng.uniform_double(), acc = 0;
  for (size_t v = 0; v < probs.size(); ++v)
    if (u < (acc += probs[v])) return int64_t(v);
  return int64_t(probs.size()) - 1;
}

}  // namespace

std::vector<std::vector<double>> LanguageModel::next_token_probs(const std::vector<std::vector<int64_t>>& prefixes) {
  CB_CHECK(!prefixes.empty() && !prefixes[0].empty(), "next_token_probs: empty prefixes");
  const int64_t B = int64_t(prefixes.size()), T = int64_t(prefixes[0].size());
  Tensor ids = Tensor::zeros(DType::i64, {B, T});
  for (int64_t b = 0; b < B; ++b) {
    CB_CHECK(int64_t(prefixes[size_t(b)].size()) == T, "next_token_probs: prefixes of different lengths");
    std::copy(prefixes[size_t(b)].begin(), prefixes[size_t(b)].end(), ids.data<int64_t>() + b * T);
  }
  Tensor logits = exe_->run(causal_lm_feeds(*graph_, ids)).at(0);
  const int64_t V = logits.dim(2);
  std::vector<std::vector<double>> out;
  for (int64_t b = 0; b < B; ++b) out.push_back(softmax(logits.data<float>() + (b * T + T - 1) * V, V));
  return out;
}

std::vector<std::vector<int64_t>> LanguageModel::sample(int64_t count, int64_t length,
                                                        const std::vector<int64_t>& prompt, uint64_t seed) {
  CB_CHECK(!prompt.empty() && int64_t(prompt.size()) <= length, "sample: bad prompt length");
  std::vector<std::vector<int64_t>> seqs(size_t(count), prompt);
  if (count == 0 || int64_t(prompt.size()) == length) return seqs;
  std::vector<Rng> rngs;
  for (int64_t i = 0; i < count; ++i) rngs.push_back(Rng::derive(seed, 7, uint64_t(i)));
  tools::GeneratorOptions o;
  o.context = length;  // the mask tables cover the samples' length, also for rotary models
  o.initial_capacity = length;
  o.backend = backend_;
  o.threads = num_threads_;
  tools::Generator gen(clone_graph(*graph_), o);
  const std::vector<float>* logits = &gen.prefill_batch(seqs);
  std::vector<int64_t> picks(static_cast<size_t>(count));
  while (true) {
    const int64_t V = gen.vocab();
    for (size_t i = 0; i < seqs.size(); ++i) {
      picks[i] = draw(softmax(logits->data() + int64_t(i) * V, V), rngs[i]);
      seqs[i].push_back(picks[i]);
    }
    if (int64_t(seqs[0].size()) == length) return seqs;
    logits = &gen.step_batch(picks);
  }
}

FsmMetrics evaluate_fsm(LanguageModel& lm, const Fsm& fsm, int64_t samples, int64_t seq_len, uint64_t seed) {
  FsmMetrics m;
  if (samples > 0) m.sampled = token_transition_accuracy(fsm, lm.sample(samples, seq_len, {fsm.special_id()}, seed));
  m.first_transition_accuracy = first_transition_accuracy(
      fsm, [&](const std::vector<std::vector<int64_t>>& p) { return lm.next_token_probs(p); });
  return m;
}

}  // namespace cb
