// codebook cache build|merge|info|export: the code cache (docs/cache.md).
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "passes/codebook_sites.h"
#include "support/error.h"
#include "tools/cache/cache_build.h"
#include "tools/cache/cache_export.h"
#include "tools/cache/cache_merge.h"
#include "tools/cache/code_cache.h"
#include "tools/command.h"
#include "tools/model_io.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "train/collective.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace cb::tools {

namespace {

using cache::CacheManifest;

// Bytes of every file under `dir`.
int64_t dir_bytes(const std::string& dir) {
  int64_t n = 0;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += int64_t(e.file_size());
  return n;
}

void print_summary(std::ostream& out, const std::string& dir, const CacheManifest& m) {
  out << dir << ": " << m.tokens << " tokens in " << m.documents << " documents (" << m.rows << " rows of "
      << (m.block_mode == "pack" ? "packed" : "per-document") << " blocks of " << m.block_size << ")";
  if (m.is_shard()) out << ", shard " << m.shard_index << " of " << m.shard_count;
  out << "\n  model " << m.model.at("file").as_string() << "\n  data  " << m.source.dump() << "\n  tokenizer "
      << m.tokenizer << "\n";
  if (const Json* loss = m.metrics.find("loss"))
    out << "  loss " << std::fixed << std::setprecision(4) << loss->as_double() << ", next-token accuracy "
        << m.metrics.at("accuracy").as_double() << std::defaultfloat << "\n";
  out << "  sites (codes per member, k, dead-code fraction):\n";
  const Json* dead = m.metrics.find("dead_code_fraction");
  for (auto& s : m.sites) {
    out << "    " << std::left << std::setw(30)
        << (s.groups > 1 ? s.name + "[0.." + std::to_string(s.groups - 1) + "]" : s.name) << std::right << s.codes
        << " codes, k " << s.k;
    if (dead && dead->find(s.name))
      out << ", dead " << std::fixed << std::setprecision(3) << dead->at(s.name).as_double() << std::defaultfloat;
    out << (s.scores ? ", scores" : "") << "\n";
  }
}

// `codebook cache build` under mpirun (N ranks): rank r builds shard r/N
// beside the output (OUT.rank-r-of-N), and once every shard is complete rank
// 0 merges them into OUT (byte for byte the one-process cache) and removes
// them. --resume resumes each rank's shard; --threads is per machine, shared
// by its ranks. Rank 0 alone reports.
cache::BuildResult build_cache_on_ranks(cache::BuildOptions o, Collective& ranks, std::ostream& progress, bool tty) {
  CB_CHECK(o.shard_count == 0, "--shard: under mpirun rank r of N builds shard r/N itself; give no --shard");
  const int n = ranks.size();
  const std::string out = o.out_dir;
  auto shard_dir = [&](int r) { return out + ".rank-" + std::to_string(r) + "-of-" + std::to_string(n); };
  if (ranks.is_root())
    CB_CHECK(o.overwrite || !fs::exists(out), out << " already exists: give --overwrite to replace it");
  o.shard_index = ranks.rank();
  o.shard_count = n;
  o.out_dir = shard_dir(ranks.rank());
  o.threads = std::max(1, o.threads / ranks.local_size());
  std::ostream null_stream(nullptr);
  cache::BuildResult r = cache::build_cache(o, ranks.is_root() ? progress : null_stream, tty);
  std::vector<int64_t> tokens_run = {r.tokens_run};
  ranks.allreduce_sum(std::span<int64_t>(tokens_run), "the end of every shard of the cache build");
  r.tokens_run = tokens_run[0];
  if (!ranks.is_root()) return r;
  std::vector<std::string> shards;
  for (int i = 0; i < n; ++i) shards.push_back(shard_dir(i));
  r.manifest = cache::merge_shards(shards, out, o.overwrite, o.index_memory);
  for (const std::string& s : shards) fs::remove_all(s);
  return r;
}

int cache_build(int argc, char** argv) {
  po::options_description opts("usage: codebook cache build MODEL -o DIR --data SOURCE [options]\n\noptions");
  opts.add_options()("output,o", po::value<std::string>()->required(), "the cache directory to write")(
      "data", po::value<std::string>()->required(),
      "a text file, .jsonl, .npy of token ids, or tokfsm / tokfsm:CONFIG.yaml")(
      "doc-split", po::value<std::string>()->default_value("line"),
      "text files: line (a document per line), blank-line (per paragraph), sep:STRING (lines equal to STRING "
      "separate documents, e.g. sep:% for fortune files)")(
      "text-field", po::value<std::string>()->default_value("text"), "JSONL: the field holding the text")(
      "tokenizer", po::value<std::string>(),
      "tokenizer folder or tokfsm[:BASE] (default: the model's, else ../shared/data/gpt2-bpe)")(
      "rows", po::value<std::string>(),
      "pack (documents concatenated and cut into blocks; default for text) or document (a document per row; "
      "default for tokfsm)")("truncate", po::bool_switch(), "--rows document: drop tokens past --block-size")(
      "block-size", po::value<int64_t>()->default_value(0)->notifier(must_be_non_negative("--block-size")),
      "tokens per row (default: the TokFSM sequence length, else the model's context, else 1024)")(
      "batch-size", po::value<int64_t>()->default_value(0)->notifier(must_be_non_negative("--batch-size")),
      "rows per forward pass (default: ~4096 tokens)")(
      "max-tokens",
      po::value<int64_t>()->default_value(-1)->notifier(must_be_minus_one_or_positive("the default", "--max-tokens")),
      "stop after this many tokens (tokfsm: sequences for this many; default 262144)")(
      "seed", po::value<uint64_t>()->default_value(0), "tokfsm: the sample seed")(
      "scores", po::bool_switch(), "also store each code's score (float16)")(
      "threads", po::value<int>()->default_value(2)->notifier(must_be_thread_count("--threads", false)), "threads")(
      "device", po::value<std::string>()->default_value("cpu"),
      "cpu | cuda: run the model on the GPU where its kernels can (docs/cuda.md)")(
      "shard", po::value<std::string>(), "I/N: compute only batches b with b mod N = I (join with cache merge)")(
      "resume", po::bool_switch(), "continue an interrupted build of the same command")(
      "overwrite", po::bool_switch(), "replace an existing cache at -o")(
      "index-memory-mb",
      po::value<int64_t>()->default_value(256)->notifier(
          must_be_in_range<int64_t>(1, int64_t(1) << 30, "--index-memory-mb")),
      "memory for building the inverted index")("progress", po::value<std::string>()->default_value("auto"),
                                                "auto (a bar on a terminal, JSON lines otherwise), bar, json, off")(
      "json", po::bool_switch(), "print the summary as JSON");
  po::options_description hidden;
  hidden.add_options()(
      "stop-after-batches",
      po::value<int64_t>()->default_value(-1)->notifier(must_be_minus_one_or_positive("never", "--stop-after-batches")),
      "tests: stop as if interrupted after N batches")(
      "checkpoint-seconds",
      po::value<double>()->default_value(30)->notifier(must_be_non_negative("--checkpoint-seconds")),
      "tests: record the progress (for --resume) at most this often (0: after every batch)");
  opts.add(hidden);
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "model", "a compiled model, or a `codebook train` run folder", vm,
                          "\nRuns MODEL over a dataset and records the codes of every token at every codebook\n"
                          "site, with an inverted index from each code to where it fires. Docs: docs/cache.md.\n"
                          "Under `mpirun -np N` rank r builds shard r/N and rank 0 merges them into -o\n"
                          "(docs/scale.md).\n"))
    return 0;
  cache::BuildOptions o;
  o.model_arg = vm["model"].as<std::string>();
  o.model = resolve_model_path(o.model_arg);
  o.out_dir = vm["output"].as<std::string>();
  o.source.spec = vm["data"].as<std::string>();
  o.source.doc_split = vm["doc-split"].as<std::string>();
  o.source.text_field = vm["text-field"].as<std::string>();
  o.source.tokfsm_seed = vm["seed"].as<uint64_t>();
  if (vm.count("tokenizer")) o.tokenizer = vm["tokenizer"].as<std::string>();
  if (vm.count("rows")) o.block_mode = vm["rows"].as<std::string>();
  o.truncate = vm["truncate"].as<bool>();
  o.block_size = vm["block-size"].as<int64_t>();
  o.batch_rows = vm["batch-size"].as<int64_t>();
  o.max_tokens = vm["max-tokens"].as<int64_t>();
  o.scores = vm["scores"].as<bool>();
  o.threads = vm["threads"].as<int>();
  o.device = vm["device"].as<std::string>();
  o.resume = vm["resume"].as<bool>();
  o.stop_after_batches = vm["stop-after-batches"].as<int64_t>();
  o.checkpoint_seconds = vm["checkpoint-seconds"].as<double>();
  o.overwrite = vm["overwrite"].as<bool>();
  int64_t mb = vm["index-memory-mb"].as<int64_t>();
  o.index_memory = size_t(mb) << 20;
  if (vm.count("shard")) {
    std::string s = vm["shard"].as<std::string>();
    size_t slash = s.find('/');
    CB_CHECK(slash != std::string::npos, "--shard '" << s << "': expected I/N, e.g. 0/4");
    o.shard_index = parse_int(s.substr(0, slash), "shard index", "--shard " + s);
    o.shard_count = parse_int(s.substr(slash + 1), "shard count", "--shard " + s);
    CB_CHECK(o.shard_count >= 1 && o.shard_index >= 0 && o.shard_index < o.shard_count,
             "--shard '" << s << "': expected I/N with 0 <= I < N");
  }
  std::string progress = vm["progress"].as<std::string>();
  CB_CHECK(progress == "auto" || progress == "bar" || progress == "json" || progress == "off",
           "--progress '" << progress << "': expected auto, bar, json or off");
  bool tty = progress == "bar" || (progress == "auto" && isatty(2));
  std::ostream null_stream(nullptr);
  Collective& ranks = world_collective();
  std::ostream& progress_stream = progress == "off" ? null_stream : std::cerr;
  cache::BuildResult r = ranks.distributed() ? build_cache_on_ranks(o, ranks, progress_stream, tty)
                                             : cache::build_cache(o, progress_stream, tty);
  if (!ranks.is_root()) return 0;
  int64_t bytes = dir_bytes(o.out_dir);
  double tps = r.seconds > 0 ? double(r.tokens_run) / r.seconds : 0;
  if (vm["json"].as<bool>()) {
    Json j = r.manifest.to_json();
    j["cache"] = o.out_dir;
    j["seconds"] = r.seconds;
    j["model_seconds"] = r.model_seconds;
    j["tokens_run"] = r.tokens_run;
    j["tokens_per_s"] = tps;
    j["bytes"] = bytes;
    j["bytes_per_token"] = r.manifest.tokens ? double(bytes) / double(r.manifest.tokens) : 0.0;
    std::cout << j.dump() << "\n";
    return 0;
  }
  print_summary(std::cout, o.out_dir, r.manifest);
  std::cout << "  built in " << std::fixed << std::setprecision(1) << r.seconds << " s (" << std::setprecision(0) << tps
            << " tokens/s, model " << std::setprecision(1) << r.model_seconds << " s); " << bytes << " bytes, "
            << std::setprecision(1) << (r.manifest.tokens ? double(bytes) / double(r.manifest.tokens) : 0.0)
            << " per token\n"
            << std::defaultfloat;
  if (!r.manifest.is_shard()) std::cout << "search it: codebook search " << o.out_dir << " REGEX\n";
  return 0;
}

