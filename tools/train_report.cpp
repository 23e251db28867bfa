#include "tools/train_report.h"

#include <charconv>
#include <cstdlib>
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

double f32_number(double v) {
  // The shortest decimal that reads back to the same float, as a double
  // (0.001f is 0.0010000000474974513 as a double; this gives 0.001).
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, float(v));
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

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
  // Every aggregate is a ratio of sums over its sites, so a layer's number has
  // the definition of a site's: dead codes / codes, squared error / components,
  // code norms / codes, replaced / (codes x replacement rounds).
  struct Sums {
    double dead = 0, codes = 0, sq_error = 0, components = 0, norm_sum = 0, max_norm = 0;
    double replaced = 0, replaceable = 0, recon_error = 0, recon_norm = 0, recon_centered = 0;
    int64_t replaced_codes = 0;
    bool recon = true;
    void add(const CodebookStats& s, const CodebookOutputs& c) {
      double n = double(c.groups * c.num_codes);
      dead += s.dead_fraction * n;
      codes += n;
      sq_error += s.mse * double(c.width);
      components += double(c.width);
      norm_sum += s.mean_code_norm * n;
      max_norm = std::max(max_norm, s.max_code_norm);
      replaced += double(s.replaced);
      replaceable += n * double(s.replacements);
      replaced_codes += s.replaced;
      recon = recon && s.has_reconstruction;
      recon_error += s.sq_error;
      recon_norm += s.sq_norm;
      recon_centered += s.sq_centered;
    }
    void put(Json& line, const std::string& prefix, const std::string& suffix, bool norms) const {
      line[prefix + "dead_code_fraction" + suffix] = dead / codes;
      if (replaceable > 0) line[prefix + "dead_code_fraction_before_replacement" + suffix] = replaced / replaceable;
      line[prefix + "MSE" + suffix] = sq_error / components;
      if (recon) {
        line[prefix + "relative_MSE" + suffix] = recon_norm > 0 ? recon_error / recon_norm : 0.0;
        line[prefix + "explained_variance" + suffix] = recon_centered > 0 ? 1 - recon_error / recon_centered : 0.0;
      }
      if (norms) {
        line[prefix + "mean_norm" + suffix] = norm_sum / codes;
        line[prefix + "max_norm" + suffix] = max_norm;
      }
    }
  };
  std::map<int64_t, Sums> layers;
  Sums total;
  for (size_t i = 0; i < stats.size(); ++i) {
    layers[layer_of(stats[i].site)].add(stats[i], codebooks[i]);
    total.add(stats[i], codebooks[i]);
  }
  for (auto& [idx, l] : layers) l.put(line, prefix, "/layer" + std::to_string(idx), norms);
  total.put(line, prefix, "", norms);
  if (norms) line[prefix + "replaced_codes"] = total.replaced_codes;
}

Json train_log_line(int64_t step, const LogWindow& w, Trainer& trainer) {
  Json line = Json::Object{};
  double n = double(std::max<int64_t>(w.steps, 1));
  line["step"] = step;
  // Means of f32 values: their f32 digits, not the double's noise.
  line["loss"] = f32_number(w.loss / n);
  line["accuracy"] = f32_number(w.accuracy / n);
  line["grad_norm"] = f32_number(w.grad_norm / n);
  line["learning_rate"] = f32_number(w.learning_rate);
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
