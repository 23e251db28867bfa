#include "tools/cache/neuron_baseline.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>

#include "backends/backend.h"
#include "passes/interventions.h"
#include "passes/pass.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/cache/cache_build.h"
#include "tools/model_io.h"

namespace fs = std::filesystem;

namespace cb::cache {

std::vector<NeuronMatch> best_neurons_from(const ActivationSource& source, const std::vector<NeuronLayer>& layers,
                                           const std::vector<int64_t>& positions, const std::vector<int64_t>& targets,
                                           int threads, size_t memory_bytes) {
  threads = resolve_thread_count(threads);
  std::vector<NeuronMatch> best(targets.size());
  std::vector<int64_t> layer_of, unit_of;  // of each neuron (column)
  for (const NeuronLayer& l : layers)
    for (int64_t u = 0; u < l.units; ++u) layer_of.push_back(l.layer), unit_of.push_back(u);
  const int64_t U = int64_t(layer_of.size()), m = int64_t(positions.size());
  if (U == 0 || m == 0) return best;
  // The distinct counts n = ⌊r·m⌋ asked for, ascending: their thresholds descend.
  std::vector<int64_t> ns;
  for (int64_t n : targets)
    if (n > 0) ns.push_back(std::min(n, m));
  std::sort(ns.begin(), ns.end());
  ns.erase(std::unique(ns.begin(), ns.end()), ns.end());
  const size_t J = ns.size();
  if (J == 0) return best;
  std::vector<double> best_precision(J, -1);
  std::vector<int64_t> best_unit(J, -1);
  std::vector<float> best_tau(J, 0);

  // Neuron blocks whose matched activations fit in memory_bytes.
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(U, int64_t(memory_bytes / (size_t(m) * 4))));
  std::vector<float> matched;  // [block, m]: column per neuron
  std::vector<float> tau;      // [block, J]
  std::vector<int64_t> hist;   // [block, J + 1]
  for (int64_t u0 = 0; u0 < U; u0 += block) {
    const int64_t nb = std::min(block, U - u0);
    matched.assign(size_t(nb * m), 0.f);
    // Pass 1: the block's activations on the matched tokens.
    size_t next = 0;
    source([&](int64_t first, int64_t tokens, const float* acts) {
      while (next < positions.size() && positions[next] < first) ++next;  // defensive: positions not visited
      for (; next < positions.size() && positions[next] < first + tokens; ++next) {
        const float* row = acts + (positions[next] - first) * U + u0;
        for (int64_t u = 0; u < nb; ++u) matched[size_t(u * m) + next] = row[u];
      }
    });
    // τ per neuron and n: the n-th largest matched activation.
    tau.assign(size_t(nb) * J, 0.f);
    parallel_chunks(nb, size_t(nb * m) * 8, size_t(1) << 16, threads, [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) {
        float* col = matched.data() + u * m;
        std::sort(col, col + m, std::greater<float>());
        for (size_t j = 0; j < J; ++j) tau[size_t(u) * J + j] = col[ns[j] - 1];
      }
    });
    // Pass 2: per neuron, how many cached tokens reach each threshold. hist[j]
    // counts the activations whose first reached threshold is τ_j; the tokens
    // reaching τ_j are then hist[0..j] summed.
    hist.assign(size_t(nb) * (J + 1), 0);
    source([&](int64_t, int64_t tokens, const float* acts) {
      parallel_chunks(nb, size_t(tokens * nb) * 4, size_t(1) << 18, threads, [&](int64_t b, int64_t e) {
        for (int64_t u = b; u < e; ++u) {
          const float* t = tau.data() + size_t(u) * J;
          int64_t* h = hist.data() + size_t(u) * (J + 1);
          for (int64_t i = 0; i < tokens; ++i) {
            float a = acts[i * U + u0 + u];
            // the first j with τ_j <= a (τ descends); J when none
            ++h[std::lower_bound(t, t + J, a, std::greater<float>()) - t];
          }
        }
      });
    });
    for (int64_t u = 0; u < nb; ++u) {
      int64_t reached = 0;
      for (size_t j = 0; j < J; ++j) {
        reached += hist[size_t(u) * (J + 1) + j];
        double precision = reached > 0 ? double(ns[j]) / double(reached) : 0.0;
        if (precision > best_precision[j]) {
          best_precision[j] = precision;
          best_unit[j] = u0 + u;
          best_tau[j] = tau[size_t(u) * J + j];
        }
      }
    }
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] <= 0) continue;
    size_t j = size_t(std::lower_bound(ns.begin(), ns.end(), std::min(targets[i], m)) - ns.begin());
    if (best_unit[j] < 0) continue;
    best[i].layer = layer_of[size_t(best_unit[j])];
    best[i].unit = unit_of[size_t(best_unit[j])];
    best[i].precision = best_precision[j];
    best[i].threshold = best_tau[j];
  }
  return best;
}

