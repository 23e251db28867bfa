// Tests of the Hugging Face builders (frontend/hf_import.h) on the tiny
// models' checkpoints in tests/models/<name>/hf/ (the same seeded models as
// the ONNX files there, written by scripts/make_test_models.py):
//  - the imported graph's logits match the committed ONNX Runtime logits on
//    every case (left padding included) on the reference and cpu backends;
//  - the site finder sees 2 layers and all 7 sites, GPT-Neo's local layer as
//    local; the graph exports to ONNX and reads back computing the same;
//  - parameter names are the state dict's, hf_state_dict/save_hf invert the
//    import, F16/BF16, prefix-less and sharded checkpoints load, and bad
//    checkpoints and configs fail naming what is wrong;
//  - config defaults give transformers' parameter counts; random init has
//    transformers' statistics, is deterministic, and builds runnable models;
//  - `codebook import-hf` writes models that `codebook compile` and `run` take.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "backends/backend.h"
#include "frontend/hf_import.h"
#include "frontend/npy.h"
#include "frontend/onnx_export.h"
#include "frontend/onnx_import.h"
#include "frontend/safetensors.h"
#include "passes/transformer_anatomy.h"
#include "runtime/executable.h"
#include "support/error.h"
#include "support/json.h"
#include "tests/cli_util.h"
#include "tests/test_util.h"

using namespace cb;
using cb::test::max_abs_diff;
namespace fs = std::filesystem;

