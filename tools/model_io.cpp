#include "tools/model_io.h"

#include <omp.h>

#include <chrono>
#include <sstream>

#include "frontend/onnx_import.h"
#include "ir/error.h"

namespace cb::tools {

LoadedModel load_model(const std::string& path) {
  auto t0 = std::chrono::steady_clock::now();
  LoadedModel m;
  m.graph = import_onnx(path);
  m.import_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return m;
}

static int64_t parse_int(const std::string& item, const std::string& what) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(item, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  CB_CHECK(used == item.size() && !item.empty(), "bad " << what << " '" << item << "': not an integer");
  return v;
}

std::vector<int64_t> parse_token_list(const std::string& s) {
  std::vector<int64_t> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) ids.push_back(parse_int(item, "token id"));
  CB_CHECK(!ids.empty(), "--tokens: no token ids given");
  return ids;
}

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> dims;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, 'x')) {
    int64_t v = parse_int(item, "shape dimension");
    CB_CHECK(v > 0, "bad shape '" << s << "': dimensions must be positive");
    dims.push_back(v);
  }
  CB_CHECK(!dims.empty(), "bad shape '" << s << "'");
  return dims;
}

int64_t vocab_size(const Graph& g) {
  const Value* ids = nullptr;
  for (const Value* v : g.inputs)
    if (v->name == "input_ids") ids = v;
  if (!ids) return -1;
  for (auto& n : g.nodes())
    if (n->op_type == "Gather" && n->inputs.size() == 2 && n->inputs[1] == ids && n->inputs[0] &&
        n->inputs[0]->type.shape.rank_known && n->inputs[0]->type.shape.rank() >= 1 &&
        n->inputs[0]->type.shape[0].is_static())
      return n->inputs[0]->type.shape[0].value;
  return -1;
}

std::map<std::string, Tensor> lm_inputs(const Graph& g, const std::vector<int64_t>& ids,
                                        int64_t batch, int64_t seq) {
  CB_CHECK(int64_t(ids.size()) == batch * seq, "expected " << batch * seq << " token ids, got " << ids.size());
  int64_t vocab = vocab_size(g);
  for (size_t i = 0; i < ids.size(); ++i)
    CB_CHECK(ids[i] >= 0 && (vocab < 0 || ids[i] < vocab),
             "token id " << ids[i] << " at position " << i << " is out of range for the vocabulary of "
                         << vocab << " tokens");
  std::map<std::string, Tensor> in;
  bool has_ids = false;
  for (const Value* v : g.inputs) {
    if (v->name == "input_ids") {
      in[v->name] = Tensor::from_vector<int64_t>(ids, {batch, seq});
      has_ids = true;
    } else if (v->name == "attention_mask") {
      in[v->name] = Tensor::from_vector<int64_t>(std::vector<int64_t>(size_t(batch * seq), 1), {batch, seq});
    } else if (v->name == "position_ids") {
      std::vector<int64_t> pos(static_cast<size_t>(batch * seq));
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < seq; ++t) pos[size_t(b * seq + t)] = t;
      in[v->name] = Tensor::from_vector<int64_t>(pos, {batch, seq});
    } else {
      CB_FAIL("the model has an input '" << v->name << "' (" << v->type.str()
                                         << ") that --tokens cannot fill; pass it with --input");
    }
  }
  CB_CHECK(has_ids, "the model has no 'input_ids' input, so --tokens cannot be used");
  return in;
}

void set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

std::string file_safe(const std::string& name) {
  std::string s = name;
  for (char& c : s)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) c = '_';
  return s.empty() ? "output" : s;
}

}  // namespace cb::tools
