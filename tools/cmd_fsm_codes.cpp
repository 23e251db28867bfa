// codebook fsm-codes RUN: what the codes of a trained TokFSM model mean
// (train/fsm_analysis.h): code purity per site, the states each code of one
// site stands for, and steering by forcing one state's codes into another.
#include <algorithm>
#include <boost/program_options.hpp>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "backends/backend.h"
#include "passes/codebook_sites.h"
#include "passes/interventions.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "train/checkpoint.h"
#include "train/fsm_analysis.h"
#include "train/tokfsm_eval.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace cb::tools {

namespace {

// The codes state b selects at each codebook (member), and the `codebook run`
// command that forces them into state a's last digit as the example does.
void print_steering_command(std::ostream& out, const std::string& model_path, const Fsm& fsm,
                            const std::vector<CodeAssignment>& codes, int64_t a, int64_t b) {
  std::string b_tokens = int_list_text(state_prompt(fsm, b));
  out << "\nthe codes of state b (tokens " << b_tokens << ") at its last digit:\n";
  std::vector<std::string> sites;
  for (const CodeAssignment& c : codes) {
    std::string name = c.site + (c.groups > 1 ? "[" + std::to_string(c.member) + "]" : "");
    out << "  " << std::left << std::setw(26) << name << std::right << int_list_text(c.codes[size_t(b)]) << "\n";
    if (sites.empty() || sites.back() != c.site) sites.push_back(c.site);
  }
  out << "the example's forced row from the command line (state-of: the codes those tokens select there):\n"
      << "  codebook run " << model_path << " --tokens " << int_list_text(state_prompt(fsm, a));
  for (const std::string& s : sites) out << " --force '" << s << ":state-of:" << b_tokens << "@" << fsm.digits() << "'";
  out << " --top 3\n";
}

}  // namespace