namespace {

constexpr double kTolerance = 1e-4;  // max |ours - ORT| on the logits
const std::vector<std::string> kModels = {"gpt2", "gpt-neo", "gpt-neox", "gpt-neox-sequential"};

fs::path model_dir(const std::string& model) { return fs::path(CB_SOURCE_DIR) / "tests" / "models" / model; }
fs::path hf_dir(const std::string& model) { return model_dir(model) / "hf"; }

std::vector<fs::path> case_dirs(const std::string& model) {
  std::vector<fs::path> cases;
  for (int i = 0; fs::is_directory(model_dir(model) / ("case" + std::to_string(i))); ++i)
    cases.push_back(model_dir(model) / ("case" + std::to_string(i)));
  return cases;
}

// A case's inputs for our three graph inputs. Models exported without a
// position_ids input compute positions 0..T-1 in the graph (see
// tests/models/README.md), so those cases get exactly that.
std::map<std::string, Tensor> case_feeds(const fs::path& dir) {
  std::map<std::string, Tensor> feeds;
  feeds["input_ids"] = npy_read((dir / "input_ids.npy").string());
  feeds["attention_mask"] = npy_read((dir / "attention_mask.npy").string());
  if (fs::exists(dir / "position_ids.npy")) {
    feeds["position_ids"] = npy_read((dir / "position_ids.npy").string());
  } else {
    const int64_t b = feeds["input_ids"].dim(0), t = feeds["input_ids"].dim(1);
    Tensor pos = Tensor::empty(DType::i64, {b, t});
    for (int64_t i = 0; i < b * t; ++i) pos.data<int64_t>()[i] = i % t;
    feeds["position_ids"] = pos;
  }
  return feeds;
}

Tensor run_logits(std::shared_ptr<Graph> g, const std::string& backend_name,
                  const std::map<std::string, Tensor>& feeds) {
  std::unique_ptr<Backend> backend = make_backend(backend_name);
  std::unique_ptr<Executable> exe = Executable::compile(g, *backend);
  const std::vector<std::string> outputs = exe->output_names();
  EXPECT_EQ(outputs, std::vector<std::string>{"logits"});
  return exe->run(feeds).at(0);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(stmt, text)                                                                       \
  do {                                                                                                 \
    const std::string msg_ = error_of([&] { stmt; });                                                  \
    EXPECT_NE(msg_.find(text), std::string::npos) << "expected '" << text << "' in: '" << msg_ << "'"; \
  } while (0)

class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(fs::temp_directory_path() / ("codebook_hf_" + name + "_" + std::to_string(getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  std::string str(const std::string& file) const { return (path_ / file).string(); }

 private:
  fs::path path_;
};

// The committed checkpoint's tensors, by name.
NamedTensors committed_tensors(const std::string& model) {
  auto f = SafetensorsFile::open((hf_dir(model) / "model.safetensors").string());
  NamedTensors out;
  for (const SafetensorsEntry& e : f->entries()) out.emplace_back(e.name, f->tensor(e.name).clone());
  return out;
}

// A checkpoint dir with the model's config.json and the given tensors.
void write_checkpoint(const fs::path& dir, const std::string& model, const NamedTensors& tensors) {
  fs::create_directories(dir);
  fs::copy_file(hf_dir(model) / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  safetensors_write((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

// ---------------------------------------------------------------------------
// The committed models

using ModelAndBackend = std::tuple<std::string, std::string>;
class HfModel : public ::testing::TestWithParam<ModelAndBackend> {};

TEST_P(HfModel, LogitsMatchOnnxRuntime) {
  const auto& [model, backend] = GetParam();
  std::shared_ptr<Graph> g = import_hf(hf_dir(model).string());
  const std::vector<fs::path> cases = case_dirs(model);
  ASSERT_EQ(cases.size(), 4u);
  for (const fs::path& dir : cases) {
    SCOPED_TRACE(dir.string());
    const Tensor expected = npy_read((dir / "logits.npy").string());
    const Tensor logits = run_logits(g, backend, case_feeds(dir));
    ASSERT_EQ(logits.dims(), expected.dims());
    const double diff = max_abs_diff(logits, expected);
    std::cout << "[" << model << " hf on " << backend << "] " << dir.filename().string() << " "
              << dims_str(expected.dims()) << ": max |ours - ORT| = " << diff << "\n";
    EXPECT_LE(diff, kTolerance);
  }
}

std::string param_name(const ::testing::TestParamInfo<ModelAndBackend>& info) {
  std::string name = std::get<0>(info.param) + "_" + std::get<1>(info.param);
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Committed, HfModel,
                         ::testing::Combine(::testing::ValuesIn(kModels), ::testing::Values("reference", "cpu")),
                         param_name);

void expect_full_anatomy(Graph& g, const std::string& architecture, int64_t layers, bool separate_qkv, bool parallel,
                         const std::vector<std::string>& kinds = {}) {
  const ModelAnatomy a = analyze_model(g);
  EXPECT_EQ(a.architecture, architecture);
  ASSERT_EQ(int64_t(a.layers.size()), layers);
  EXPECT_EQ(a.d_model, 64);
  EXPECT_EQ(a.d_mlp, 256);
  EXPECT_EQ(a.num_heads, 4);
  for (const LayerSites& l : a.layers) {
    SCOPED_TRACE("layer " + std::to_string(l.index));
    EXPECT_EQ(l.parallel_residual, parallel);
    EXPECT_EQ(l.qkv.size(), separate_qkv ? 3u : 1u);
    for (Placement p : kAllPlacements)
      for (const Value* v : site_values(l, p)) EXPECT_NE(v, nullptr) << placement_name(p);
    if (!kinds.empty()) {
      EXPECT_EQ(l.attention_kind, kinds[size_t(l.index)]);
    }
    if (l.index > 0) {
      EXPECT_EQ(l.input, a.layers[size_t(l.index - 1)].output);
    }
  }
}

TEST(HfImport, SiteFinderSeesEveryLayerAndSite) {
  struct Expect {
    std::string model, architecture;
    bool separate_qkv, parallel;
    std::vector<std::string> kinds;
  };
  for (const Expect& e : std::vector<Expect>{{"gpt2", "gpt2", false, false, {}},
                                             {"gpt-neo", "gpt_neo", true, false, {"global", "local"}},
                                             {"gpt-neox", "gpt_neox", false, true, {}},
                                             {"gpt-neox-sequential", "gpt_neox", false, false, {}}}) {
    SCOPED_TRACE(e.model);
    std::shared_ptr<Graph> g = import_hf(hf_dir(e.model).string());
    expect_full_anatomy(*g, e.architecture, 2, e.separate_qkv, e.parallel, e.kinds);
  }
}

TEST(HfImport, ExportedOnnxComputesTheSame) {
  for (const std::string& model : kModels) {
    SCOPED_TRACE(model);
    std::shared_ptr<Graph> g = import_hf(hf_dir(model).string());
    std::shared_ptr<Graph> back = import_onnx_bytes(export_onnx_bytes(*g), "", model + " (exported)");
    ASSERT_EQ(back->inputs.size(), 3u);
    EXPECT_EQ(back->inputs[0]->type.str(), "i64[batch,sequence]");
    ASSERT_EQ(back->outputs.size(), 1u);
    EXPECT_EQ(back->outputs[0]->name, "logits");
    EXPECT_EQ(back->outputs[0]->type.str(), "f32[batch,sequence,500]");
    const auto feeds = case_feeds(model_dir(model) / "case3");
    EXPECT_TRUE(run_logits(g, "reference", feeds).bitwise_equal(run_logits(back, "reference", feeds)));
    expect_full_anatomy(*back, architecture_from_names(*g), 2, model == "gpt-neo", model == "gpt-neox");
  }
}

TEST(HfImport, ParametersKeepTheStateDictNamesAndValues) {
  for (const std::string& model : kModels) {
    SCOPED_TRACE(model);
    const HfConfig c = read_hf_config((hf_dir(model) / "config.json").string());
    std::shared_ptr<Graph> g = import_hf(hf_dir(model).string());
    const NamedTensors state = hf_state_dict(*g, c);
    const NamedTensors file = committed_tensors(model);
    ASSERT_EQ(state.size(), file.size());
    std::map<std::string, Tensor> by_name(file.begin(), file.end());
    int64_t count = 0;
    for (const auto& [name, t] : state) {
      ASSERT_TRUE(by_name.count(name)) << name;
      EXPECT_TRUE(t.bitwise_equal(by_name[name])) << name;
      count += t.numel();
    }
    EXPECT_EQ(count, hf_parameter_count(c));
    // nn.Linear weights are stored [in, out] for MatMul, Conv1D ones as they are.
    for (const HfParameter& p : hf_parameters(c)) {
      const Value* v = g->find_value(p.name);
      ASSERT_TRUE(v && v->is_constant()) << p.name;
      std::vector<int64_t> stored = p.shape;
      if (p.transposed) std::reverse(stored.begin(), stored.end());
      EXPECT_EQ(v->constant->dims(), stored) << p.name;
    }
  }
}

TEST(HfImport, F32WeightsInHuggingFaceLayoutAreNotCopied) {
  // GPT-2's Conv1D weights, biases, norms and embeddings are views of the
  // mapped checkpoint; GPT-NeoX's nn.Linear weights are transposed copies.
  for (const std::string& model : {std::string("gpt2"), std::string("gpt-neox")}) {
    SCOPED_TRACE(model);
    const HfConfig c = read_hf_config((hf_dir(model) / "config.json").string());
    std::shared_ptr<HfCheckpoint> ck = HfCheckpoint::open_dir(hf_dir(model).string());
    HfWeightSource source = ck->source(c);
    std::shared_ptr<Graph> g = build_hf_model(c, source);
    for (const HfParameter& p : hf_parameters(c)) {
      const void* in_graph = g->find_value(p.name)->constant->raw();
      EXPECT_EQ(in_graph == source(p).raw(), !p.transposed) << p.name;
    }
  }
}

TEST(HfImport, SaveHfInvertsTheImport) {
  TempDir tmp("save");
  for (const std::string& model : {std::string("gpt-neo"), std::string("gpt-neox")}) {
    SCOPED_TRACE(model);
    const HfConfig c = read_hf_config((hf_dir(model) / "config.json").string());
    std::shared_ptr<Graph> g = import_hf(hf_dir(model).string());
    const fs::path out = tmp.path() / model;
    save_hf(*g, c, out.string());
    EXPECT_EQ(json_read_file((out / "config.json").string()), json_read_file((hf_dir(model) / "config.json").string()));
    EXPECT_EQ(SafetensorsFile::open((out / "model.safetensors").string())->metadata().at("format"), "pt");
    std::shared_ptr<Graph> again = import_hf(out.string());
    const NamedTensors a = hf_state_dict(*g, c), b = hf_state_dict(*again, c);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second.bitwise_equal(b[i].second)) << a[i].first;
  }
}

// Writes the gpt2 checkpoint with every tensor in a 16-bit dtype; the import
// must equal a model built from the same rounded values in f32.
void check_16_bit_checkpoint(DType dtype) {
  TempDir tmp(std::string(dtype_name(dtype)));
  NamedTensors rounded_f32, sixteen;
  for (auto& [name, t] : committed_tensors("gpt2")) {
    Tensor r = Tensor::empty(DType::f32, t.dims());
    Tensor s = Tensor::empty(dtype, t.dims());
    for (int64_t i = 0; i < t.numel(); ++i) {
      const float v = t.data<float>()[i];
      const uint16_t bits = dtype == DType::f16 ? float_to_half(v) : float_to_bf16(v);
      std::memcpy(static_cast<uint16_t*>(s.raw()) + i, &bits, 2);
      r.data<float>()[i] = dtype == DType::f16 ? half_to_float(bits) : bf16_to_float(bits);
    }
    rounded_f32.emplace_back(name, r);
    sixteen.emplace_back(name, s);
  }
  write_checkpoint(tmp.path() / "16", "gpt2", sixteen);
  write_checkpoint(tmp.path() / "32", "gpt2", rounded_f32);
  const auto feeds = case_feeds(model_dir("gpt2") / "case1");
  const Tensor a = run_logits(import_hf((tmp.path() / "16").string()), "reference", feeds);
  const Tensor b = run_logits(import_hf((tmp.path() / "32").string()), "reference", feeds);
  EXPECT_TRUE(a.bitwise_equal(b));
  // And still close to the f32 model (the rounding is small).
  const double diff = max_abs_diff(a, npy_read((model_dir("gpt2") / "case1" / "logits.npy").string()));
  EXPECT_LT(diff, dtype == DType::f16 ? 1e-2 : 1e-1) << dtype_name(dtype);
  EXPECT_GT(diff, 0.0) << "the 16-bit weights must actually differ";
}

TEST(HfImport, ReadsF16AndBF16Checkpoints) {
  check_16_bit_checkpoint(DType::f16);
  check_16_bit_checkpoint(DType::bf16);
}

TEST(HfImport, ReadsCheckpointsWithoutTheBodyPrefixAndWithBuffers) {
  // GPT2Model-style names ("h.0.attn.c_attn.weight"), plus the old attention
  // mask buffers and a tied lm_head copy, which are ignored.
  TempDir tmp("prefix");
  NamedTensors renamed;
  Tensor wte;
  for (auto& [name, t] : committed_tensors("gpt2")) {
    renamed.emplace_back(name.substr(std::string("transformer.").size()), t);
    if (name == "transformer.wte.weight") wte = t;
  }
  renamed.emplace_back("h.0.attn.bias", Tensor::zeros(DType::f32, {1, 1, 4, 4}));
  renamed.emplace_back("h.1.attn.masked_bias", Tensor::scalar<float>(-1e4f));
  renamed.emplace_back("lm_head.weight", wte);
  write_checkpoint(tmp.path(), "gpt2", renamed);
  const auto feeds = case_feeds(model_dir("gpt2") / "case1");
  EXPECT_TRUE(run_logits(import_hf(tmp.path().string()), "reference", feeds)
                  .bitwise_equal(run_logits(import_hf(hf_dir("gpt2").string()), "reference", feeds)));
}

TEST(HfImport, ReadsGptNeoXOutputMatrixUnderEitherName) {
  TempDir tmp("lm_head");
  NamedTensors renamed;
  for (auto& [name, t] : committed_tensors("gpt-neox"))
    renamed.emplace_back(name == "embed_out.weight" ? "lm_head.weight" : name, t);
  write_checkpoint(tmp.path(), "gpt-neox", renamed);
  const auto feeds = case_feeds(model_dir("gpt-neox") / "case1");
  EXPECT_TRUE(run_logits(import_hf(tmp.path().string()), "reference", feeds)
                  .bitwise_equal(run_logits(import_hf(hf_dir("gpt-neox").string()), "reference", feeds)));
}

TEST(HfImport, ReadsShardedCheckpoints) {
  TempDir tmp("sharded");
  fs::copy_file(hf_dir("gpt-neox") / "config.json", tmp.path() / "config.json");
  NamedTensors shards[2];
  Json index;
  index["metadata"]["total_size"] = 0;
  size_t i = 0;
  for (auto& [name, t] : committed_tensors("gpt-neox")) {
    const size_t s = i++ % 2;
    shards[s].emplace_back(name, t);
    index["weight_map"][name] = "model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
  }
  for (size_t s = 0; s < 2; ++s)
    safetensors_write(tmp.str("model-0000" + std::to_string(s + 1) + "-of-00002.safetensors"), shards[s]);
  json_write_file(tmp.str("model.safetensors.index.json"), index);
  const auto feeds = case_feeds(model_dir("gpt-neox") / "case3");
  EXPECT_TRUE(run_logits(import_hf(tmp.path().string()), "reference", feeds)
                  .bitwise_equal(run_logits(import_hf(hf_dir("gpt-neox").string()), "reference", feeds)));
}

TEST(HfImport, BadCheckpointsNameWhatIsWrong) {
  TempDir tmp("bad");
  const NamedTensors good = committed_tensors("gpt2");
  {  // a missing tensor
    NamedTensors t(good.begin(), good.end());
    t.erase(std::find_if(t.begin(), t.end(), [](auto& nt) { return nt.first == "transformer.h.1.mlp.c_fc.bias"; }));
    write_checkpoint(tmp.path() / "missing", "gpt2", t);
    EXPECT_ERROR(import_hf((tmp.path() / "missing").string()), "no tensor 'transformer.h.1.mlp.c_fc.bias'");
  }
  {  // a wrong shape
    NamedTensors t(good.begin(), good.end());
    for (auto& [name, tensor] : t)
      if (name == "transformer.wpe.weight") tensor = Tensor::zeros(DType::f32, {64, 64});
    write_checkpoint(tmp.path() / "shape", "gpt2", t);
    EXPECT_ERROR(import_hf((tmp.path() / "shape").string()), "'transformer.wpe.weight' is [64,64]");
    EXPECT_ERROR(import_hf((tmp.path() / "shape").string()), "needs [128,64]");
  }
  {  // a tensor the model does not have
    NamedTensors t(good.begin(), good.end());
    t.emplace_back("score.weight", Tensor::zeros(DType::f32, {2, 64}));
    write_checkpoint(tmp.path() / "extra", "gpt2", t);
    EXPECT_ERROR(import_hf((tmp.path() / "extra").string()), "1 tensor is not part of a gpt2 causal LM");
    EXPECT_ERROR(import_hf((tmp.path() / "extra").string()), "'score.weight'");
  }
  {  // an integer tensor where weights belong
    NamedTensors t(good.begin(), good.end());
    for (auto& [name, tensor] : t)
      if (name == "transformer.ln_f.bias") tensor = Tensor::zeros(DType::i64, {64});
    write_checkpoint(tmp.path() / "dtype", "gpt2", t);
    EXPECT_ERROR(import_hf((tmp.path() / "dtype").string()), "'transformer.ln_f.bias' has dtype I64");
  }
  fs::create_directories(tmp.path() / "empty");
  fs::copy_file(hf_dir("gpt2") / "config.json", tmp.path() / "empty" / "config.json");
  EXPECT_ERROR(import_hf((tmp.path() / "empty").string()), "no model.safetensors");
  std::ofstream((tmp.path() / "empty" / "pytorch_model.bin").string()) << "pickle";
  EXPECT_ERROR(import_hf((tmp.path() / "empty").string()), "only pytorch_model.bin");
  EXPECT_ERROR(import_hf((tmp.path() / "nowhere").string()), "config.json");
}

// Hostile checkpoints (docs/reliability.md, "Hostile input files").
TEST(HfImport, ShardIndexNamesMustStayInsideTheFolder) {
  TempDir tmp("shard_escape");
  fs::copy_file(hf_dir("gpt2") / "config.json", tmp.path() / "config.json");
  for (const std::string shard : {"../../../../etc/passwd", "/etc/passwd", "sub/../../x.safetensors"}) {
    Json index;
    index["weight_map"]["transformer.wte.weight"] = shard;
    json_write_file(tmp.str("model.safetensors.index.json"), index);
    const std::string msg = error_of([&] { import_hf(tmp.path().string()); });
    EXPECT_NE(msg.find("weight_map entry 'transformer.wte.weight': shard '" + shard + "'"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("passwd:"), std::string::npos) << "opened the file: " << msg;
  }
}

TEST(HfImport, CheckpointTensorsAreCheckedBeforeBuilding) {
  // A checkpoint whose last layer's tensor has the wrong shape fails before
  // any weight is read or any layer built: the message is the same either
  // way, but the check costs headers only.
  TempDir tmp("late_shape");
  NamedTensors t = committed_tensors("gpt2");
  for (auto& [name, tensor] : t)
    if (name == "transformer.ln_f.weight") tensor = Tensor::zeros(DType::f32, {3});
  write_checkpoint(tmp.path(), "gpt2", t);
  HfConfig c = read_hf_config(tmp.str("config.json"));
  auto ck = HfCheckpoint::open_dir(tmp.path().string());
  EXPECT_ERROR(ck->check(c), "'transformer.ln_f.weight' is [3]");
  EXPECT_NO_THROW(HfCheckpoint::open_dir(hf_dir("gpt2").string())->check(c));
}

// ---------------------------------------------------------------------------
// config.json

HfConfig parse(const std::string& text) { return hf_config_from_json(json_parse(text), "test config"); }

TEST(HfConfig, DefaultsMatchTransformers) {
  // transformers 5.24: AutoModelForCausalLM.from_config(XConfig()).num_parameters()
  EXPECT_EQ(hf_parameter_count(parse(R"({"model_type": "gpt2"})")), 124439808);
  EXPECT_EQ(hf_parameter_count(parse(R"({"model_type": "gpt_neo"})")), 1315575808);
  EXPECT_EQ(hf_parameter_count(parse(R"({"model_type": "gpt_neox"})")), 20554567680);
  // And the committed tiny models (scripts/make_test_models.py printed these).
  const std::map<std::string, int64_t> tiny = {
      {"gpt2", 140288}, {"gpt-neo", 139904}, {"gpt-neox", 164096}, {"gpt-neox-sequential", 164096}};
  for (const auto& [model, count] : tiny)
    EXPECT_EQ(hf_parameter_count(read_hf_config((hf_dir(model) / "config.json").string())), count) << model;
  const HfConfig neo = parse(R"({"model_type": "gpt_neo"})");
  EXPECT_EQ(neo.attention_layers.size(), 24u);
  EXPECT_EQ(neo.attention_layers[1], "local");
  EXPECT_EQ(neo.intermediate_size, 4 * 2048);
  const HfConfig neox = parse(R"({"model_type": "gpt_neox", "hidden_size": 512, "num_attention_heads": 8})");
  EXPECT_EQ(neox.rotary_dims(), 16);
  EXPECT_FALSE(neox.tie_word_embeddings);
  EXPECT_TRUE(neox.use_parallel_residual);
}

TEST(HfConfig, ReadsEachArchitecturesFields) {
  const HfConfig g2 = read_hf_config((hf_dir("gpt2") / "config.json").string());
  EXPECT_EQ(g2.architecture, HfArchitecture::gpt2);
  EXPECT_EQ(g2.num_layers, 2);
  EXPECT_EQ(g2.hidden_size, 64);
  EXPECT_EQ(g2.intermediate_size, 256);  // n_inner null
  EXPECT_EQ(g2.max_positions, 128);
  EXPECT_EQ(g2.activation, "gelu_new");
  EXPECT_TRUE(g2.tie_word_embeddings);
  const HfConfig neo = read_hf_config((hf_dir("gpt-neo") / "config.json").string());
  EXPECT_EQ(neo.attention_layers, (std::vector<std::string>{"global", "local"}));
  EXPECT_EQ(neo.window_size, 8);
  const HfConfig neox = read_hf_config((hf_dir("gpt-neox-sequential") / "config.json").string());
  EXPECT_FALSE(neox.use_parallel_residual);
  EXPECT_DOUBLE_EQ(neox.rotary_pct, 0.25);
  EXPECT_DOUBLE_EQ(neox.rope_theta, 10000.0);
  EXPECT_EQ(neox.activation, "gelu");

  // GPT-Neo: attention_types expands; attention_layers wins when both exist.
  const HfConfig types = parse(R"({"model_type": "gpt_neo", "num_layers": 5, "intermediate_size": null,
      "hidden_size": 32, "attention_types": [[["global", "local"], 2], [["local"], 1]]})");
  EXPECT_EQ(types.attention_layers, (std::vector<std::string>{"global", "local", "global", "local", "local"}));
  EXPECT_EQ(types.intermediate_size, 128);
  const HfConfig layers = parse(R"({"model_type": "gpt_neo", "num_layers": 2,
      "attention_types": [[["global"], 2]], "attention_layers": ["local", "global"]})");
  EXPECT_EQ(layers.attention_layers, (std::vector<std::string>{"local", "global"}));

  // GPT-NeoX rotary settings, old and new spellings.
  const HfConfig old_style = parse(R"({"model_type": "gpt_neox", "rotary_pct": 0.5, "rotary_emb_base": 500})");
  EXPECT_DOUBLE_EQ(old_style.rotary_pct, 0.5);
  EXPECT_DOUBLE_EQ(old_style.rope_theta, 500.0);
  EXPECT_DOUBLE_EQ(parse(R"({"model_type": "gpt_neox", "rope_theta": 1e6})").rope_theta, 1e6);
  const HfConfig v5 = parse(R"({"model_type": "gpt_neox", "rotary_pct": 0.5,
      "rope_parameters": {"rope_type": "default", "rope_theta": 123.0, "partial_rotary_factor": 1.0}})");
  EXPECT_DOUBLE_EQ(v5.rotary_pct, 1.0);
  EXPECT_DOUBLE_EQ(v5.rope_theta, 123.0);
  EXPECT_FALSE(parse(R"({"model_type": "gpt_neox", "attention_bias": false})").attention_bias);
}

TEST(HfConfig, RejectsWhatItCannotBuild) {
  EXPECT_ERROR(parse(R"({"model_type": "llama"})"), "model_type 'llama' is not supported (supported: gpt2");
  EXPECT_ERROR(parse(R"({"n_layer": 2})"), "model_type is missing");
  EXPECT_ERROR(parse(R"([1])"), "must be a JSON object");
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "n_layer": "2"})"), "test config: 'n_layer' must be an integer");
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "n_layer": 1.5})"), "'n_layer' must be an integer");
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "n_head": 0})"), "'n_head' must be positive");
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "n_embd": 100, "n_head": 3})"), "not a multiple of the 3 heads");
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "activation_function": "tanh"})"), "activation_function 'tanh'");
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "add_cross_attention": true})"), "add_cross_attention");
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "scale_attn_weights": 1})"),
               "'scale_attn_weights' must be true or false");
  EXPECT_ERROR(parse(R"({"model_type": "gpt_neo", "num_layers": 3, "attention_types": [[["global"], 2]]})"),
               "2 kinds for 3 layers");
  EXPECT_ERROR(parse(R"({"model_type": "gpt_neo", "num_layers": 1, "attention_layers": ["sparse"]})"),
               "attention kind 'sparse'");
  EXPECT_ERROR(parse(R"({"model_type": "gpt_neox", "rope_scaling": {"type": "linear", "factor": 2.0}})"),
               "'rope_scaling'");
  EXPECT_ERROR(parse(R"({"model_type": "gpt_neox", "rope_parameters": {"rope_type": "yarn"}})"), "RoPE type 'yarn'");
  EXPECT_ERROR(parse(R"({"model_type": "gpt_neox", "hidden_size": 48, "num_attention_heads": 4, "rotary_pct": 0.25})"),
               "must be even");
  EXPECT_ERROR(read_hf_config("/nonexistent/config.json"), "/nonexistent/config.json");
}

