// codebook bench MODEL: times the forward pass alone (import and compile excluded).
#include <sys/resource.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <random>

#include "runtime/executable.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/option_checks.h"
#include "tools/options.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

// This process's CPU time (all threads, user + system) and minor page faults
// so far: on a machine shared with other jobs, CPU time per run is steadier
// than wall time, and page faults per run show fresh memory being touched.
struct ProcessUsage {
  double cpu_ms = 0;
  int64_t page_faults = 0;
};

ProcessUsage process_usage() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& t) { return double(t.tv_sec) * 1e3 + double(t.tv_usec) / 1e3; };
  return {ms(ru.ru_utime) + ms(ru.ru_stime), int64_t(ru.ru_minflt) + int64_t(ru.ru_majflt)};
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  po::options_description opts("usage: codebook bench MODEL [options]\n\noptions");
  opts.add_options()("shape", po::value<std::string>()->default_value("1x128"), "BATCHxSEQ of input_ids")(
      "runs", po::value<int>()->default_value(10)->notifier(must_be_positive("--runs")), "timed runs")(
      "warmup", po::value<int>()->default_value(2)->notifier(must_be_non_negative("--warmup")), "untimed warm-up runs")(
      "threads", po::value<int>()->default_value(0)->notifier(must_be_thread_count("--threads", true)),
      "threads (0 = all cores)")("backend,b", po::value<std::string>()->default_value("cpu"), "reference | cpu")(
      "profile", "print time per op type")("json", "print the result as one JSON line");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "ONNX model file", vm)) return 0;
  std::vector<int64_t> shape = parse_shape(vm["shape"].as<std::string>());
  CB_CHECK(shape.size() == 2, "--shape must be BATCHxSEQ");
  int runs = vm["runs"].as<int>(), warmup = vm["warmup"].as<int>();
  set_num_threads(vm["threads"].as<int>());

  LoadedModel m = load_model(vm["model"].as<std::string>());
  int64_t vocab = vocab_size(*m.graph);
  std::mt19937_64 rng(0);
  std::vector<int64_t> ids(static_cast<size_t>(shape[0] * shape[1]));
  for (auto& t : ids) t = int64_t(rng() % uint64_t(vocab > 0 ? vocab : 2));
  auto inputs = lm_inputs(*m.graph, ids, shape[0], shape[1]);
  auto backend = make_backend(vm["backend"].as<std::string>());
  CompileOptions copts;
  copts.num_threads = vm["threads"].as<int>();
  copts.profile = vm.count("profile") > 0;
  auto exe = Executable::compile(m.graph, *backend, copts);
  for (int i = 0; i < warmup; ++i) exe->run(inputs);
  std::vector<double> ms, cpu_ms, faults;
  for (int i = 0; i < runs; ++i) {
    ProcessUsage u0 = process_usage();
    auto t0 = std::chrono::steady_clock::now();
    exe->run(inputs);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    ProcessUsage u1 = process_usage();
    cpu_ms.push_back(u1.cpu_ms - u0.cpu_ms);
    faults.push_back(double(u1.page_faults - u0.page_faults));
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double median = median_of(ms), median_cpu = median_of(cpu_ms), median_faults = median_of(faults);
  double tps = double(shape[0] * shape[1]) / (median / 1000.0);
  if (vm.count("json")) {
    std::cout << std::fixed << std::setprecision(3) << "{\"backend\": \"" << backend->name() << "\", \"shape\": \""
              << vm["shape"].as<std::string>() << "\", \"runs\": " << runs << ", \"median_ms\": " << median
              << ", \"min_ms\": " << sorted.front() << ", \"max_ms\": " << sorted.back()
              << ", \"tokens_per_s\": " << tps << ", \"median_cpu_ms\": " << median_cpu
              << ", \"page_faults\": " << median_faults << ", \"pooled_bytes\": " << exe->pooled_bytes()
              << ", \"import_ms\": " << m.import_ms << "}\n";
  } else {
    std::cout << std::fixed << std::setprecision(2) << "backend " << backend->name() << ", shape "
              << vm["shape"].as<std::string>() << ", " << runs << " runs after " << warmup << " warm-up\n"
              << "median " << median << " ms, min " << sorted.front() << " ms, max " << sorted.back() << " ms, "
              << std::setprecision(0) << tps << " tokens/s (import " << std::setprecision(1) << m.import_ms << " ms)\n"
              << "per run (medians): CPU time " << std::setprecision(2) << median_cpu << " ms (all threads), "
              << std::setprecision(0) << median_faults << " page faults; " << std::setprecision(1)
              << double(exe->pooled_bytes()) / (1 << 20) << " MiB of pooled buffers\n";
  }
  if (copts.profile) {
    std::vector<std::pair<std::string, OpProfile>> prof(exe->profile().begin(), exe->profile().end());
    std::sort(prof.begin(), prof.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (auto& [op, p] : prof) total += p.ms;
    std::cout << "time per op type (all runs incl. warm-up):\n";
    for (auto& [op, p] : prof)
      std::cout << "  " << std::setw(24) << std::left << op << std::right << std::setw(10) << std::setprecision(2)
                << p.ms << " ms " << std::setw(6) << std::setprecision(1) << 100 * p.ms / total << "%  " << p.calls
                << " calls\n";
  }
  return 0;
}

}  // namespace cb::tools
