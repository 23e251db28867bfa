#include "tools/cache/cache_build.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <ostream>

#include "backends/backend.h"
#include "backends/cpu/vec_math.h"
#include "passes/codebook_sites.h"
#include "passes/inference_pipeline.h"
#include "passes/interventions.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "support/sha256.h"
#include "support/threads.h"
#include "tools/cache/cache_writer.h"
#include "tools/device_option.h"
#include "tools/model_io.h"
#include "tools/progress.h"
#include "tools/text_io.h"
#include "train/checkpoint.h"
#include "train/train_config.h"

namespace fs = std::filesystem;

namespace cb::cache {

using Clock = std::chrono::steady_clock;

std::string model_fingerprint(const std::string& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return sha256_file(path);
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(path))
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  Sha256 h;
  for (auto& n : names) h.update(n + "\n" + sha256_file((fs::path(path) / n).string()) + "\n");
  return h.hex_digest();
}

namespace {

// The training config of the run MODEL belongs to (a run folder, a checkpoint,
// or a model.onnx inside one), with the folder holding its fsm.npy.
struct RunConfig {
  Json config;
  std::string dir;
};
std::optional<RunConfig> run_config_of(const std::string& model_arg) {
  std::error_code ec;
  std::vector<fs::path> candidates = {fs::path(model_arg)};
  if (!fs::is_directory(model_arg, ec)) candidates = {fs::path(model_arg).parent_path()};
  for (const fs::path& p : candidates) {
    if (p.empty() || !fs::is_directory(p, ec)) continue;
    bool has_state = fs::exists(p / "trainer_state.json", ec) || !list_checkpoints(p.string()).empty();
    if (!has_state) continue;
    CheckpointInfo ck = find_checkpoint(p.string());
    RunConfig r{ck.trainer_state.at("config"), ck.dir};
    if (fs::exists(p / "fsm.npy", ec)) r.dir = p.string();
    return r;
  }
  return std::nullopt;
}

// Fills the TokFSM source options from `tokfsm` (the model's run) or
// `tokfsm:CONFIG.yaml`.
void setup_tokfsm(BuildOptions& o) {
  SourceOptions& s = o.source;
  Json config;
  std::string fsm_dir;
  if (s.spec == "tokfsm") {
    std::optional<RunConfig> rc = run_config_of(o.model_arg);
    CB_CHECK(rc, "--data tokfsm: " << o.model_arg << " is not a `codebook train` run (no config to take the FSM "
                                   << "from); give --data tokfsm:CONFIG.yaml");
    config = resolve_train_config(rc->config, {});
    fsm_dir = rc->dir;
  } else {
    config = resolve_train_config(s.spec.substr(7), {});
  }
  if (!fsm_dir.empty() && fs::exists(fs::path(fsm_dir) / "fsm.npy"))
    config["fsm_args"]["fsm_path"] = (fs::path(fsm_dir) / "fsm.npy").string();
  TrainRunConfig run = parse_train_config(config);
  CB_CHECK(run.dataset == DatasetKind::tokfsm, "--data " << s.spec << ": the config's dataset is not TokFSM");
  RunData data = make_run_data(run);
  s.fsm = data.fsm;
  s.tokfsm_seq_len = o.block_size > 0 ? o.block_size : run.tokfsm.seq_len;
  int64_t tokens = o.max_tokens > 0 ? o.max_tokens : int64_t(1) << 18;
  s.tokfsm_documents = (tokens + s.tokfsm_seq_len - 1) / s.tokfsm_seq_len;
  if (o.tokenizer.empty()) o.tokenizer = "tokfsm:" + std::to_string(run.fsm.base);
}

// The rows of the model's input: documents packed into rows of T tokens, or
// one document per row (split into rows of T, or truncated).
class RowPacker {
 public:
  RowPacker(bool pack, int64_t T) : pack_(pack), T_(T) {}
  // Adds a document's tokens; complete rows go to `rows`.
  void add(const std::vector<int64_t>& ids, std::vector<std::vector<int64_t>>& rows) {
    if (!pack_) {
      for (size_t b = 0; b < ids.size(); b += size_t(T_))
        rows.emplace_back(ids.begin() + long(b), ids.begin() + long(std::min(ids.size(), b + size_t(T_))));
      return;
    }
    pending_.insert(pending_.end(), ids.begin(), ids.end());
    size_t b = 0;
    for (; pending_.size() - b >= size_t(T_); b += size_t(T_))
      rows.emplace_back(pending_.begin() + long(b), pending_.begin() + long(b + size_t(T_)));
    pending_.erase(pending_.begin(), pending_.begin() + long(b));
  }
  void flush(std::vector<std::vector<int64_t>>& rows) {
    if (!pending_.empty()) rows.push_back(std::move(pending_));
    pending_.clear();
  }