// Absurd configs fail when parsed or before anything is built, not after a
// minute and gigabytes of building.
TEST(HfConfig, AbsurdSizesFailAtOnce) {
  const auto start = std::chrono::steady_clock::now();
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "n_layer": 1000000, "n_embd": 8, "n_head": 1})"),
               "1000000 layers is more than codebook supports (1024)");
  EXPECT_ERROR(parse(R"({"model_type": "gpt_neox", "hidden_size": 4294967296, "num_attention_heads": 1})"),
               "hidden size 4294967296 is larger than codebook supports");
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "vocab_size": 9223372036854775807})"), "vocabulary size");
  // 4 x hidden size (the default MLP width) must not wrap around.
  EXPECT_ERROR(parse(R"({"model_type": "gpt2", "n_embd": 4611686018427387904, "n_head": 1})"), "4 x hidden size");
  // A GPT-Neo attention_types repeat of 10^12 stops at the number of layers.
  EXPECT_ERROR(parse(R"({"model_type": "gpt_neo", "num_layers": 2, "attention_types": [[["global"], 1000000000000]]})"),
               "more attention kinds than the 2 layers");
  // Parses (each size is plausible) but its 2^20 x 2^20 matrices (20 TB) cannot be built here.
  const HfConfig huge = parse(R"({"model_type": "gpt2", "n_embd": 1048576, "n_head": 1, "vocab_size": 1048576,
                                  "n_layer": 1, "n_inner": 4, "n_positions": 4})");
  EXPECT_ERROR(build_hf_random(huge, 0), "more than this machine's");
  EXPECT_ERROR(check_hf_model_fits(huge, "cfg"), "cfg: gpt2 model with 1 layers, width 1048576");
  // A GPT-Neo with 10^9 positions: its causal table alone is 10^18 bytes.
  const HfConfig neo = parse(R"({"model_type": "gpt_neo", "num_layers": 1, "attention_layers": ["global"],
                                 "hidden_size": 8, "num_heads": 1, "vocab_size": 10, "max_position_embeddings": 1000000000})");
  EXPECT_ERROR(build_hf_random(neo, 0), "more than this machine's");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  // A config at the limit still builds (parameter count without listing the layers).
  EXPECT_EQ(hf_parameter_count(parse(R"({"model_type": "gpt2", "n_layer": 1024, "n_embd": 8, "n_head": 1,
                                         "vocab_size": 10, "n_positions": 4})")),
            10 * 8 + 4 * 8 + 1024 * (4 * 8 + 8 * 24 + 24 + 8 * 8 + 8 + 8 * 32 + 32 + 32 * 8 + 8) + 2 * 8);
}

