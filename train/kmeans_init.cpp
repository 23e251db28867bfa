#include "train/kmeans_init.h"

#include <cmath>

#include "ir/codebook.h"
#include "passes/canonicalize.h"
#include "support/error.h"
#include "train/kmeans.h"
#include "train/parameters.h"
#include "train/training_graph.h"

namespace cb {

std::map<std::string, Tensor> kmeans_codes(const ModelFactory& model, const TokenDataset& data,
                                           const TrainRunConfig& run, const Backend& backend) {
  std::shared_ptr<Graph> g = model();
  struct Site {
    std::string codes_name;
    int64_t groups, num_codes, dim;
    float epsilon;
    std::vector<MiniBatchKMeans> members;
  };
  std::vector<Site> sites;
  std::vector<Node*> cbs;
  for (auto& n : g->nodes())
    if (n->domain == kCodebookDomain && n->op_type == kCodebookOp) cbs.push_back(n.get());
  CB_CHECK(!cbs.empty(), "kmeans_init: the model has no codebooks");
  std::vector<Value*> taps;
  for (Node* n : cbs) {
    const Tensor& codes = *n->input(1)->constant;
    Site s{n->input(1)->name, codes.dim(0), codes.dim(1), codes.dim(2), n->attr_float("epsilon", 1e-5f), {}};
    for (int64_t m = 0; m < s.groups; ++m) {
      KMeansConfig kc;
      kc.num_clusters = s.num_codes;
      kc.dim = s.dim;
      kc.seed = run.codebooks.seed + uint64_t(m);
      kc.num_threads = run.trainer.num_threads;
      s.members.emplace_back(kc);
    }
    sites.push_back(std::move(s));
    // Bypass: the codebook's readers read its input.
    g->replace_all_uses(n->outputs[0], n->input(0));
    taps.push_back(n->input(0));
  }
  g->remove_nodes_if([](const Node& n) { return n.domain == kCodebookDomain && n.op_type == kCodebookOp; });
  g->outputs = taps;
  canonicalize(*g);
  CompileOptions co;
  co.num_threads = run.trainer.num_threads;
  auto exe = Executable::compile(g, backend, co);

  int64_t seen = 0;
  std::vector<float> rows;
  for (int64_t step = 0; seen < run.kmeans_init_examples; ++step) {
    Tensor ids = data.train_batch(step, run.trainer.batch_size);
    seen += ids.dim(0);
    std::vector<Tensor> out = exe->run(causal_lm_feeds(*g, ids));
    for (size_t i = 0; i < sites.size(); ++i) {
      Site& s = sites[i];
      const Tensor& x = out[i];  // [B, T, G * d]
      int64_t tokens = x.numel() / (s.groups * s.dim);
      rows.resize(size_t(tokens * s.dim));
      for (int64_t m = 0; m < s.groups; ++m) {
        for (int64_t t = 0; t < tokens; ++t) {
          const float* src = x.data<float>() + (t * s.groups + m) * s.dim;
          float* dst = rows.data() + t * s.dim;
          double mean = 0, var = 0;
          for (int64_t j = 0; j < s.dim; ++j) mean += src[j];
          mean /= double(s.dim);
          for (int64_t j = 0; j < s.dim; ++j) var += (src[j] - mean) * (src[j] - mean);
          double inv = 1.0 / std::sqrt(var / double(s.dim) + double(s.epsilon));
          for (int64_t j = 0; j < s.dim; ++j) dst[j] = float((src[j] - mean) * inv);
        }
        s.members[size_t(m)].partial_fit(rows.data(), tokens);
      }
    }
  }
  std::map<std::string, Tensor> codes;
  for (Site& s : sites) {
    Tensor t = Tensor::empty(DType::f32, {s.groups, s.num_codes, s.dim});
    for (int64_t m = 0; m < s.groups; ++m) {
      CB_CHECK(s.members[size_t(m)].initialized(),
               "kmeans_init: " << seen << " examples gave fewer rows than the " << s.num_codes
                               << " codes; raise codebook_args.kmeans_init_examples");
      const std::vector<float>& c = s.members[size_t(m)].centers();
      std::copy(c.begin(), c.end(), t.data<float>() + m * s.num_codes * s.dim);
    }
    codes[s.codes_name] = t;
  }
  return codes;
}

ModelFactory kmeans_initialized_factory(ModelFactory model, const TokenDataset& data, const TrainRunConfig& run,
                                        const Backend& backend) {
  auto codes = std::make_shared<std::map<std::string, Tensor>>(kmeans_codes(model, data, run, backend));
  return [model, codes] {
    std::shared_ptr<Graph> g = model();
    assign_constants(*g, *codes);
    return g;
  };
}

}  // namespace cb
