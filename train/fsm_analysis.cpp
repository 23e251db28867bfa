#include "train/fsm_analysis.h"

#include <cmath>
#include <set>

#include "ir/codebook.h"
#include "passes/codebook_sites.h"
#include "passes/interventions.h"
#include "support/error.h"
#include "support/rng.h"
#include "train/tokfsm_eval.h"
#include "train/training_graph.h"

namespace cb {
namespace {

// [BOS, digits of s] for every state.
std::vector<std::vector<int64_t>> state_inputs(const Fsm& fsm) {
  std::vector<std::vector<int64_t>> out;
  for (int64_t s = 0; s < fsm.num_states(); ++s) out.push_back(state_prompt(fsm, s));
  return out;
}

// Jensen-Shannon divergence in bits.
double jsd(const std::vector<double>& p, const std::vector<double>& q) {
  double d = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    double m = 0.5 * (p[i] + q[i]);
    if (p[i] > 0) d += 0.5 * p[i] * std::log2(p[i] / m);
    if (q[i] > 0) d += 0.5 * q[i] * std::log2(q[i] / m);
  }
  return std::max(d, 0.0);
}

bool site_matches(const std::string& site, const std::vector<std::string>& filters) {
  for (auto& f : filters) {
    if (f.empty()) return true;
    size_t dot = site.find('.');
    if (dot != std::string::npos && site.substr(dot + 1) == f) return true;
    if (site == f) return true;
  }
  return false;
}

}  // namespace

std::vector<int64_t> state_prompt(const Fsm& fsm, int64_t state) {
  std::vector<int64_t> in = {fsm.special_id()};
  std::vector<int64_t> digits = fsm.trajectory_tokens(std::vector<int64_t>{state});
  in.insert(in.end(), digits.begin(), digits.end());
  return in;
}

std::map<int64_t, std::vector<int64_t>> CodeAssignment::states_of_code() const {
  std::map<int64_t, std::vector<int64_t>> m;
  for (size_t s = 0; s < codes.size(); ++s)
    for (int64_t c : codes[s])
      if (c >= 0) m[c].push_back(int64_t(s));
  return m;
}

double CodeAssignment::purity() const {
  auto m = states_of_code();
  int64_t pure = 0;
  for (auto& [code, states] : m) pure += states.size() == 1;
  return m.empty() ? 0.0 : double(pure) / double(m.size());
}

std::vector<CodeAssignment> code_assignments(const ModelFactory& model, const Fsm& fsm, const Backend& backend,
                                             int num_threads) {
  StepGraph sg = build_eval_graph(model(), StepGraphOptions{});
  CB_CHECK(!sg.codebooks.empty(), "the model has no codebooks");
  CompileOptions co;
  co.num_threads = num_threads;
  auto exe = Executable::compile(sg.graph, backend, co);
  auto inputs = state_inputs(fsm);
  int64_t B = int64_t(inputs.size()), T = int64_t(inputs[0].size());
  Tensor ids = Tensor::empty(DType::i64, {B, T});
  for (int64_t b = 0; b < B; ++b)
    std::copy(inputs[size_t(b)].begin(), inputs[size_t(b)].end(), ids.data<int64_t>() + b * T);
  std::map<std::string, Tensor> in = causal_lm_feeds(sg.data_inputs, ids);
  for (auto& p : sg.parameters) in[p] = sg.initial.at(p);
  std::vector<Tensor> out = exe->run(in);
  std::vector<std::string> names = exe->output_names();
  std::vector<CodeAssignment> result;
  for (auto& c : sg.codebooks) {
    size_t i = size_t(std::find(names.begin(), names.end(), c.ids) - names.begin());
    const Tensor& t = out.at(i);  // [B, T, G, k]
    for (int64_t g = 0; g < c.groups; ++g) {
      CodeAssignment a;
      a.site = c.site;
      a.member = g;
      a.groups = c.groups;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t* p = t.data<int64_t>() + ((b * T + T - 1) * c.groups + g) * c.k;
        a.codes.push_back(std::vector<int64_t>(p, p + c.k));
      }
      result.push_back(a);
    }
  }
  return result;
}

std::vector<double> forced_next_token_probs(const ModelFactory& model, const Fsm& fsm,
                                            const std::vector<CodeAssignment>& codes,
                                            const std::vector<std::string>& site_filters, int64_t a, int64_t b,
                                            const Backend& backend, int num_threads) {
  InterventionSet iv;
  for (auto& ca : codes) {
    if (!site_matches(ca.site, site_filters)) continue;
    Intervention it;
    it.kind = InterventionKind::force;
    it.site = parse_site(ca.site);
    if (ca.groups > 1) it.site.group = ca.member;
    it.values = ca.codes[size_t(b)];
    it.positions = {fsm.digits()};
    iv.items.push_back(it);
  }
  CB_CHECK(!iv.items.empty(), "steering: no codebook matches the sites");
  std::shared_ptr<Graph> g = model();
  InterventionsPass interventions(iv);
  PassManager().run(interventions, *g);
  LanguageModel forced(g, backend, num_threads);
  return forced.next_token_probs({state_prompt(fsm, a)})[0];
}

SteeringResult steering(const ModelFactory& model, const Fsm& fsm, const std::vector<CodeAssignment>& codes,
                        const std::vector<std::string>& site_filters, int64_t pairs, uint64_t seed,
                        const Backend& backend, int num_threads, bool same_last_digit) {
  SteeringResult r;
  for (size_t i = 0; i < site_filters.size(); ++i)
    r.sites += (i ? ", " : "") + (site_filters[i].empty() ? "all" : site_filters[i]);
  Rng rng = Rng::derive(seed, 11);
  int64_t N = fsm.num_states();
  std::vector<std::vector<int64_t>> inputs = state_inputs(fsm);
  LanguageModel clean(model(), backend, num_threads);
  std::vector<std::vector<double>> clean_probs = clean.next_token_probs(inputs);
  for (int64_t i = 0; i < pairs; ++i) {
    int64_t a = int64_t(rng.below(uint64_t(N))), b = int64_t(rng.below(uint64_t(N - 1)));
    if (b >= a) ++b;
    if (same_last_digit) {
      std::vector<int64_t> alike;
      for (int64_t s = 0; s < N; ++s)
        if (s != a && fsm.state_string(s).back() == fsm.state_string(a).back()) alike.push_back(s);
      if (alike.empty()) continue;
      b = alike[size_t(rng.below(uint64_t(alike.size())))];
    }
    std::vector<double> forced_probs =
        forced_next_token_probs(model, fsm, codes, site_filters, a, b, backend, num_threads);
    r.jsd_clean += jsd(clean_probs[size_t(a)], clean_probs[size_t(b)]);
    r.jsd_forced += jsd(forced_probs, clean_probs[size_t(b)]);
    ++r.pairs;
  }
  if (r.pairs) {
    r.jsd_clean /= double(r.pairs);
    r.jsd_forced /= double(r.pairs);
  }
  return r;
}

}  // namespace cb