// ---------------------------------------------------------------------------
// Random init

struct Moments {
  double mean = 0, std = 0;
  int64_t n = 0;
};
Moments moments(const Tensor& t) {
  Moments m;
  m.n = t.numel();
  for (int64_t i = 0; i < m.n; ++i) m.mean += t.data<float>()[i];
  m.mean /= double(m.n);
  for (int64_t i = 0; i < m.n; ++i) m.std += std::pow(t.data<float>()[i] - m.mean, 2);
  m.std = std::sqrt(m.std / double(m.n));
  return m;
}

TEST(HfRandomInit, HasTransformersStatisticsAndParameterCount) {
  for (const std::string& model : kModels) {
    SCOPED_TRACE(model);
    const HfConfig c = read_hf_config((hf_dir(model) / "config.json").string());
    std::shared_ptr<Graph> g = build_hf_random(c, 7);
    const NamedTensors state = hf_state_dict(*g, c);
    int64_t count = 0;
    std::map<std::string, Tensor> by_name(state.begin(), state.end());
    for (const HfParameter& p : hf_parameters(c)) {
      SCOPED_TRACE(p.name);
      const Tensor& t = by_name.at(p.name);
      ASSERT_EQ(t.dims(), p.shape);
      count += t.numel();
      const Moments m = moments(t);
      switch (p.kind) {
        case HfParameter::Kind::embedding:
        case HfParameter::Kind::linear_weight:
          // Sample mean ~ N(0, std^2/n), sample std within ~1/sqrt(2n): 5 sigmas.
          EXPECT_LT(std::fabs(m.mean), 5 * p.init_std / std::sqrt(double(m.n)));
          EXPECT_LT(std::fabs(m.std / p.init_std - 1), 5 / std::sqrt(2.0 * double(m.n)));
          break;
        case HfParameter::Kind::norm_weight: EXPECT_TRUE(m.mean == 1 && m.std == 0); break;
        case HfParameter::Kind::bias:
        case HfParameter::Kind::norm_bias: EXPECT_TRUE(m.mean == 0 && m.std == 0); break;
      }
    }
    EXPECT_EQ(count, hf_parameter_count(c));
    expect_full_anatomy(*g, architecture_from_names(*g), 2, model == "gpt-neo", model == "gpt-neox");
  }
  // GPT-2 scales its residual output projections by 1/sqrt(2 * n_layer).
  const HfConfig c = read_hf_config((hf_dir("gpt2") / "config.json").string());
  for (const HfParameter& p : hf_parameters(c)) {
    if (p.name.find("c_proj.weight") != std::string::npos) {
      EXPECT_DOUBLE_EQ(p.init_std, 0.02 / 2.0) << p.name;
    } else if (p.kind == HfParameter::Kind::linear_weight || p.kind == HfParameter::Kind::embedding) {
      EXPECT_DOUBLE_EQ(p.init_std, 0.02) << p.name;
    }
  }
}