 private:
  bool pack_;
  int64_t T_;
  std::vector<int64_t> pending_;
};

// Cuts a document to its first n tokens (text up to where token n starts).
void cut_document(Document& d, size_t n) {
  if (d.ids.size() <= n) return;
  d.text.resize(size_t(d.starts[n]));
  d.ids.resize(n);
  d.starts.resize(n);
}

// The next-token loss of one position: log-sum-exp(logits) - logits[next],
// and whether `next` has the highest logit. Vectorised (vec_math's exp): at
// GPT-2's 50,257 logits a scalar loop cost as much as a small model's forward.
double token_loss(const float* l, int64_t V, int64_t next, bool& correct) {
  using namespace simd;
  int64_t vec_end = V - V % kWidth;
  float mx = -INFINITY;
  if (vec_end > 0) {
    Vec m = load(l);
    for (int64_t v = kWidth; v < vec_end; v += kWidth) m = max_or_nan(m, load(l + v));
    float lanes[kWidth];
    store(lanes, m);
    for (float x : lanes) mx = std::max(mx, x);
  }
  for (int64_t v = vec_end; v < V; ++v) mx = std::max(mx, l[v]);
  Vec sum = splat(0.f), shift = splat(mx);
  for (int64_t v = 0; v < vec_end; v += kWidth) sum = sum + exp_approx(load(l + v) - shift);
  float lanes[kWidth];
  store(lanes, sum);
  double total = 0;
  for (float x : lanes) total += x;
  for (int64_t v = vec_end; v < V; ++v) total += std::exp(double(l[v] - mx));
  correct = l[next] >= mx;
  return std::log(total) - double(l[next] - mx);
}

// Summed next-token loss, correct predictions and predictions of one row (logits [T, V]).
std::array<double, 3> row_metrics(const float* logits, int64_t V, const std::vector<int64_t>& row) {
  double loss = 0, correct = 0;
  for (size_t t = 0; t + 1 < row.size(); ++t) {
    bool hit = false;
    loss += token_loss(logits + int64_t(t) * V, V, row[t + 1], hit);
    correct += hit;
  }
  return {loss, correct, double(row.size() > 0 ? row.size() - 1 : 0)};
}

class Progress {
 public:
  Progress(std::ostream& out, bool tty) : out_(out), bar_(tty), tty_(tty), start_(Clock::now()) {}
  void update(int64_t tokens, double fraction, bool force = false) {
    double t = seconds();
    if (!force && t - last_ < (tty_ ? 0.25 : 5.0)) return;
    last_ = t;
    double rate = t > 0 ? double(tokens - first_tokens_) / t : 0;
    double eta = fraction > 0 ? t * (1 - fraction) / fraction : -1;
    if (tty_) {
      char text[160];
      std::snprintf(text, sizeof text, "%lld tokens  %.0f tok/s  ETA %s", (long long)tokens, rate,
                    tools::duration_str(eta).c_str());
      bar_.update(fraction, text);
    } else {
      Json j = Json::Object{};
      j["event"] = "progress";
      j["tokens"] = tokens;
      j["tokens_per_s"] = std::round(rate * 10) / 10;
      j["fraction"] = std::round(fraction * 1000) / 1000;
      j["elapsed_s"] = std::round(t * 10) / 10;
      if (eta >= 0) j["eta_s"] = std::round(eta * 10) / 10;
      out_ << j.dump() << "\n" << std::flush;
    }
  }
  void set_start_tokens(int64_t n) { first_tokens_ = n; }
  void clear() { bar_.clear(); }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  std::ostream& out_;
  tools::ProgressBar bar_;
  bool tty_;
  Clock::time_point start_;
  double last_ = -1e9;
  int64_t first_tokens_ = 0;
};

}  // namespace