ModelActivations model_activations(const CodeCache& cache, int threads) {
  threads = resolve_thread_count(threads);
  const Json& model = cache.manifest().model;
  const Json* file = model.find("file");
  CB_CHECK(file && file->is_string(), cache.dir() << "/cache.json: model.file is missing (which model made the cache)");
  std::string path = file->as_string();
  std::error_code ec;
  if (fs::path(path).is_relative() && fs::exists(fs::path(cache.dir()) / path, ec))
    path = (fs::path(cache.dir()) / path).string();
  CB_CHECK(fs::exists(path, ec), "the cache's model " << file->as_string() << " (cache.json model.file) is not found");
  if (const Json* sha = model.find("sha256"); sha && sha->is_string()) {
    std::string got = model_fingerprint(path);
    CB_CHECK(got == sha->as_string(), "the model " << path << " is not the one the cache " << cache.dir()
                                                   << " was built with (SHA-256 " << got << ", cache.json says "
                                                   << sha->as_string() << ")");
  }
  auto graph = tools::load_model(path).graph;
  const int64_t L = num_layers_of(*graph);
  InterventionSet taps;
  std::vector<std::string> names;
  for (int64_t l = 0; l < L; ++l) {
    taps.taps.push_back("layer" + std::to_string(l) + ".mlp_mid");
    names.push_back("layer" + std::to_string(l) + ".mlp_mid.input");
  }
  InterventionsPass pass(taps);
  PassManager().run(pass, *graph);

  // Compiled once, shared by both passes (the caller runs them in turn).
  struct Runner {
    std::shared_ptr<Graph> graph;
    std::shared_ptr<Backend> backend;
    std::unique_ptr<Executable> exe;
    std::vector<size_t> out_index;  // of each tapped layer among the outputs
  };
  auto r = std::make_shared<Runner>();
  r->graph = graph;
  r->backend = std::shared_ptr<Backend>(make_backend("cpu").release());
  CompileOptions co;
  co.num_threads = threads;
  r->exe = Executable::compile(graph, *r->backend, co);
  std::vector<std::string> outs = r->exe->output_names();
  for (const std::string& n : names) {
    auto it = std::find(outs.begin(), outs.end(), n);
    CB_CHECK(it != outs.end(), "the cache's model has no output " << n << " after tapping it");
    r->out_index.push_back(size_t(it - outs.begin()));
  }
  // One forward of batch rows starting at row r0 (all of the same length).
  auto forward = [r](const CodeCache& c, int64_t r0, int64_t batch) {
    auto rows = c.rows();
    int64_t T = rows[size_t(r0) + 1] - rows[size_t(r0)];
    std::vector<int64_t> ids(size_t(batch * T));
    for (int64_t i = 0; i < batch * T; ++i) ids[size_t(i)] = c.tokens()[size_t(rows[size_t(r0)] + i)];
    std::vector<Tensor> out = r->exe->run(tools::lm_inputs(*r->graph, ids, batch, T));
    std::vector<Tensor> picked;
    for (size_t i : r->out_index) picked.push_back(out[i]);
    return picked;
  };
  ModelActivations ma;
  if (cache.manifest().rows > 0) {
    std::vector<Tensor> first = forward(cache, 0, 1);
    for (int64_t l = 0; l < L; ++l) {
      const Tensor& t = first[size_t(l)];
      CB_CHECK(t.dtype() == DType::f32 && t.rank() == 3, names[size_t(l)] << ": expected f32 [batch, seq, units]");
      ma.layers.push_back({"layer" + std::to_string(l) + ".mlp_mid", l, t.dim(2)});
    }
  }
  std::vector<NeuronLayer> layers = ma.layers;
  const CodeCache* c = &cache;
  ma.source = [c, layers, forward](const ActivationVisitor& visit) {
    int64_t U = 0;
    for (auto& l : layers) U += l.units;
    auto rows = c->rows();
    const int64_t R = int64_t(rows.size()) - 1;
    std::vector<float> buf;
    for (int64_t r0 = 0; r0 < R;) {
      // Consecutive rows of one length go in one batch.
      int64_t T = rows[size_t(r0) + 1] - rows[size_t(r0)], batch = 1;
      while (r0 + batch < R && batch < 32 && rows[size_t(r0 + batch) + 1] - rows[size_t(r0 + batch)] == T) ++batch;
      if (T > 0) {
        std::vector<Tensor> acts = forward(*c, r0, batch);
        const int64_t n = batch * T;
        buf.assign(size_t(n * U), 0.f);
        int64_t col = 0;
        for (size_t l = 0; l < layers.size(); ++l) {
          const float* a = acts[l].data<float>();
          const int64_t w = layers[l].units;
          for (int64_t i = 0; i < n; ++i) std::copy(a + i * w, a + (i + 1) * w, buf.data() + i * U + col);
          col += w;
        }
        visit(rows[size_t(r0)], n, buf.data());
      }
      r0 += batch;
    }
  };
  return ma;
}

std::vector<NeuronMatch> best_neurons(const CodeCache& cache, const std::vector<int64_t>& positions,
                                      const std::vector<int64_t>& targets, int threads) {
  ModelActivations ma = model_activations(cache, threads);
  return best_neurons_from(ma.source, ma.layers, positions, targets, threads);
}

}  // namespace cb::cache