TEST(HfRandomInit, IsDeterministicPerSeedAndParameter) {
  const HfConfig c = read_hf_config((hf_dir("gpt2") / "config.json").string());
  const NamedTensors a = hf_state_dict(*build_hf_random(c, 1), c);
  const NamedTensors b = hf_state_dict(*build_hf_random(c, 1), c);
  const NamedTensors other = hf_state_dict(*build_hf_random(c, 2), c);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(a[i].second.bitwise_equal(b[i].second)) << a[i].first;
    if (a[i].first.find("weight") != std::string::npos && a[i].first.find("ln_") == std::string::npos) {
      EXPECT_FALSE(a[i].second.bitwise_equal(other[i].second)) << a[i].first;
    }
  }
  // Different parameters get different streams, and a parameter's values do
  // not depend on how many layers the model has.
  std::map<std::string, Tensor> two(a.begin(), a.end());
  EXPECT_FALSE(two["transformer.h.0.mlp.c_fc.weight"].bitwise_equal(two["transformer.h.1.mlp.c_fc.weight"]));
  Json deeper = c.source;
  deeper["n_layer"] = 3;
  const HfConfig c3 = hf_config_from_json(deeper);
  const NamedTensors three = hf_state_dict(*build_hf_random(c3, 1), c3);
  std::map<std::string, Tensor> by3(three.begin(), three.end());
  EXPECT_TRUE(by3["transformer.wte.weight"].bitwise_equal(two["transformer.wte.weight"]));
  EXPECT_TRUE(by3["transformer.h.1.mlp.c_fc.weight"].bitwise_equal(two["transformer.h.1.mlp.c_fc.weight"]));
}

