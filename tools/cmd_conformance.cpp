// codebook conformance DIR: runs the ONNX backend node tests (one folder per
// test with model.onnx and test_data_set_*/{input,output}_*.pb) through the
// importer and a backend, and compares with the expected outputs. Each test
// runs in a child process by default, so that a crashing or hanging kernel
// fails its test instead of the whole run.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "backends/backend.h"
#include "frontend/onnx_import.h"
#include "onnx/onnx.pb.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "support/input_file.h"
#include "tools/command.h"
#include "tools/option_checks.h"
#include "tools/options.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace cb::tools {

namespace {

constexpr double kRtol = 1e-3;
constexpr double kAtol = 1e-7;

struct Settings {
  std::string backend = "reference";
  bool canonicalize = true;
  int timeout_s = 120;
};

enum class Outcome { pass, fail, skip };

struct Result {
  Outcome outcome = Outcome::pass;
  std::string reason;
};

std::string read_file(const fs::path& p) { return read_input_file(p.string(), "test file"); }

// ---------------------------------------------------------------------------
// Types we cannot run (detected before importing).

std::optional<std::string> unsupported_elem(int32_t t) {
  if (t == 0 || dtype_from_onnx(t)) return std::nullopt;
  return "uses unsupported type " + onnx_dtype_name(t);
}

std::optional<std::string> unsupported_type(const onnx::TypeProto& t) {
  if (t.has_tensor_type()) return unsupported_elem(t.tensor_type().elem_type());
  if (t.has_sequence_type()) return std::string("uses a sequence type");
  if (t.has_map_type()) return std::string("uses a map type");
  if (t.has_optional_type()) return std::string("uses an optional type");
  if (t.has_sparse_tensor_type()) return std::string("uses a sparse tensor type");
  return std::nullopt;
}

std::optional<std::string> unsupported_in_graph(const onnx::GraphProto& g);

std::optional<std::string> unsupported_in_node(const onnx::NodeProto& n) {
  for (auto& a : n.attribute()) {
    if (a.has_t())
      if (auto r = unsupported_elem(a.t().data_type())) return r;
    if (a.has_g())
      if (auto r = unsupported_in_graph(a.g())) return r;
    if ((n.op_type() == "Cast" || n.op_type() == "CastLike" || n.op_type() == "EyeLike" ||
         n.op_type() == "RandomNormal" || n.op_type() == "RandomUniform") &&
        (a.name() == "to" || a.name() == "dtype") && a.has_i())
      if (auto r = unsupported_elem(int32_t(a.i()))) return r;
  }
  return std::nullopt;
}

std::optional<std::string> unsupported_in_graph(const onnx::GraphProto& g) {
  for (auto* list : {&g.input(), &g.output(), &g.value_info()})
    for (auto& vi : *list)
      if (auto r = unsupported_type(vi.type())) return r;
  for (auto& t : g.initializer())
    if (auto r = unsupported_elem(t.data_type())) return r;
  for (auto& n : g.node())
    if (auto r = unsupported_in_node(n)) return r;
  return std::nullopt;
}

std::optional<std::string> unsupported_in_model(const onnx::ModelProto& m) {
  if (auto r = unsupported_in_graph(m.graph())) return r;
  for (auto& f : m.functions())
    for (auto& n : f.node())
      if (auto r = unsupported_in_node(n)) return r;
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Test data

struct DataSet {
  std::string name;
  std::vector<onnx::TensorProto> inputs, outputs;
};

// "input_12.pb" -> 12; -1 when the name does not match.
int file_index(const std::string& file, const std::string& prefix) {
  if (file.rfind(prefix, 0) != 0 || file.size() <= prefix.size() + 3 || file.substr(file.size() - 3) != ".pb")
    return -1;
  std::string digits = file.substr(prefix.size(), file.size() - prefix.size() - 3);
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return -1;
  return std::stoi(digits);
}

std::vector<onnx::TensorProto> load_tensors(const fs::path& dir, const std::string& prefix) {
  std::map<int, fs::path> files;
  for (auto& e : fs::directory_iterator(dir)) {
    int i = file_index(e.path().filename().string(), prefix);
    if (i >= 0) files[i] = e.path();
  }
  std::vector<onnx::TensorProto> out;
  int expect = 0;
  for (auto& [i, p] : files) {
    CB_CHECK(i == expect++, "'" << dir.string() << "': " << prefix << expect - 1 << ".pb is missing");
    onnx::TensorProto tp;
    std::string bytes = read_file(p);
    CB_CHECK(tp.ParseFromString(bytes), "'" << p.string() << "' is not a TensorProto");
    out.push_back(std::move(tp));
  }
  return out;
}

std::vector<DataSet> load_data_sets(const fs::path& test_dir) {
  std::vector<fs::path> dirs;
  for (auto& e : fs::directory_iterator(test_dir))
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  std::vector<DataSet> sets;
  for (auto& d : dirs) {
    DataSet s;
    s.name = d.filename().string();
    s.inputs = load_tensors(d, "input_");
    s.outputs = load_tensors(d, "output_");
    sets.push_back(std::move(s));
  }
  return sets;
}

// ---------------------------------------------------------------------------
// Comparison

std::string index_str(const std::vector<int64_t>& dims, int64_t flat) {
  std::vector<int64_t> idx(dims.size());
  for (size_t d = dims.size(); d-- > 0;) {
    idx[d] = dims[d] ? flat % dims[d] : 0;
    flat = dims[d] ? flat / dims[d] : 0;
  }
  return dims_str(idx);
}

// Empty when `got` matches `want`, else what differs.
std::string compare(const Tensor& got, const Tensor& want) {
  std::ostringstream os;
  if (got.dtype() != want.dtype()) {
    os << "dtype " << dtype_name(got.dtype()) << ", expected " << dtype_name(want.dtype());
    return os.str();
  }
  if (got.dims() != want.dims()) {
    os << "shape " << dims_str(got.dims()) << ", expected " << dims_str(want.dims());
    return os.str();
  }
  int64_t n = want.numel(), bad = 0, first = -1;
  double max_diff = 0;
  bool is_float = dtype_is_float(want.dtype());
  for (int64_t i = 0; i < n; ++i) {
    bool ok;
    if (is_float) {
      double a = got.get_double(i), b = want.get_double(i);
      ok = a == b || (std::isnan(a) && std::isnan(b)) || std::fabs(a - b) <= kAtol + kRtol * std::fabs(b);
      if (!ok) max_diff = std::max(max_diff, std::isnan(a - b) ? INFINITY : std::fabs(a - b));
    } else if (want.dtype() == DType::u64) {
      ok = got.data<uint64_t>()[i] == want.data<uint64_t>()[i];
    } else {
      ok = got.get_int(i) == want.get_int(i);
    }
    if (!ok && bad++ == 0) first = i;
  }
  if (!bad) return "";
  auto value = [&](const Tensor& t, int64_t i) {
    std::ostringstream v;
    v.precision(9);
    if (is_float)
      v << t.get_double(i);
    else if (t.dtype() == DType::u64)
      v << t.data<uint64_t>()[i];
    else
      v << t.get_int(i);
    return v.str();
  };
  os << bad << " of " << n << " values differ; first at " << index_str(want.dims(), first) << ": got "
     << value(got, first) << ", expected " << value(want, first);
  if (is_float) os << " (max |diff| " << max_diff << ")";
  return os.str();
}

// ---------------------------------------------------------------------------
// One test

Result run_test(const fs::path& dir, const Settings& s) {
  fs::path model_path = dir / "model.onnx";
  std::string bytes = read_file(model_path);
  onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) return {Outcome::fail, "'" + model_path.string() + "' is not a valid ONNX model"};
  bytes.clear();
  if (auto r = unsupported_in_model(model)) return {Outcome::skip, *r};
  std::vector<DataSet> sets = load_data_sets(dir);
  if (sets.empty()) return {Outcome::skip, "no test_data_set_* folders"};
  for (auto& ds : sets)
    for (auto* list : {&ds.inputs, &ds.outputs})
      for (auto& t : *list)
        if (auto r = unsupported_elem(t.data_type())) return {Outcome::skip, *r + " in its data"};

  // ONNX graph inputs that are not initializers, in order: the data's inputs.
  std::vector<std::string> input_names;
  {
    std::set<std::string> inits;
    for (auto& t : model.graph().initializer()) inits.insert(t.name());
    for (auto& vi : model.graph().input())
      if (!inits.count(vi.name())) input_names.push_back(vi.name());
  }

  ImportOptions opts;
  opts.canonicalize = s.canonicalize;
  auto graph = import_onnx_model(model, dir.string(), model_path.string(), opts);
  auto backend = make_backend(s.backend);
  auto exe = Executable::compile(graph, *backend);
  std::set<std::string> graph_inputs;
  for (auto& n : exe->input_names()) graph_inputs.insert(n);

  for (auto& ds : sets) {
    std::map<std::string, Tensor> feeds;
    for (size_t i = 0; i < ds.inputs.size(); ++i) {
      auto& tp = ds.inputs[i];
      std::string name = !tp.name().empty() ? tp.name() : i < input_names.size() ? input_names[i] : "";
      CB_CHECK(!name.empty(), ds.name << ": input_" << i << ".pb has no graph input to go to");
      Tensor t = tensor_from_onnx(tp, dir.string(), ds.name + "/input_" + std::to_string(i) + ".pb");
      if (graph_inputs.count(name)) feeds[name] = std::move(t);  // unused inputs may be folded away
    }
    std::vector<Tensor> outs = exe->run(feeds);
    if (outs.size() != ds.outputs.size())
      return {Outcome::fail, ds.name + ": the model computes " + std::to_string(outs.size()) +
                                 " outputs, the test data has " + std::to_string(ds.outputs.size())};
    for (size_t i = 0; i < outs.size(); ++i) {
      Tensor want = tensor_from_onnx(ds.outputs[i], dir.string(), ds.name + "/output_" + std::to_string(i) + ".pb");
      std::string diff = compare(outs[i], want);
      if (!diff.empty())
        return {Outcome::fail,
                ds.name + ": output " + std::to_string(i) + " '" + exe->output_names()[i] + "': " + diff};
    }
  }
  return {Outcome::pass, ""};
}

Result run_test_guarded(const fs::path& dir, const Settings& s) {
  try {
    return run_test(dir, s);
  } catch (const std::bad_alloc&) {
    return {Outcome::fail, "out of memory"};
  } catch (const std::exception& e) {
    return {Outcome::fail, e.what()};
  }
}

// Runs the test in a child process; a crash or a timeout fails only this test.
Result run_test_isolated(const fs::path& dir, const Settings& s) {
  int fds[2];
  CB_CHECK(pipe(fds) == 0, "pipe() failed: " << std::strerror(errno));
  std::cout.flush();
  std::cerr.flush();
  pid_t pid = fork();
  CB_CHECK(pid >= 0, "fork() failed: " << std::strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    alarm(unsigned(s.timeout_s));
    Result r = run_test_guarded(dir, s);
    std::string msg = std::to_string(int(r.outcome)) + " " + r.reason;
    for (size_t off = 0; off < msg.size();) {
      ssize_t w = write(fds[1], msg.data() + off, msg.size() - off);
      if (w <= 0) break;
      off += size_t(w);
    }
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string msg;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    msg.append(buf, size_t(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    if (sig == SIGALRM) return {Outcome::fail, "timed out after " + std::to_string(s.timeout_s) + " s"};
    return {Outcome::fail, std::string("crashed (signal ") + std::to_string(sig) + ": " + strsignal(sig) + ")"};
  }
  if (msg.size() < 2) return {Outcome::fail, "the test process exited without a result"};
  return {Outcome(msg[0] - '0'), msg.substr(2)};
}

// "test_name  # reason" per line; '#' lines and blank lines are comments.
std::map<std::string, std::string> read_expected_failures(const std::string& path) {
  check_input_file(path, "expected-failures file");
  std::ifstream f(path);
  CB_CHECK(f, "cannot read expected-failures file '" << path << "'");
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(f, line)) {
    std::string reason;
    size_t hash = line.find('#');
    if (hash != std::string::npos) {
      reason = line.substr(hash + 1);
      line = line.substr(0, hash);
    }
    std::istringstream ss(line);
    std::string name;
    if (!(ss >> name)) continue;
    size_t b = reason.find_first_not_of(" \t");
    out[name] = b == std::string::npos ? "" : reason.substr(b);
  }
  return out;
}

}  // namespace

int cmd_conformance(int argc, char** argv) {
  Settings s;
  po::options_description opts("usage: codebook conformance DIR [options]\n\noptions");
  opts.add_options()("backend", po::value<std::string>(&s.backend)->default_value("reference"),
                     "backend: reference, cpu")("filter", po::value<std::string>()->default_value(""),
                                                "only tests whose name contains this")(
      "expected-failures", po::value<std::string>(), "file of tests expected to fail (name  # reason)")(
      "no-canonicalize", "import without the canonicalisation pipeline")(
      "no-fork", "run tests in this process (a crash stops the run)")(
      "timeout", po::value<int>(&s.timeout_s)->default_value(120)->notifier(must_be_positive("--timeout")),
      "seconds per test (with fork)")("verbose,v", "also print skipped and passing tests");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "dir", "folder of ONNX node tests", vm,
                          "\nRuns every subfolder of DIR holding model.onnx, in name order, and prints\n"
                          "FAIL/XFAIL/XPASS lines and a final 'N passed, M failed, K skipped'. Tests using\n"
                          "element types we do not support are skipped. Exit code 1 when any test failed\n"
                          "(an expected failure that passes counts as failed).\n"))
    return 0;
  s.canonicalize = !vm.count("no-canonicalize");
  bool fork_tests = !vm.count("no-fork");
  bool verbose = vm.count("verbose") != 0;
  std::string filter = vm["filter"].as<std::string>();
  make_backend(s.backend);  // fail early on an unknown backend name

  fs::path root = vm["dir"].as<std::string>();
  CB_CHECK(fs::is_directory(root), "'" << root.string() << "' is not a folder");
  std::map<std::string, std::string> xfail;
  if (vm.count("expected-failures")) xfail = read_expected_failures(vm["expected-failures"].as<std::string>());

  std::vector<fs::path> tests;
  for (auto& e : fs::directory_iterator(root))
    if (e.is_directory() && fs::exists(e.path() / "model.onnx") &&
        e.path().filename().string().find(filter) != std::string::npos)
      tests.push_back(e.path());
  std::sort(tests.begin(), tests.end());

  int passed = 0, failed = 0, skipped = 0, expected = 0;
  for (auto& dir : tests) {
    std::string name = dir.filename().string();
    Result r = fork_tests ? run_test_isolated(dir, s) : run_test_guarded(dir, s);
    auto listed = xfail.find(name);
    switch (r.outcome) {
      case Outcome::skip:
        ++skipped;
        if (verbose) std::cout << "SKIP " << name << ": " << r.reason << "\n";
        break;
      case Outcome::pass:
        if (listed != xfail.end()) {
          ++failed;
          std::cout << "XPASS " << name << ": passes, but is listed as an expected failure (" << listed->second
                    << ")\n";
        } else {
          ++passed;
          if (verbose) std::cout << "ok " << name << "\n";
        }
        break;
      case Outcome::fail:
        if (listed != xfail.end()) {
          ++expected;
          std::cout << "XFAIL " << name << ": " << listed->second << "\n";
          if (verbose) std::cout << "  (" << r.reason << ")\n";
        } else {
          ++failed;
          std::cout << "FAIL " << name << ": " << r.reason << "\n";
        }
        break;
    }
    std::cout.flush();
  }
  if (verbose)
    for (auto& [name, reason] : xfail)
      if (!fs::exists(root / name / "model.onnx"))
        std::cout << "note: expected failure '" << name << "' is not a test in " << root.string() << "\n";
  if (expected) std::cout << expected << " expected failures\n";
  std::cout << passed << " passed, " << failed << " failed, " << skipped << " skipped\n";
  return failed ? 1 : 0;
}

}  // namespace cb::tools
