#include "tools/python/python_model.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "backends/backend.h"
#include "frontend/onnx_export.h"
#include "ir/graph_clone.h"
#include "passes/inference_pipeline.h"
#include "passes/pass.h"
#include "support/error.h"
#include "support/threads.h"
#include "tools/codebook_options.h"
#include "tools/forced_codes.h"
#include "tools/intervention_checks.h"
#include "tools/model_io.h"

namespace cb::python {

TemporaryModelFile::~TemporaryModelFile() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::remove(path, ec);
  // Its external data: "<model file>.<hash>.data" (frontend/onnx_export.h).
  const fs::path model(path);
  const std::string prefix = model.filename().string() + ".";
  for (const auto& e : fs::directory_iterator(model.parent_path().empty() ? "." : model.parent_path(), ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && external_data_hash(name)) fs::remove(e.path(), ec);
  }
}

const Tensor* RunOutputs::find(const std::string& name) const {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return &outs[i];
  return nullptr;
}

const Tensor* RunOutputs::logits() const {
  if (const Tensor* t = find("logits")) return t;
  return outs.size() >= 1 && outs[0].rank() == 3 && dtype_is_float(outs[0].dtype()) ? &outs[0] : nullptr;
}

struct Model::Compiled {
  std::string key;
  std::shared_ptr<Graph> graph;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Executable> exe;
  std::vector<std::string> names;
  std::vector<SiteRef> shown;
};

Model::Model(const std::string& arg, std::shared_ptr<TemporaryModelFile> temp)
    : arg_(arg), path_(tools::resolve_model_path(arg)), temp_(std::move(temp)) {
  graph_ = tools::load_model(path_).graph;
  auto meta = graph_->metadata.find(tools::kTokenizerMetadataKey);
  spec_ = tools::recorded_tokenizer(arg_, meta == graph_->metadata.end() ? "" : meta->second);
  if (spec_) {
    try {
      text_ = tools::TokenText::load(*spec_);
    } catch (const Error&) {  // token strings are then not known; prompts say why
    }
  }
  try {
    num_layers_ = num_layers_of(*graph_);
  } catch (const Error&) {  // not a transformer the site finder knows
  }
}

Model::~Model() = default;

void Model::set_tokenizer(const std::string& spec) {
  text_ = tools::TokenText::load(spec);
  spec_ = spec;
}

namespace {

// The request as text: equal requests compile the same graph.
std::string request_key(const RunRequest& r) {
  std::ostringstream o;
  for (const Intervention& it : r.interventions.items) {
    o << intervention_option(it.kind) << " " << it.site.name() << ":" << int_list_text(it.values) << "@"
      << int_list_text(it.positions);
    if (it.has_slot) o << "#" << it.slot;
    o << ";";
  }
  o << "|zero " << r.interventions.zero_ablation << "|taps";
  for (const std::string& t : r.interventions.taps) o << " " << t;
  o << "|show";
  for (const std::string& s : r.show) o << " " << s;
  o << "|" << r.backend << "|" << precision_name(r.precision) << "|" << r.threads << "|checks";
  if (r.tap_intervened)
    for (const Intervention& it : r.tap_intervened->items) o << " " << it.site.site();
  return o.str();
}

}  // namespace

RunOutputs Model::run(const RunRequest& request, std::map<std::string, Tensor> inputs) {
  std::lock_guard<std::mutex> lock(mutex_);
  set_num_threads(request.threads);
  InterventionSet iv = request.interventions;
  tools::resolve_state_of(iv, path_, request.backend, request.threads);
  RunRequest resolved = request;
  resolved.interventions = iv;
  std::string key = request_key(resolved);
  auto hit = std::find_if(compiled_.begin(), compiled_.end(), [&](auto& c) { return c->key == key; });
  std::shared_ptr<Compiled> c;
  if (hit != compiled_.end()) {
    c = *hit;
    compiled_.erase(hit);
  } else {
    c = std::make_shared<Compiled>();
    c->key = key;
    // The loaded graph serves as it is when nothing changes it.
    bool changes = !iv.empty() || !request.show.empty() || request.tap_intervened;
    c->graph = changes ? tools::load_model(path_).graph : graph_;
    if (changes) {
      InterventionsPass interventions(iv);
      PassManager().run(interventions, *c->graph);
      c->shown = tools::shown_sites(*c->graph, request.show);
      InterventionSet show_taps;
      for (const SiteRef& s : c->shown) show_taps.taps.push_back(s.site());
      InterventionsPass show_pass(show_taps);
      PassManager().run(show_pass, *c->graph);
      if (request.tap_intervened) tools::tap_intervened_sites(*c->graph, *request.tap_intervened);
    }
    c->backend = make_backend(request.backend);
    CompileOptions copts;
    copts.num_threads = request.threads;
    c->exe = Executable::compile(inference_graph(c->graph, request.precision), *c->backend, copts);
    c->names = c->exe->output_names();
  }
  compiled_.insert(compiled_.begin(), c);
  if (compiled_.size() > 2) compiled_.pop_back();
  tools::complete_lm_inputs(*c->graph, inputs);
  RunOutputs out;
  out.graph = c->graph;
  out.names = c->names;
  out.shown = c->shown;
  out.outs = c->exe->run(inputs);
  return out;
}

std::vector<tools::Continuation> Model::generate(GenerateRequest request) {
  std::lock_guard<std::mutex> lock(mutex_);
  set_num_threads(request.threads);
  tools::GenerationRequest& g = request.generation;
  for (const std::vector<int64_t>& prompt : g.prompts) {
    CB_CHECK(!prompt.empty(), "generate: a prompt has no tokens");
    std::map<std::string, Tensor> check{
        {"input_ids", Tensor::from_vector<int64_t>(prompt, {1, int64_t(prompt.size())})}};
    tools::complete_lm_inputs(*graph_, check);  // token ids against the vocabulary
  }
  CB_CHECK(g.stop.texts.empty() || text_,
           "stop_at: text needs a tokenizer; " << arg_ << " records none (load it with tokenizer=...)");
  g.text = text_ ? &*text_ : nullptr;
  if (!request.ignore_eos)
    for (int64_t eos : tools::model_eos_ids(graph_->metadata)) g.stop.sequences.push_back({eos});
  tools::resolve_state_of(request.interventions, path_, request.backend, request.threads);
  RunRequest as_run;
  as_run.interventions = request.interventions;
  as_run.backend = request.backend;
  as_run.precision = request.precision;
  as_run.threads = request.threads;
  const int64_t context = request.context > 0 ? request.context : tools::default_generation_context(*graph_);
  const std::string key = request_key(as_run) + "|context " + std::to_string(context);
  int64_t longest = 0;
  for (const std::vector<int64_t>& p : g.prompts) longest = std::max(longest, int64_t(p.size()));
  if (!generator_ || generator_key_ != key) {
    generator_.reset();
    std::shared_ptr<Graph> graph = clone_graph(*graph_);
    InterventionsPass interventions(request.interventions);
    PassManager().run(interventions, *graph);
    tools::GeneratorOptions o;
    o.context = context;
    o.initial_capacity = longest + g.max_new;
    o.backend = request.backend;
    o.precision = request.precision;
    o.threads = request.threads;
    generator_ = std::make_unique<tools::Generator>(graph, o);
    generator_key_ = key;
  }
  return tools::generate_continuations(*generator_, g);
}

}  // namespace cb::python