// Variants the committed models do not cover build, run on both backends
// alike, and keep their sites.
TEST(HfRandomInit, ConfigVariantsBuildAndRun) {
  const std::vector<std::pair<std::string, std::string>> variants = {
      {"gpt2 untied, scaled by layer, relu",
       R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 300, "n_positions": 32,
           "tie_word_embeddings": false, "scale_attn_by_inverse_layer_idx": true, "activation_function": "relu"})"},
      {"gpt2 unscaled, silu",
       R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 300, "n_positions": 32,
           "scale_attn_weights": false, "activation_function": "silu"})"},
      {"gpt-neo all local, untied",
       R"({"model_type": "gpt_neo", "num_layers": 2, "hidden_size": 64, "num_heads": 4, "vocab_size": 300,
           "max_position_embeddings": 32, "attention_layers": ["local", "local"], "window_size": 3,
           "tie_word_embeddings": false})"},
      {"gpt-neox full rotary, no attention bias, tied",
       R"({"model_type": "gpt_neox", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "intermediate_size": 256, "vocab_size": 300, "rotary_pct": 1.0, "attention_bias": false,
           "tie_word_embeddings": true, "hidden_act": "gelu_new"})"},
      {"gpt-neox no rotary",
       R"({"model_type": "gpt_neox", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
           "intermediate_size": 256, "vocab_size": 300, "rotary_pct": 0.0})"},
  };
  const auto feeds = case_feeds(model_dir("gpt2") / "case1");  // token ids < 500: clamp below
  std::map<std::string, Tensor> small = feeds;
  for (int64_t i = 0; i < small["input_ids"].numel(); ++i) small["input_ids"].data<int64_t>()[i] %= 300;
  for (const auto& [what, text] : variants) {
    SCOPED_TRACE(what);
    const HfConfig c = hf_config_from_json(json_parse(text), what);
    std::shared_ptr<Graph> g = build_hf_random(c, 5);
    EXPECT_EQ(hf_state_dict(*g, c).size(), hf_parameters(c).size());
    const Tensor ref = run_logits(g, "reference", small), cpu = run_logits(g, "cpu", small);
    EXPECT_EQ(ref.dims(), (std::vector<int64_t>{2, 16, 300}));
    EXPECT_LE(max_abs_diff(ref, cpu), 1e-5);
    const ModelAnatomy a = analyze_model(*g);
    EXPECT_EQ(a.layers.size(), 2u);
  }
  // Local attention with window 3 is what the site finder calls local.
  const HfConfig local = hf_config_from_json(json_parse(variants[2].second));
  std::shared_ptr<Graph> g = build_hf_random(local, 5);
  for (const LayerSites& l : analyze_model(*g).layers) EXPECT_EQ(l.attention_kind, "local");
}

