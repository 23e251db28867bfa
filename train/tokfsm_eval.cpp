#include "train/tokfsm_eval.h"

#include <cmath>

#include "support/error.h"
#include "support/rng.h"
#include "train/training_graph.h"

namespace cb {

LanguageModel::LanguageModel(std::shared_ptr<const Graph> model, const Backend& backend, int num_threads)
    : graph_(std::move(model)) {
  CompileOptions co;
  co.num_threads = num_threads;
  exe_ = Executable::compile(graph_, backend, co);
}

std::vector<std::vector<double>> LanguageModel::next_token_probs(const std::vector<std::vector<int64_t>>& prefixes) {
  CB_CHECK(!prefixes.empty() && !prefixes[0].empty(), "next_token_probs: empty prefixes");
  return probs_at(prefixes, int64_t(prefixes[0].size()));
}

std::vector<std::vector<double>> LanguageModel::probs_at(const std::vector<std::vector<int64_t>>& prefixes,
                                                         int64_t padded_length) {
  int64_t B = int64_t(prefixes.size()), T = padded_length, len = int64_t(prefixes[0].size());
  Tensor ids = Tensor::zeros(DType::i64, {B, T});
  for (int64_t b = 0; b < B; ++b) {
    CB_CHECK(int64_t(prefixes[size_t(b)].size()) == len, "next_token_probs: prefixes of different lengths");
    std::copy(prefixes[size_t(b)].begin(), prefixes[size_t(b)].end(), ids.data<int64_t>() + b * T);
  }
  Tensor logits = exe_->run(causal_lm_feeds(*graph_, ids)).at(0);
  int64_t V = logits.dim(2);
  std::vector<std::vector<double>> out(static_cast<size_t>(B), std::vector<double>(static_cast<size_t>(V)));
  for (int64_t b = 0; b < B; ++b) {
    // Causal: the logits at len - 1 do not see the padding after it.
    const float* l = logits.data<float>() + (b * T + len - 1) * V;
    double mx = l[0], sum = 0;
    for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(l[v]));
    for (int64_t v = 0; v < V; ++v) sum += out[size_t(b)][size_t(v)] = std::exp(double(l[v]) - mx);
    for (auto& p : out[size_t(b)]) p /= sum;
  }
  return out;
}

std::vector<std::vector<int64_t>> LanguageModel::sample(int64_t count, int64_t length,
                                                        const std::vector<int64_t>& prompt, uint64_t seed) {
  CB_CHECK(!prompt.empty() && int64_t(prompt.size()) <= length, "sample: bad prompt length");
  std::vector<std::vector<int64_t>> seqs(size_t(count), prompt);
  std::vector<Rng> rngs;
  for (int64_t i = 0; i < count; ++i) rngs.push_back(Rng::derive(seed, 7, uint64_t(i)));
  while (int64_t(seqs[0].size()) < length) {
    // Runs are padded to a multiple of 16 tokens: few distinct shapes, so the
    // kernels' shape-specialised primitives are built once per length bucket.
    int64_t padded = std::min(length, (int64_t(seqs[0].size()) + 15) / 16 * 16);
    auto probs = probs_at(seqs, padded);
    for (size_t i = 0; i < seqs.size(); ++i) {
      double u = rngs[i].uniform_double(), acc = 0;
      int64_t pick = int64_t(probs[i].size()) - 1;
      for (size_t v = 0; v < probs[i].size(); ++v) {
        acc += probs[i][v];
        if (u < acc) {
          pick = int64_t(v);
          break;
        }
      }
      seqs[i].push_back(pick);
    }
  }
  return seqs;
}

FsmMetrics evaluate_fsm(LanguageModel& lm, const Fsm& fsm, int64_t samples, int64_t seq_len, uint64_t seed) {
  FsmMetrics m;
  if (samples > 0) m.sampled = token_transition_accuracy(fsm, lm.sample(samples, seq_len, {fsm.special_id()}, seed));
  m.first_transition_accuracy = first_transition_accuracy(
      fsm, [&](const std::vector<std::vector<int64_t>>& p) { return lm.next_token_probs(p); });
  return m;
}

}  // namespace cb