int cmd_fsm_codes(int argc, char** argv) {
  po::options_description opts("usage: codebook fsm-codes RUN [options]\n\noptions");
  opts.add_options()("site", po::value<std::string>()->default_value("layer0.mlp"),
                     "site whose codes to list; a group member as layer1.attn_preproj[2] (default: member 0)")(
      "show", po::value<int64_t>()->default_value(12)->notifier(must_be_non_negative("--show")), "codes to list")(
      "pairs", po::value<int64_t>()->default_value(20)->notifier(must_be_non_negative("--pairs")),
      "state pairs for the steering test (0: skip)")("fsm", po::value<std::string>(), "fsm.npy (default: RUN/fsm.npy)")(
      "base", po::value<int64_t>()->default_value(10)->notifier(must_be_in_range<int64_t>(2, 36, "--base")),
      "numeral base of the FSM states (default: the run's config, else 10)")(
      "threads", po::value<int>()->default_value(2)->notifier(must_be_thread_count("--threads", false)), "threads");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "run", "a `codebook train` output folder, checkpoint, or model file", vm,
                          "\nFor a model trained on TokFSM: which states select each code (at the last digit\n"
                          "of the state's numeral), code purity per site, and steering: forcing state b's\n"
                          "codes into state a makes the model predict b's successors.\n"))
    return 0;
  std::string run = vm["run"].as<std::string>();
  std::string model_path = run, fsm_path;
  std::error_code ec;
  int64_t base = vm["base"].as<int64_t>();
  if (fs::is_directory(run, ec)) {
    // The run's config knows the FSM's numeral base.
    bool has_config = !list_checkpoints(run).empty() || fs::exists(fs::path(run) / "trainer_state.json");
    if (has_config && vm["base"].defaulted())
      base = find_checkpoint(run).trainer_state.at("config").at("fsm_args").at("representation_base").as_int();
    if (fs::exists(fs::path(run) / "model.onnx")) {
      model_path = (fs::path(run) / "model.onnx").string();
      fsm_path = (fs::path(run) / "fsm.npy").string();
    } else {
      CheckpointInfo ck = find_checkpoint(run);
      model_path = (fs::path(ck.dir) / "model.onnx").string();
      fsm_path = (fs::path(ck.dir) / "fsm.npy").string();
    }
  }
  if (vm.count("fsm")) fsm_path = vm["fsm"].as<std::string>();
  CB_CHECK(!fsm_path.empty() && fs::exists(fsm_path), "no FSM: give --fsm fsm.npy (looked for " << fsm_path << ")");
  Fsm fsm = Fsm::load(fsm_path, base);
  int threads = vm["threads"].as<int>();
  set_num_threads(threads);
  auto backend = make_backend("cpu");
  ModelFactory model = [&] { return load_model(model_path).graph; };

  std::vector<CodeAssignment> codes = code_assignments(model, fsm, *backend, threads);
  std::cout << "code purity at the last digit of each of the " << fsm.num_states()
            << " states (a code is pure when one state alone selects it):\n";
  std::map<std::string, std::pair<double, int64_t>> per_site;
  std::vector<std::string> order;
  for (auto& c : codes) {
    if (!per_site.count(c.site)) order.push_back(c.site);
    auto& [sum, n] = per_site[c.site];
    sum += c.purity();
    ++n;
  }
  for (auto& site : order) {
    int64_t seen = 0;
    for (auto& c : codes)
      if (c.site == site) seen += int64_t(c.states_of_code().size());
    auto [sum, n] = per_site[site];
    std::cout << "  " << std::left << std::setw(22) << site << " purity " << std::fixed << std::setprecision(2)
              << sum / double(n) << "  (" << seen << " codes used"
              << (n > 1 ? " over " + std::to_string(n) + " heads" : "") << ")\n";
  }

  std::string site_text = vm["site"].as<std::string>();
  SiteRef site_ref;
  try {
    site_ref = parse_site(site_text, num_layers_of(*model()));
  } catch (const Error& e) {
    CB_FAIL("--site: " << e.what());
  }
  std::string site = site_ref.site();
  int64_t member = site_ref.group == kAll ? 0 : site_ref.group;
  const CodeAssignment* shown = nullptr;
  int64_t site_groups = 0;
  for (auto& c : codes)
    if (c.site == site) {
      site_groups = c.groups;
      if (c.member == member) shown = &c;
    }
  CB_CHECK(site_groups == 0 || shown, "--site " << site_text << ": member " << member << " out of range; " << site
                                                << " has " << site_groups << " codebooks");
  CB_CHECK(
      shown, "--site " << site_text << ": no codebook at " << site << "; the model has: " << [&] {
        std::string s;
        for (auto& o : order) s += (s.empty() ? "" : ", ") + o;
        return s;
      }());
  auto by_code = shown->states_of_code();
  std::vector<std::pair<int64_t, std::vector<int64_t>>> list(by_code.begin(), by_code.end());
  std::stable_sort(list.begin(), list.end(), [](auto& a, auto& b) { return a.second.size() < b.second.size(); });
  std::cout << "\n"
            << site << (shown->groups > 1 ? "[" + std::to_string(member) + "]" : "")
            << ": the states each code stands for (" << list.size() << " codes used; purest first):\n";
  int64_t show = vm["show"].as<int64_t>();
  for (int64_t i = 0; i < int64_t(list.size()) && i < show; ++i) {
    std::cout << "  code " << std::setw(5) << list[size_t(i)].first << " <- state"
              << (list[size_t(i)].second.size() > 1 ? "s " : " ");
    for (size_t j = 0; j < list[size_t(i)].second.size() && j < 8; ++j)
      std::cout << (j ? ", " : "") << fsm.state_string(list[size_t(i)].second[j]);
    if (list[size_t(i)].second.size() > 8) std::cout << ", ... (" << list[size_t(i)].second.size() << ")";
    std::cout << "\n";
  }

  int64_t pairs = vm["pairs"].as<int64_t>();
  if (pairs > 0) {
    std::cout << "\nsteering: force state b's codes at state a's last digit (" << pairs
              << " pairs (a, b) per row) and\n"
              << "compare the next-token distribution with b's: Jensen-Shannon divergence in bits, 0 = behaves as b.\n"
              << "'same last digit': b ends in a's digit, so only the codes tell the two states apart.\n"
              << "  forced sites         pairs              JSD(a, b)   JSD(a forced, b)\n";
    for (bool alike : {false, true})
      for (const std::vector<std::string>& sites :
           std::vector<std::vector<std::string>>{{"mlp"}, {"attn_preproj"}, {""}}) {
        SteeringResult r = steering(model, fsm, codes, sites, pairs, 1, *backend, threads, alike);
        std::cout << "  " << std::left << std::setw(20) << (r.sites == "all" ? "all codebooks" : "every " + r.sites)
                  << " " << std::setw(17) << (alike ? "same last digit" : "random") << std::right << std::fixed
                  << std::setprecision(3) << std::setw(10) << r.jsd_clean << std::setw(19) << r.jsd_forced << "\n";
      }
    // One pair in full: the most likely next tokens (the next state's first digit).
    int64_t a = 0, b = fsm.num_states() / 2 + 1;
    LanguageModel clean(model(), *backend, threads);
    std::vector<std::vector<double>> rows = {clean.next_token_probs({state_prompt(fsm, a)})[0],
                                             forced_next_token_probs(model, fsm, codes, {""}, a, b, *backend, threads),
                                             clean.next_token_probs({state_prompt(fsm, b)})[0]};
    const char* labels[] = {"state a", "a, b's codes forced", "state b"};
    std::cout << "\nexample: a = " << fsm.state_string(a) << ", b = " << fsm.state_string(b)
              << ", all codebooks forced; the 3 most likely next tokens:\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      std::vector<size_t> order(rows[i].size());
      for (size_t t = 0; t < order.size(); ++t) order[t] = t;
      std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return rows[i][x] > rows[i][y]; });
      std::cout << "  " << std::left << std::setw(22) << labels[i] << std::right;
      for (size_t t = 0; t < 3 && t < order.size(); ++t)
        std::cout << "  " << fsm.token_string(int64_t(order[t])) << " (" << std::setprecision(2) << rows[i][order[t]]
                  << ")";
      std::cout << "\n";
    }
    for (int64_t st : {a, b}) {
      std::cout << "  successors of " << fsm.state_string(st) << ":";
      for (int64_t t = 0; t < fsm.num_states(); ++t)
        if (fsm.valid_transition(st, t)) std::cout << " " << fsm.state_string(t);
      std::cout << "\n";
    }
    print_steering_command(std::cout, model_path, fsm, codes, a, b);
  }
  return 0;
}

}  // namespace cb::tools