BuildResult build_cache(const BuildOptions& options, std::ostream& progress_out, bool tty) {
  BuildOptions o = options;
  auto device = tools::make_device_backend(o.device);  // first: without a GPU, nothing is read or written
  CB_CHECK(o.shard_count == 0 || (o.shard_index >= 0 && o.shard_index < o.shard_count),
           "--shard " << o.shard_index << "/" << o.shard_count << ": expected I/N with 0 <= I < N");
  bool tokfsm = o.source.spec == "tokfsm" || o.source.spec.rfind("tokfsm:", 0) == 0;
  if (tokfsm) setup_tokfsm(o);
  if (o.block_mode.empty()) o.block_mode = tokfsm ? "document" : "pack";
  CB_CHECK(o.block_mode == "pack" || o.block_mode == "document",
           "--rows '" << o.block_mode << "': expected pack or document");
  CB_CHECK(!o.truncate || o.block_mode == "document", "--truncate applies to --rows document");

  tools::LoadedModel model = tools::load_model(o.model);
  Graph& g = *model.graph;
  if (o.tokenizer.empty()) {
    auto meta = g.metadata.find(tools::kTokenizerMetadataKey);
    std::optional<std::string> spec =
        tools::recorded_tokenizer(o.model_arg, meta == g.metadata.end() ? "" : meta->second);
    o.tokenizer = spec ? *spec : "../shared/data/gpt2-bpe";
  }
  tools::TokenText tokens = tools::TokenText::load(o.tokenizer);
  const int64_t context = tools::context_length(g);
  if (o.block_size <= 0) o.block_size = tokfsm ? o.source.tokfsm_seq_len : context > 0 ? context : 1024;
  CB_CHECK(o.block_size >= 1, "--block-size " << o.block_size);
  CB_CHECK(context <= 0 || o.block_size <= context, "--block-size " << o.block_size << ": longer than the model's "
                                                                    << "context of " << context << " positions");
  int64_t B = o.batch_rows > 0 ? o.batch_rows : std::max<int64_t>(1, o.batch_tokens / o.block_size);
  int64_t vocab = tools::vocab_size(g);

  // The model with every site's codes as outputs, after the logits.
  std::vector<std::string> site_names = tap_all_codes(g, o.scores);
  CB_CHECK(!site_names.empty(), o.model << " has no codebooks (compile it with `codebook compile` first)");
  std::vector<CacheSite> sites;
  for (const std::string& name : site_names) {
    Node* n = find_codebook_node(g, name);
    std::vector<int64_t> codes = n->input(1)->type.shape.sizes();
    SiteRef ref = parse_site(name);
    CacheSite s;
    s.name = name;
    s.layer = ref.layer;
    s.placement = placement_name(ref.placement);
    s.groups = codes.at(0);
    s.codes = codes.at(1);
    s.k = n->attr_int("k", 1);
    s.ids_dtype = ids_dtype_for(s.codes);
    s.scores = o.scores;
    sites.push_back(s);
  }
  auto backend = make_backend("cpu");
  set_num_threads(o.threads);
  CompileOptions co;
  co.num_threads = o.threads;
  auto exe = Executable::compile(placed_inference_graph(model.graph, device.get(), co), *backend, co);
  std::vector<std::string> outputs = exe->output_names();
  std::vector<size_t> ids_out, scores_out;
  for (const CacheSite& s : sites) {
    ids_out.push_back(size_t(std::find(outputs.begin(), outputs.end(), s.name + ".ids") - outputs.begin()));
    if (o.scores)
      scores_out.push_back(size_t(std::find(outputs.begin(), outputs.end(), s.name + ".scores") - outputs.begin()));
  }

  std::unique_ptr<DocumentSource> source = open_source(o.source, tokens);
  CacheManifest manifest;
  manifest.block_mode = o.block_mode;
  manifest.block_size = o.block_size;
  manifest.tokenizer = tools::absolute_tokenizer_spec(o.tokenizer);
  manifest.model = Json::Object{};
  manifest.model["file"] = fs::absolute(o.model).lexically_normal().string();
  manifest.model["sha256"] = model_fingerprint(o.model);
  manifest.model["layers"] = num_layers_of(g);
  manifest.source = source->describe();
  manifest.build = Json::Object{};
  manifest.build["batch_rows"] = B;
  manifest.build["max_tokens"] = o.max_tokens;
  manifest.build["scores"] = o.scores;
  manifest.build["truncate"] = o.truncate;
  manifest.build["threads"] = o.threads;
  manifest.metrics = Json::Object{};
  manifest.shard_index = o.shard_index;
  manifest.shard_count = o.shard_count;

  WriterOptions wo;
  wo.resume = o.resume;
  wo.overwrite = o.overwrite;
  wo.index_memory = o.index_memory;
  wo.fingerprint = manifest.to_json();  // everything that decides the cache's bytes
  CacheWriter writer(o.out_dir, sites, wo);

  BuildResult result;
  Progress progress(progress_out, tty);
  progress.set_start_tokens(writer.tokens());
  RowPacker packer(o.block_mode == "pack", o.block_size);
  std::vector<std::vector<int64_t>> rows, batch;
  int64_t docs = 0, tokens_seen = 0, rows_seen = 0, batches = 0, shard_rows_seen = 0, batches_run = 0;
  double last_checkpoint = 0;

  auto run_batch = [&](bool last) {
    if (batch.empty()) return;
    int64_t b = batches++;
    bool mine = o.shard_count == 0 || b % o.shard_count == o.shard_index;
    int64_t first_shard_row = shard_rows_seen;
    if (mine) shard_rows_seen += int64_t(batch.size());
    // Batches run whole: a resumed build skips those it finished.
    if (!mine || first_shard_row < writer.row_metrics()) {
      batch.clear();
      return;
    }
    int64_t T = 0, n_tokens = 0;
    for (auto& r : batch) T = std::max<int64_t>(T, int64_t(r.size())), n_tokens += int64_t(r.size());
    int64_t rows_in = int64_t(batch.size());
    Tensor ids = Tensor::empty(DType::i64, {rows_in, T});
    const int64_t pad = 0;  // after a row's end: causal attention keeps it from the row's tokens
    for (int64_t r = 0; r < rows_in; ++r)
      for (int64_t t = 0; t < T; ++t)
        ids.data<int64_t>()[r * T + t] = t < int64_t(batch[size_t(r)].size()) ? batch[size_t(r)][size_t(t)] : pad;
    std::map<std::string, Tensor> in = {{"input_ids", ids}};
    tools::complete_lm_inputs(g, in);
    auto t0 = Clock::now();
    std::vector<Tensor> out = exe->run(in);
    result.model_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    const Tensor& logits = out.at(0);
    int64_t V = logits.dim(2);
    // Each row's metrics on its own (row order does not change them).
    std::vector<std::array<double, 3>> metrics(static_cast<size_t>(rows_in));
    parallel_chunks(rows_in, size_t(rows_in * T * V) * 4, size_t(1) << 20, o.threads, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        metrics[size_t(r)] = row_metrics(logits.data<float>() + r * T * V, V, batch[size_t(r)]);
    });
    for (int64_t r = 0; r < rows_in; ++r) {
      int64_t len = int64_t(batch[size_t(r)].size());
      for (size_t s = 0; s < sites.size(); ++s) {
        int64_t per_token = sites[s].groups * sites[s].k;
        const int64_t* site_ids = out.at(ids_out[s]).data<int64_t>() + r * T * per_token;
        const float* site_scores = o.scores ? out.at(scores_out[s]).data<float>() + r * T * per_token : nullptr;
        writer.add_codes(s, site_ids, site_scores, len);
      }
      writer.add_row_metrics(metrics[size_t(r)][0], metrics[size_t(r)][1], metrics[size_t(r)][2]);
    }
    result.tokens_run += n_tokens;
    batch.clear();
    if (++batches_run == o.stop_after_batches) {
      writer.checkpoint();
      CB_FAIL("stopped after " << batches_run << " batches (--stop-after-batches); continue with --resume");
    }
    if (progress.seconds() - last_checkpoint >= o.checkpoint_seconds && !last) {
      writer.checkpoint();
      last_checkpoint = progress.seconds();
    }
    double fraction = source->fraction_read();
    if (o.max_tokens > 0) fraction = std::max(fraction, double(tokens_seen) / double(o.max_tokens));
    progress.update(tokens_seen, fraction);
  };
  auto take_rows = [&] {
    for (auto& r : rows) {
      if (rows_seen++ >= writer.rows()) writer.add_row(int64_t(r.size()));
      batch.push_back(std::move(r));
      if (int64_t(batch.size()) == B) run_batch(false);
    }
    rows.clear();
  };

  Document d;
  while ((o.max_tokens < 0 || tokens_seen < o.max_tokens) && source->next(d)) {
    if (o.truncate) cut_document(d, size_t(o.block_size));
    if (o.max_tokens > 0) cut_document(d, size_t(o.max_tokens - tokens_seen));
    if (vocab > 0)
      for (size_t i = 0; i < d.ids.size(); ++i)
        CB_CHECK(d.ids[i] >= 0 && d.ids[i] < vocab, "--data " << o.source.spec << ": document " << docs << " token "
                                                              << i << " is id " << d.ids[i] << ", outside the model's "
                                                              << "vocabulary of " << vocab << " (wrong --tokenizer?)");
    if (docs++ >= writer.documents()) {
      std::vector<uint32_t> ids32(d.ids.begin(), d.ids.end());
      writer.add_document(d.text, ids32, d.starts);
    }
    tokens_seen += int64_t(d.ids.size());
    packer.add(d.ids, rows);
    take_rows();
  }
  packer.flush(rows);
  take_rows();
  run_batch(true);
  CB_CHECK(docs > 0, "--data " << o.source.spec << ": no documents (empty input)");
  CB_CHECK(docs >= writer.documents(), "--resume: the data has " << docs << " documents, fewer than the "
                                                                 << writer.documents() << " already written");
  progress.update(tokens_seen, 1.0, true);
  progress.clear();
  result.manifest = writer.finish(manifest);
  result.seconds = progress.seconds();
  return result;
}

}  // namespace cb::cache
