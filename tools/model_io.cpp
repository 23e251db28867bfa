#include "tools/model_io.h"

#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>

#include "frontend/hf_import.h"
#include "frontend/onnx_import.h"
#include "frontend/original_checkpoint.h"
#include "passes/codebook_sites.h"
#include "support/error.h"
#include "train/checkpoint.h"
#include "train/training_graph.h"

namespace cb::tools {

LoadedModel load_model(const std::string& path) {
  auto t0 = std::chrono::steady_clock::now();
  LoadedModel m;
  // A Hugging Face checkpoint folder (config.json + safetensors) or an ONNX file.
  std::error_code ec;
  if (is_original_checkpoint(path))  // the original library's saved codebook model
    m.graph = import_original_checkpoint(path);
  else if (std::filesystem::is_directory(path, ec) &&
           std::filesystem::exists(std::filesystem::path(path) / "config.json", ec))
    m.graph = import_hf(path);
  else
    m.graph = import_onnx(path);
  m.import_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

std::string resolve_model_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(path, ec) || fs::exists(fs::path(path) / "config.json", ec)) return path;
  if (fs::exists(fs::path(path) / "model.onnx", ec)) return (fs::path(path) / "model.onnx").string();
  if (!list_checkpoints(path).empty()) return (fs::path(find_checkpoint(path).dir) / "model.onnx").string();
  return path;
}

std::vector<int64_t> parse_token_list(const std::string& s) {
  CB_CHECK(!s.empty(), "--tokens: no token ids given");
  return parse_int_list(s, "token id");
}

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> dims;
  std::stringstream ss(s);
  std::string item;
  int64_t elements = 1;
  while (std::getline(ss, item, 'x')) {
    int64_t v = parse_int(item, "shape dimension");
    CB_CHECK(v > 0, "bad shape '" << s << "': dimensions must be positive");
    CB_CHECK(!__builtin_mul_overflow(elements, v, &elements), "bad shape '" << s << "': too many elements");
    dims.push_back(v);
  }
  CB_CHECK(!dims.empty(), "bad shape '" << s << "'");
  return dims;
}

// The rows of the table the graph input `input` indexes: follow it through ops
// that keep its values (exporters often reshape it first) to the Gather that
// indexes the table.
static int64_t embedding_rows(const Graph& g, const std::string& input) {
  std::set<const Value*> ids;
  for (const Value* v : g.inputs)
    if (v->name == input) ids.insert(v);
  if (ids.empty()) return -1;
  static const std::set<std::string> kValuePreserving = {"Reshape",   "Flatten",  "Cast",  "Squeeze",
                                                         "Unsqueeze", "Identity", "Expand"};
  for (auto& n : g.nodes()) {  // nodes are in topological order
    if (n->inputs.empty() || !n->inputs[0]) continue;
    if (kValuePreserving.count(n->op_type) && ids.count(n->inputs[0]) && n->outputs[0]) {
      ids.insert(n->outputs[0]);
      continue;
    }
    if (n->op_type == "Gather" && n->inputs.size() == 2 && ids.count(n->inputs[1]) && n->inputs[0]->is_constant() &&
        n->attr_int("axis", 0) == 0 && n->inputs[0]->constant->rank() >= 1)
      return n->inputs[0]->constant->dim(0);
  }
  return -1;
}

int64_t vocab_size(const Graph& g) { return embedding_rows(g, "input_ids"); }

int64_t context_length(const Graph& g) { return embedding_rows(g, "position_ids"); }

static void check_token_ids(const Graph& g, const Tensor& ids) {
  CB_CHECK(dtype_is_int(ids.dtype()), "input_ids must be integers, got " << dtype_name(ids.dtype()));
  int64_t vocab = vocab_size(g);
  for (int64_t i = 0; i < ids.numel(); ++i) {
    int64_t t = ids.get_int(i);
    CB_CHECK(t >= 0 && (vocab < 0 || t < vocab), "token id " << t << " at position " << i
                                                             << " is out of range for the vocabulary of " << vocab
                                                             << " tokens");
  }
}

void complete_lm_inputs(const Graph& g, std::map<std::string, Tensor>& inputs) {
  auto it = inputs.find("input_ids");
  if (it == inputs.end()) return;
  const Tensor& ids = it->second;
  check_token_ids(g, ids);
  if (ids.rank() != 2) return;  // the runtime reports the shape mismatch
  for (const Value* v : g.inputs)
    if (!inputs.count(v->name) && (v->name == "attention_mask" || v->name == "position_ids"))
      inputs[v->name] = causal_lm_feeds(std::vector<std::string>{v->name}, ids).at(v->name);
}

std::map<std::string, Tensor> lm_inputs(const Graph& g, const std::vector<int64_t>& ids, int64_t batch, int64_t seq) {
  CB_CHECK(int64_t(ids.size()) == batch * seq, "expected " << batch * seq << " token ids, got " << ids.size());
  bool has_ids = false;
  for (const Value* v : g.inputs) has_ids |= v->name == "input_ids";
  CB_CHECK(has_ids, "the model has no 'input_ids' input, so token ids cannot be fed");
  std::map<std::string, Tensor> in = {{"input_ids", Tensor::from_vector<int64_t>(ids, {batch, seq})}};
  complete_lm_inputs(g, in);
  for (const Value* v : g.inputs)
    CB_CHECK(in.count(v->name), "the model has an input '" << v->name << "' (" << v->type.str()
                                                           << ") that --tokens cannot fill; pass it with --input");
  return in;
}

std::string file_safe(const std::string& name) {
  std::string s = name;
  for (char& c : s)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return s.empty() ? "output" : s;
}

}  // namespace cb::tools
