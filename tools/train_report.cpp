#include "tools/train_report.h"

#include <iomanip>
#include <map>

namespace cb::tools {
namespace {

int64_t layer_of(const std::string& site) {
  if (site.rfind("layer", 0) != 0) return -1;
  try {
    return std::stoll(site.substr(5, site.find('.') - 5));
  } catch (...) {
    return -1;
  }
}

}  // namespace

void LogWindow::add(const StepMetrics& m) {
  loss += m.loss;
  accuracy += m.accuracy;
  grad_norm += m.grad_norm;
  learning_rate = m.learning_rate;
  seconds += m.seconds;
  tokens += m.tokens;
  ++steps;
}

void add_codebook_metrics(Json& line, const std::vector<CodebookStats>& stats,
                          const std::vector<CodebookOutputs>& codebooks, const std::string& prefix, bool norms) {
  if (stats.empty()) return;
  struct Layer {
    double dead = 0, codes = 0, mse = 0, mean_norm = 0, max_norm = 0;
    int64_t sites = 0, replaced = 0;
  };
  std::map<int64_t, Layer> layers;
  for (size_t i = 0; i < stats.size(); ++i) {
    double codes = double(codebooks[i].groups * codebooks[i].num_codes);
    Layer& l = layers[layer_of(stats[i].site)];
    l.dead += stats[i].dead_fraction * codes;
    l.codes += codes;
    l.mse += stats[i].mse;
    l.mean_norm += stats[i].mean_code_norm;
    l.max_norm = std::max(l.max_norm, stats[i].max_code_norm);
    l.replaced += stats[i].replaced;
    ++l.sites;
  }
  double dead = 0, codes = 0, mse = 0, mean_norm = 0, max_norm = 0;
  int64_t replaced = 0;
  for (auto& [idx, l] : layers) {
    std::string suffix = "/layer" + std::to_string(idx);
    line[prefix + "dead_code_fraction" + suffix] = l.dead / l.codes;
    line[prefix + "MSE" + suffix] = l.mse / double(l.sites);
    if (norms) {
      line[prefix + "mean_norm" + suffix] = l.mean_norm / double(l.sites);
      line[prefix + "max_norm" + suffix] = l.max_norm;
    }
    dead += l.dead;
    codes += l.codes;
    mse += l.mse / double(l.sites);
    mean_norm += l.mean_norm / double(l.sites);
    max_norm = std::max(max_norm, l.max_norm);
    replaced += l.replaced;
  }
  line[prefix + "dead_code_fraction"] = dead / codes;
  line[prefix + "MSE"] = mse / double(layers.size());
  if (norms) {
    line[prefix + "mean_norm"] = mean_norm / double(layers.size());
    line[prefix + "max_norm"] = max_norm;
    line[prefix + "replaced_codes"] = replaced;
  }
}

Json train_log_line(int64_t step, const LogWindow& w, Trainer& trainer) {
  Json line = Json::Object{};
  double n = double(std::max<int64_t>(w.steps, 1));
  line["step"] = step;
  line["loss"] = w.loss / n;
  line["accuracy"] = w.accuracy / n;
  line["grad_norm"] = w.grad_norm / n;
  line["learning_rate"] = w.learning_rate;
  line["tokens_per_s"] = w.seconds > 0 ? double(w.tokens) / w.seconds : 0.0;
  add_codebook_metrics(line, trainer.take_codebook_stats(), trainer.train_graph().codebooks, "", true);
  return line;
}

Json eval_log_line(const EvalMetrics& m, const Trainer& trainer) {
  Json line = Json::Object{};
  line["step"] = trainer.step();
  line["eval_loss"] = m.loss;
  line["eval_accuracy"] = m.accuracy;
  if (std::isfinite(m.perplexity)) line["eval_perplexity"] = m.perplexity;
  line["eval_samples"] = m.samples;
  line["eval_seconds"] = m.seconds;
  add_codebook_metrics(line, m.codebooks, trainer.train_graph().codebooks, "eval_", false);
  return line;
}

void add_fsm_metrics(Json& line, const FsmMetrics& m, bool sampled) {
  if (sampled) {
    line["eval_transition_accuracy"] = m.sampled.overall;
    line["eval_first_transition_accuracy"] = m.sampled.first;
  }
  line["eval_first_transition_accuracy_probs"] = m.first_transition_accuracy;
}

void print_run_header(std::ostream& os, const TrainRunConfig& run, const Trainer& trainer, const TokenDataset& data) {
  const StepGraph& g = trainer.train_graph();
  os << "data: " << data.describe() << "\n";
  if (g.codebooks.empty() && run.apply_codebook && run.insert_codebooks_after > 0)
    os << "codebooks: inserted after step " << run.insert_codebooks_after << " (the model trains alone until then)";
  else
    os << "codebooks: " << g.codebooks.size();
  if (!g.codebooks.empty()) {
    os << " (";
    for (size_t i = 0; i < g.codebooks.size() && i < 4; ++i)
      os << (i ? ", " : "") << g.codebooks[i].site << " " << g.codebooks[i].groups << "x" << g.codebooks[i].num_codes
         << " k=" << g.codebooks[i].k;
    if (g.codebooks.size() > 4) os << ", ...";
    os << ")";
  }
  os << "\ntrained parameters: " << trainer.num_trained_parameters();
  for (auto& [name, params] : g.groups) {
    int64_t n = 0;
    for (auto& p : params) n += trainer.state().at(p).numel();
    if (!params.empty()) os << "; " << name << " " << n;
  }
  os << "\nsteps: " << run.max_steps << " x batch " << run.trainer.batch_size << " x " << data.block_size()
     << " tokens, " << run.trainer.num_threads << " thread" << (run.trainer.num_threads == 1 ? "" : "s") << " on "
     << run.backend << "\n";
}

}  // namespace cb::tools
