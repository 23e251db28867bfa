// codebook bench MODEL: times the forward pass alone (import and compile excluded).
#include <sys/resource.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <map>
#include <random>

#include "backends/cpu/bf16_dot_speed.h"
#include "backends/cpu/dnnl_matmul_bound.h"
#include "ir/graph_clone.h"
#include "passes/canonicalize.h"
#include "passes/inference_pipeline.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/command.h"
#include "tools/device_option.h"
#include "tools/model_io.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/precision_option.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

// Minor + major page faults of this process so far: per run, they show fresh
// memory being touched (the arena should leave none in steady state).
int64_t process_page_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return int64_t(ru.ru_minflt) + int64_t(ru.ru_majflt);
}

struct MatMulBound {
  double flops = 0, ms = 0, cpu_ms = 0;
  int64_t products = 0, shapes = 0;
};

// The graph's matrix products at this run's input shapes, each timed with
// oneDNN alone (backends/cpu/dnnl_matmul_bound.h), summed.
MatMulBound matmul_bound(const Graph& model, const std::map<std::string, Tensor>& inputs, int runs,
                         Precision precision) {
  std::shared_ptr<Graph> g = clone_graph(model);
  for (Value* v : g->inputs)
    if (auto it = inputs.find(v->name); it != inputs.end()) v->type.shape = Shape::of(it->second.dims());
  canonicalize(*g);  // with static inputs, shape folding makes every shape static
  MatMulBound b;
  std::map<MatMulShape, MatMulTiming> ms_of;
  for (const MatMulShape& s : graph_matmul_shapes(*g)) {
    auto [it, fresh] = ms_of.emplace(s, MatMulTiming{});
    if (fresh) it->second = time_dnnl_matmul(s, runs, precision);
    b.ms += it->second.wall_ms;
    b.cpu_ms += it->second.cpu_ms;
    b.flops += s.flops();
    b.products++;
  }
  b.shapes = int64_t(ms_of.size());
  return b;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  po::options_description opts("usage: codebook bench MODEL [options]\n\noptions");
  opts.add_options()("shape", po::value<std::string>()->default_value("1x128"), "BATCHxSEQ of input_ids")(
      "runs", po::value<int>()->default_value(10)->notifier(must_be_positive("--runs")), "timed runs")(
      "warmup", po::value<int>()->default_value(2)->notifier(must_be_non_negative("--warmup")), "untimed warm-up runs")(
      "threads", po::value<int>()->default_value(0)->notifier(must_be_thread_count("--threads", true)),
      "threads (0 = all cores)")("backend,b", po::value<std::string>()->default_value("cpu"), "reference | cpu")(
      "device", po::value<std::string>()->default_value("cpu"),
      "cpu | cuda: the nodes the GPU supports run there, the rest on --backend (docs/cuda.md)")(
      "profile", "print time per op type")("profile-nodes", "print time per node (op, name, input shapes) instead")(
      "no-fusion", "compile the graph as loaded (no inference fusions)")(
      "matmul-bound", "also time oneDNN's matmul alone on this run's matrix products: the box's bound")(
      "json", "print the result as one JSON line");
  add_precision_option(opts);
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
  const Precision precision =
      precision_option(vm, *m.graph, vm["backend"].as<std::string>(), vm["device"].as<std::string>());
  auto device = make_device_backend(vm["device"].as<std::string>());
  CompileOptions copts;
  copts.num_threads = vm["threads"].as<int>();
  copts.profile_nodes = vm.count("profile-nodes") > 0;
  copts.profile = vm.count("profile") > 0 || copts.profile_nodes;
  CB_CHECK(!(device && vm.count("no-fusion")), "--no-fusion runs on the cpu only (not with --device cuda)");
  CB_CHECK(!(precision == Precision::bf16 && vm.count("no-fusion")),
           "--no-fusion runs in f32 only (not with --precision bf16)");
  auto exe = Executable::compile(
      vm.count("no-fusion") ? m.graph : placed_inference_graph(m.graph, device.get(), copts, precision), *backend,
      copts);
  for (int i = 0; i < warmup; ++i) exe->run(inputs);
  std::vector<double> ms, cpu_ms, faults;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    double c0 = process_cpu_ms();
    int64_t f0 = process_page_faults();
    exe->run(inputs);
    cpu_ms.push_back(process_cpu_ms() - c0);
    faults.push_back(double(process_page_faults() - f0));
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(cpu_ms.begin(), cpu_ms.end());
  const double median_cpu = cpu_ms[cpu_ms.size() / 2];
  std::sort(faults.begin(), faults.end());
  const double median_faults = faults[faults.size() / 2];
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  double median = sorted[sorted.size() / 2];
  if (sorted.size() % 2 == 0) median = (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]) / 2;
  double tps = double(shape[0] * shape[1]) / (median / 1000.0);
  MatMulBound bound;
  // Under bf16, the kernels the CPU backend picks (backends/cpu/bf16_dot_speed.h) bound it.
  const Precision bound_precision =
      precision == Precision::bf16 && cpu_bf16_dot_is_fast() ? Precision::bf16 : Precision::f32;
  if (vm.count("matmul-bound")) bound = matmul_bound(*m.graph, inputs, runs, bound_precision);
  if (vm.count("json")) {
    std::cout << std::fixed << std::setprecision(3) << "{\"backend\": \"" << backend->name() << "\", \"precision\": \""
              << precision_name(precision) << "\", \"shape\": \"" << vm["shape"].as<std::string>()
              << "\", \"runs\": " << runs << ", \"median_ms\": " << median << ", \"min_ms\": " << sorted.front()
              << ", \"max_ms\": " << sorted.back() << ", \"median_cpu_ms\": " << median_cpu
              << ", \"page_faults\": " << median_faults << ", \"pooled_bytes\": " << exe->pooled_bytes()
              << ", \"tokens_per_s\": " << tps << ", \"import_ms\": " << m.import_ms;
    if (bound.products > 0)
      std::cout << ", \"matmul_products\": " << bound.products << ", \"matmul_gflop\": " << bound.flops / 1e9
                << ", \"matmul_bound_ms\": " << bound.ms
                << ", \"matmul_bound_gflops\": " << bound.flops / 1e6 / bound.ms
                << ", \"percent_of_bound\": " << 100 * bound.ms / median
                << ", \"matmul_bound_cpu_ms\": " << bound.cpu_ms
                << ", \"percent_of_bound_cpu\": " << 100 * bound.cpu_ms / median_cpu;
    std::cout << "}\n";
  } else {
    std::cout << std::fixed << std::setprecision(2) << "backend " << backend->name() << ", "
              << precision_name(precision) << ", shape " << vm["shape"].as<std::string>() << ", " << runs
              << " runs after " << warmup << " warm-up\n"
              << "median " << median << " ms, min " << sorted.front() << " ms, max " << sorted.back() << " ms, "
              << std::setprecision(0) << tps << " tokens/s (import " << std::setprecision(1) << m.import_ms
              << " ms); per run (medians): CPU time " << std::setprecision(2) << median_cpu << " ms (all threads), "
              << std::setprecision(0) << median_faults << " page faults; " << std::setprecision(1)
              << double(exe->pooled_bytes()) / (1 << 20) << " MiB of pooled buffers\n";
    if (bound.products > 0)
      std::cout << std::setprecision(1) << "matmul bound: " << bound.flops / 1e9 << " GFLOP in " << bound.products
                << " products (" << bound.shapes << " shapes); oneDNN's matmul alone takes " << bound.ms << " ms ("
                << bound.flops / 1e6 / bound.ms << " GFLOP/s): this forward runs at " << 100 * bound.ms / median
                << "% of the bound (by CPU time, which a busy machine distorts less at one thread: "
                << 100 * bound.cpu_ms / median_cpu << "%)\n";
  }
  if (copts.profile) {
    std::vector<std::pair<std::string, OpProfile>> prof(exe->profile().begin(), exe->profile().end());
    std::sort(prof.begin(), prof.end(), [](auto& a, auto& b) { return a.second.ms > b.second.ms; });
    double total = 0;
    for (auto& [op, p] : prof) total += p.ms;
    std::cout << "time per " << (copts.profile_nodes ? "node" : "op type") << " (all runs incl. warm-up):\n";
    for (auto& [op, p] : prof)
      std::cout << "  " << std::setw(24) << std::left << op << std::right << std::setw(10) << std::setprecision(2)
                << p.ms << " ms " << std::setw(6) << std::setprecision(1) << 100 * p.ms / total << "%  " << p.calls
                << " calls" << (p.inputs.empty() ? "" : "  " + p.inputs) << "\n";
  }
  return 0;
}

}  // namespace cb::tools
