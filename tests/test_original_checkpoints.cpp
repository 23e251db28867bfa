// Checkpoints saved by the original codebook-features library
// (frontend/original_checkpoint.h): the tiny folders of tests/data/original_ckpt
// (written by make_fixtures.py in the original's layout: CodebookModelConfig,
// renamed state dict) load as compiled models whose logits and code ids
// match the numpy implementation of the original's forward pass; the graph is
// the one `codebook compile` makes; the CLI imports and runs them; and bad
// folders fail naming what is wrong.
#include <gtest/gtest.h>

#include <filesystem>

#include "backends/backend.h"
#include "frontend/hf_import.h"
#include "frontend/npy.h"
#include "frontend/original_checkpoint.h"
#include "frontend/safetensors.h"
#include "ir/printer.h"
#include "passes/interventions.h"
#include "passes/pass.h"
#include "runtime/executable.h"
#include "tests/cli_util.h"
#include "tests/test_util.h"
#include "tools/model_io.h"

using namespace cb;
namespace fs = std::filesystem;

namespace {

const fs::path kFixtures = fs::path(CB_SOURCE_DIR) / "tests" / "data" / "original_ckpt";

struct Case {
  std::string name, arch;
  std::vector<std::string> sites;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

const Json& index_json() {
  static const Json j = json_read_file((kFixtures / "cases.json").string());
  return j;
}

std::vector<int64_t> tokens() {
  std::vector<int64_t> t;
  for (const Json& v : index_json().at("tokens").as_array()) t.push_back(v.as_int());
  return t;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (const Json& c : index_json().at("cases").as_array()) {
    Case k{c.at("name").as_string(), c.at("arch").as_string(), {}};
    for (const Json& s : c.at("sites").as_array()) k.sites.push_back(s.as_string());
    out.push_back(k);
  }
  return out;
}

std::string tokens_text() {
  std::string s;
  for (int64_t t : tokens()) s += (s.empty() ? "" : ",") + std::to_string(t);
  return s;
}

// Runs `g` on the fixture tokens with every codebook site tapped.
std::map<std::string, Tensor> run_tapped(std::shared_ptr<Graph> g, const std::vector<std::string>& sites,
                                         const std::string& backend) {
  InterventionSet taps;
  taps.taps = sites;
  apply_interventions(*g, taps);
  const std::vector<int64_t> ids = tokens();
  auto b = make_backend(backend);
  auto exe = Executable::compile(g, *b);
  auto outs = exe->run(tools::lm_inputs(*g, ids, 1, int64_t(ids.size())));
  std::map<std::string, Tensor> named;
  const std::vector<std::string> names = exe->output_names();
  for (size_t i = 0; i < outs.size(); ++i) named[names[i]] = outs[i];
  return named;
}

// A copy of a fixture folder to break in a test.
fs::path copy_case(const std::string& name, const std::string& tag) {
  const fs::path d = test::temp_dir("orig_ckpt_" + tag) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  for (const char* f : {"config.json", "base_config.json", "model.safetensors"})
    fs::copy_file(kFixtures / name / f, d / f);
  return d;
}

// Rewrites DIR/model.safetensors through `edit`.
void edit_tensors(const fs::path& dir, const std::function<void(NamedTensors&)>& edit) {
  NamedTensors tensors;
  {
    auto f = SafetensorsFile::open((dir / "model.safetensors").string());
    for (const SafetensorsEntry& e : f->entries()) tensors.emplace_back(e.name, f->tensor(e.name).clone());
  }
  edit(tensors);
  safetensors_write((dir / "model.safetensors").string(), tensors);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class OriginalCheckpoint : public testing::TestWithParam<Case> {};

// Logits within 1e-4 of the numpy forward pass of the original, ids exactly
// its ids, on both backends.
TEST_P(OriginalCheckpoint, MatchesTheOriginalsForwardPass) {
  const Case& c = GetParam();
  const fs::path dir = kFixtures / c.name;
  for (const char* backend : {"reference", "cpu"}) {
    SCOPED_TRACE(std::string(backend) + " backend, " + c.name);
    std::shared_ptr<Graph> g = import_original_checkpoint(dir.string());
    ASSERT_EQ(codebook_nodes(*g).size(), c.sites.size());
    auto out = run_tapped(g, c.sites, backend);
    const Tensor want = npy_read((dir / "expected" / "logits.npy").string());
    ASSERT_EQ(out.at("logits").dims(), want.dims());
    EXPECT_LT(test::max_abs_diff(out.at("logits"), want), 1e-4);
    for (const std::string& site : c.sites) {
      const Tensor ids = npy_read((dir / "expected" / (site + ".ids.npy")).string());
      const Tensor& got = out.at(site + ".ids");
      ASSERT_EQ(got.dims(), ids.dims()) << site;
      for (int64_t i = 0; i < ids.numel(); ++i) ASSERT_EQ(got.get_int(i), ids.get_int(i)) << site << " element " << i;
    }
  }
}

// The folder's base model, compiled by the insertion pass with the folder's
// configuration and given its saved codes, is the imported graph: same nodes,
// names, attributes, weights and metadata. The plain folder is made by name
// alone: "model." and the wrappers' "module_layer" segments dropped, the
// codebook tensors left out.
TEST_P(OriginalCheckpoint, IsTheGraphCompileMakes) {
  const Case& c = GetParam();
  const fs::path plain = test::temp_dir("orig_ckpt_plain") / c.name;
  fs::remove_all(plain);
  fs::create_directories(plain);
  fs::copy_file(kFixtures / c.name / "base_config.json", plain / "config.json");
  NamedTensors base;
  auto f = SafetensorsFile::open((kFixtures / c.name / "model.safetensors").string());
  for (const SafetensorsEntry& e : f->entries()) {
    if (e.name.find("codebook_layer") != std::string::npos) continue;
    std::string name = e.name.substr(std::string("model.").size());
    for (size_t at; (at = name.find(".module_layer")) != std::string::npos;) name.erase(at, 13);
    base.emplace_back(name, f->tensor(e.name));
  }
  safetensors_write((plain / "model.safetensors").string(), base);

  std::shared_ptr<Graph> imported = import_original_checkpoint((kFixtures / c.name).string());
  std::shared_ptr<Graph> compiled = import_hf(plain.string());
  const HfConfig base_config = read_hf_config((plain / "config.json").string());
  const Json config = json_read_file((kFixtures / c.name / "config.json").string());
  InsertCodebooksPass insert(original_codebook_config(config, base_config).codebooks);
  PassManager().run(insert, *compiled);
  for (Node* n : codebook_nodes(*compiled))
    for (size_t i = 1; i <= 3; ++i) n->inputs[i]->constant = *imported->find_value(n->inputs[i]->name)->constant;

  PrintOptions po;
  po.elide_large_constants = true;
  po.max_inline_elements = 0;
  EXPECT_EQ(print_graph(*imported, po), print_graph(*compiled, po));
  EXPECT_EQ(imported->metadata, compiled->metadata);
  EXPECT_NE(imported->metadata.at("codebook.config").find("\"site\": \"" + c.sites[0] + "\""), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OriginalCheckpoint, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<Case>& i) { return i.param.name; });

// The fixtures are what the generator writes (when python3 and numpy are there).
TEST(OriginalCheckpointFixtures, AreWhatTheGeneratorWrites) {
  if (std::system("python3 -c 'import numpy' >/dev/null 2>&1") != 0) GTEST_SKIP() << "no python3 with numpy";
  const fs::path out = test::temp_dir("orig_ckpt_gen");
  fs::remove_all(out);
  fs::create_directories(out);
  const std::string cmd = "python3 " + (kFixtures / "make_fixtures.py").string() + " " + out.string() + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  for (const Case& c : cases()) {
    std::vector<std::string> files = {"config.json", "base_config.json", "model.safetensors"};
    for (const std::string& site : c.sites) files.push_back("expected/" + site + ".ids.npy");
    for (const std::string& f : files)
      EXPECT_EQ(test::file_bytes(out / c.name / f), test::file_bytes(kFixtures / c.name / f)) << c.name << "/" << f;
    // float64 sums may round differently with another numpy or BLAS.
    const std::string logits = "expected/logits.npy";
    EXPECT_LT(test::max_abs_diff(npy_read((out / c.name / logits).string()),
                                 npy_read((kFixtures / c.name / logits).string())),
              1e-5)
        << c.name;
  }
}

TEST(OriginalCheckpointCli, ImportThenRunShowsTheOriginalsCodes) {
  const fs::path out = test::temp_dir("orig_ckpt_cli");
  const std::string onnx = (out / "x.onnx").string();
  const fs::path dir = kFixtures / "gpt2_preproj_heads_mlp";
  test::Result imp = test::run_tool("import-hf " + dir.string() + " -o " + onnx);
  ASSERT_EQ(imp.code, 0) << imp.out;
  EXPECT_NE(imp.out.find("codebook layer1.attn_preproj: 2 codebooks x 8 codes"), std::string::npos) << imp.out;
  const Tensor ids = npy_read((dir / "expected" / "layer1.attn_preproj.ids.npy").string());  // [1, T, G, k]
  // The imported file and the folder itself (every MODEL argument) show the same codes.
  for (const std::string& model : {onnx, dir.string()}) {
    test::Result r =
        test::run_tool("run " + model + " --tokens " + tokens_text() + " --show-codes layer1.attn_preproj --json");
    ASSERT_EQ(r.code, 0) << r.out;
    const Json j = test::run_json(r.out);
    const Json& codes = j.at("codes").at("layer1.attn_preproj");
    ASSERT_EQ(int64_t(codes.size()), ids.dim(1));
    for (int64_t t = 0; t < ids.dim(1); ++t)
      for (int64_t g = 0; g < ids.dim(2); ++g)
        for (int64_t s = 0; s < ids.dim(3); ++s)
          EXPECT_EQ(codes.at(size_t(t)).at(size_t(g)).at(size_t(s)).as_int(),
                    ids.get_int((t * ids.dim(2) + g) * ids.dim(3) + s))
              << model << " position " << t << " member " << g << " slot " << s;
  }
}

TEST(OriginalCheckpointCli, BaseConfigOption) {
  const fs::path dir = copy_case("neox_qkv_block", "base");
  fs::rename(dir / "base_config.json", dir.parent_path() / "pythia_config.json");
  const std::string onnx = (dir.parent_path() / "x.onnx").string();
  test::Result missing = test::run_tool("import-hf " + dir.string() + " -o " + onnx);
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.out.find("--base-config"), std::string::npos) << missing.out;
  EXPECT_NE(missing.out.find("base_config.json"), std::string::npos) << missing.out;
  test::Result given = test::run_tool("import-hf " + dir.string() + " --base-config " +
                                      (dir.parent_path() / "pythia_config.json").string() + " -o " + onnx);
  EXPECT_EQ(given.code, 0) << given.out;
  test::Result plain =
      test::run_tool("import-hf " + (kFixtures.parent_path().parent_path() / "models" / "gpt2").string() +
                     " --base-config x.json -o " + onnx);
  EXPECT_EQ(plain.code, 2);
  EXPECT_NE(plain.out.find("--base-config only applies"), std::string::npos) << plain.out;
}

TEST(OriginalCheckpointErrors, PytorchBinNamesTheConversion) {
  const fs::path dir = copy_case("gpt2_qkv", "bin");
  fs::rename(dir / "model.safetensors", dir / "pytorch_model.bin");
  const std::string e = error_of([&] { import_original_checkpoint(dir.string()); });
  EXPECT_NE(e.find("pytorch_model.bin"), std::string::npos) << e;
  EXPECT_NE(e.find("from safetensors.torch import save_file"), std::string::npos) << e;
  EXPECT_NE(e.find((dir / "model.safetensors").string()), std::string::npos) << e;
}

TEST(OriginalCheckpointErrors, MissingAndUnknownTensorsAreNamed) {
  const fs::path dir = copy_case("neo_preproj_mlp", "tensors");
  const std::string cb = "model.transformer.h.1.attn.attention.codebook_layer.codebook.1.ln.bias";
  edit_tensors(dir, [&](NamedTensors& t) { std::erase_if(t, [&](const auto& e) { return e.first == cb; }); });
  std::string e = error_of([&] { import_original_checkpoint(dir.string()); });
  EXPECT_NE(e.find("'" + cb + "'"), std::string::npos) << e;
  EXPECT_NE(e.find("layer1.attn_preproj"), std::string::npos) << e;

  const fs::path dir2 = copy_case("neo_preproj_mlp", "tensors2");
  const std::string base = "model.transformer.h.0.mlp.module_layer.c_fc.weight";
  edit_tensors(dir2, [&](NamedTensors& t) {
    for (auto& [name, tensor] : t)
      if (name == base) name = "model.transformer.h.0.mlp.c_fc.weight";  // not renamed by the wrapper
    t.emplace_back("model.transformer.h.0.mlp.extra.weight", Tensor::from_vector<float>({1, 2}, {2}));
  });
  e = error_of([&] { import_original_checkpoint(dir2.string()); });
  EXPECT_NE(e.find("'" + base + "'"), std::string::npos) << e;

  const fs::path dir3 = copy_case("neo_preproj_mlp", "tensors3");
  edit_tensors(dir3, [&](NamedTensors& t) {
    t.emplace_back("model.transformer.h.0.mlp.extra.weight", Tensor::from_vector<float>({1, 2}, {2}));
  });
  e = error_of([&] { import_original_checkpoint(dir3.string()); });
  EXPECT_NE(e.find("'model.transformer.h.0.mlp.extra.weight'"), std::string::npos) << e;

  // A codebook of the wrong size names the tensor and the shapes.
  const fs::path dir4 = copy_case("neo_preproj_mlp", "tensors4");
  Json config = json_read_file((dir4 / "config.json").string());
  config.as_object()["num_codes"] = Json(Json::Array{Json(int64_t(6)), Json(int64_t(11))});
  json_write_file((dir4 / "config.json").string(), config);
  e = error_of([&] { import_original_checkpoint(dir4.string()); });
  EXPECT_NE(e.find("model.transformer.h.0.mlp.codebook_layer.codebook.weight' is [10,8]"), std::string::npos) << e;
}

TEST(OriginalCheckpointErrors, ConfigsTheOriginalCannotBuild) {
  HfConfig neo = read_hf_config((kFixtures / "neo_preproj_mlp" / "base_config.json").string());
  HfConfig gpt2 = read_hf_config((kFixtures / "gpt2_qkv" / "base_config.json").string());
  auto error = [](const char* config, const HfConfig& base) {
    return error_of([&] { original_codebook_config(json_parse(config), base); });
  };
  EXPECT_NE(
      error(R"({"codebook_at": "attn", "layers_to_snap": "all"})", neo).find("'attn' is not supported on gpt_neo"),
      std::string::npos);
  EXPECT_NE(error(R"({"codebook_at": ["mlp", "mlp_mid"], "layers_to_snap": [0]})", gpt2).find("never runs"),
            std::string::npos);
  EXPECT_NE(error(R"({"codebook_at": ["attn", "attn_preproj"], "layers_to_snap": [0]})", gpt2).find("non-strictly"),
            std::string::npos);
  EXPECT_NE(error(R"({"codebook_type": "vanilla", "num_codebooks": 2})", gpt2).find("num_codebooks 1"),
            std::string::npos);
  EXPECT_NE(error(R"({"codebook_at": ["mlp", "attn"], "k_codebook": [1, 2, 3]})", gpt2).find("'k_codebook' has 3"),
            std::string::npos);
  EXPECT_NE(error(R"({"layers_to_snap": [2]})", gpt2).find("layer 2"), std::string::npos);
  // Resolved as the original does: -1 groups = heads, negative layers, "all".
  OriginalCodebookConfig c = original_codebook_config(
      json_parse(R"({"codebook_at": ["attn_preproj"], "codebook_type": "group", "num_codebooks": -1,
                     "layers_to_snap": [-1, 0], "similarity_metric": "euclidean", "k_codebook": 3})"),
      gpt2);
  ASSERT_EQ(c.codebooks.placements.size(), 1u);
  EXPECT_EQ(c.codebooks.placements[0].groups, gpt2.num_heads);
  EXPECT_EQ(c.codebooks.placements[0].k, 3);
  EXPECT_EQ(c.codebooks.placements[0].num_codes, 100);  // the config's default
  EXPECT_EQ(c.codebooks.layers, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(c.codebooks.metric, CodebookMetric::euclidean);
  EXPECT_TRUE(original_codebook_config(json_parse("{}"), gpt2).snaps_no_layer);  // layers_to_snap () = none
}

// A config that snaps no layer is the base model itself.
TEST(OriginalCheckpointErrors, NoLayersIsTheBaseModel) {
  const fs::path dir = copy_case("gpt2_qkv", "nolayers");
  Json config = json_read_file((dir / "config.json").string());
  config.as_object()["layers_to_snap"] = Json(Json::Array{});
  json_write_file((dir / "config.json").string(), config);
  edit_tensors(dir, [](NamedTensors& t) {
    std::erase_if(t, [](const auto& e) { return e.first.find("codebook_layer") != std::string::npos; });
    for (auto& [name, tensor] : t)
      for (size_t at; (at = name.find(".module_layer")) != std::string::npos;) name.erase(at, 13);
  });
  std::shared_ptr<Graph> g = import_original_checkpoint(dir.string());
  EXPECT_TRUE(codebook_nodes(*g).empty());
}

}  // namespace