// ---------------------------------------------------------------------------
// The command line

TEST(HfImportCli, ImportCompileAndRun) {
  ASSERT_TRUE(fs::exists(CB_CODEBOOK_BIN)) << CB_CODEBOOK_BIN << " is not built (ninja codebook)";
  const fs::path d = test::temp_dir("import_hf");
  const std::string model = (d / "neox.onnx").string();
  test::Result r = test::run_tool("import-hf " + hf_dir("gpt-neox").string() + " -o " + model);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("gpt_neox: 2 layers, width 64, 4 heads, MLP 256, vocabulary 500, 164096 parameters"),
            std::string::npos)
      << r.out;
  // The written model computes the committed logits.
  std::shared_ptr<Graph> g = import_onnx(model);
  const fs::path case1 = model_dir("gpt-neox") / "case1";
  EXPECT_LE(max_abs_diff(run_logits(g, "cpu", case_feeds(case1)), npy_read((case1 / "logits.npy").string())),
            kTolerance);
  r = test::run_tool("compile " + model + " -o " + (d / "cb.onnx").string() + " --at mlp,attn_preproj --codes 50 -k 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("inserted 4 codebooks"), std::string::npos) << r.out;
  r = test::run_tool("run " + (d / "cb.onnx").string() + " --tokens 5,17,300 --show-codes layer1.mlp");
  EXPECT_EQ(r.code, 0) << r.out;

  r = test::run_tool("import-hf --config " + (hf_dir("gpt2") / "config.json").string() + " --random-init --seed 3 -o " +
                     (d / "rand.onnx").string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("140288 parameters (random init, seed 3)"), std::string::npos) << r.out;
  // Same weights as the library's random init with that seed.
  const HfConfig c = read_hf_config((hf_dir("gpt2") / "config.json").string());
  std::shared_ptr<Graph> written = import_onnx((d / "rand.onnx").string());
  std::shared_ptr<Graph> built = build_hf_random(c, 3);
  for (const HfParameter& p : hf_parameters(c))
    EXPECT_TRUE(written->find_value(p.name)->constant->bitwise_equal(*built->find_value(p.name)->constant)) << p.name;
  fs::remove_all(d);
}

TEST(HfImportCli, BadUsageExitsWithTwo) {
  const fs::path d = test::temp_dir("import_hf_bad");
  const std::string out = " -o " + (d / "x.onnx").string();
  const std::pair<std::string, std::string> bad[] = {
      {"import-hf " + hf_dir("gpt2").string(), "give the output file with -o"},
      {"import-hf" + out, "give a checkpoint DIR, or --config FILE with --random-init"},
      {"import-hf --config " + (hf_dir("gpt2") / "config.json").string() + out, "needs --random-init"},
      {"import-hf " + hf_dir("gpt2").string() + " --seed 3" + out, "--seed only applies with --random-init"},
      {"import-hf " + (d / "nothing").string() + out, "cannot open"},
      {"import-hf " + model_dir("gpt2").string() + out, "config.json"},
  };
  for (const auto& [args, expected] : bad) {
    const test::Result r = test::run_tool(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.out;
    EXPECT_NE(r.out.find(expected), std::string::npos) << args << "\n" << r.out;
  }
  EXPECT_FALSE(fs::exists(d / "x.onnx"));
  fs::remove_all(d);
}

}  // namespace