int cache_merge(int argc, char** argv) {
  po::options_description opts("usage: codebook cache merge SHARD_DIR... -o DIR\n\noptions");
  opts.add_options()("output,o", po::value<std::string>()->required(), "the merged cache")(
      "overwrite", po::bool_switch(), "replace an existing cache at -o");
  po::variables_map vm;
  if (!parse_command_line_list(argc, argv, opts, "shards", "the shard directories", vm,
                               "\nJoins the shards of one `codebook cache build --shard I/N` into the cache an\n"
                               "unsharded build writes (byte for byte).\n"))
    return 0;
  std::vector<std::string> shards;
  if (vm.count("shards")) shards = vm["shards"].as<std::vector<std::string>>();
  std::string out = vm["output"].as<std::string>();
  CacheManifest m = cache::merge_shards(shards, out, vm["overwrite"].as<bool>());
  print_summary(std::cout, out, m);
  return 0;
}

int cache_info(int argc, char** argv) {
  po::options_description opts("usage: codebook cache info CACHE [--json]\n\noptions");
  opts.add_options()("json", po::bool_switch(), "print cache.json");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "cache", "a code cache directory", vm,
                          "\nChecks a code cache (every array against cache.json) and summarises it.\n"))
    return 0;
  std::string dir = vm["cache"].as<std::string>();
  cache::CodeCache c = cache::CodeCache::open(dir, /*require_index=*/false);
  if (vm["json"].as<bool>())
    std::cout << c.manifest().to_json().dump(2) << "\n";
  else
    print_summary(std::cout, dir, c.manifest());
  return 0;
}

}  // namespace

int cmd_cache(int argc, char** argv) {
  struct Sub {
    const char* name;
    const char* summary;
    int (*main)(int, char**);
  };
  static const Sub subs[] = {
      {"build", "run a model over a dataset and record every token's codes", cache_build},
      {"merge", "join the shards of a build", cache_merge},
      {"info", "check a cache and summarise it", cache_info},
      {"export", "write a cache in the original library's layout or as npz archives", cache_export_main},
  };
  auto usage = [&](std::ostream& os) {
    os << "usage: codebook cache <build|merge|info|export> [options]   (docs/cache.md)\n";
    for (auto& s : subs) os << "  " << std::left << std::setw(8) << s.name << s.summary << "\n";
  };
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  for (auto& s : subs)
    if (!std::strcmp(argv[1], s.name)) return s.main(argc - 1, argv + 1);
  std::cerr << "error: unknown cache command '" << argv[1] << "'\n";
  usage(std::cerr);
  return 2;
}

}  // namespace cb::tools
