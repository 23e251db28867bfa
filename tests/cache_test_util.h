// Helpers for tests that write code caches directly with CacheWriter
// (tools/cache/cache_writer.h) instead of running a model.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "frontend/npy.h"
#include "tests/cli_util.h"
#include "tools/cache/cache_format.h"

namespace cb::test {

// Site `name` ("layer1.attn_preproj"): its layer and placement from the name.
inline cache::CacheSite cache_site(const std::string& name, int64_t groups, int64_t codes, int64_t k,
                                   bool scores = false) {
  cache::CacheSite s;
  s.name = name;
  s.layer = std::stoll(name.substr(5, name.find('.') - 5));
  s.placement = name.substr(name.find('.') + 1);
  s.groups = groups;
  s.codes = codes;
  s.k = k;
  s.ids_dtype = cache::ids_dtype_for(codes);
  s.scores = scores;
  return s;
}

// A path under the temp dir for a cache to be written, unique per test
// process, with nothing at it (nor at its .partial).
inline std::string fresh_cache_path(const std::string& test, const std::string& name) {
  std::filesystem::path p =
      std::filesystem::temp_directory_path() / ("cb_" + test + "_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::remove_all(p.string() + ".partial");
  return p.string();
}

// A TokFSM config small enough to train in a second (2 steps): for tests
// about TokFSM data and caches, not about the model's quality.
inline const char* kTinyTokFsmConfig =
    "model_config_args:\n  model_type: gpt2\n  vocab_size: 11\n  n_embd: 16\n  n_inner: 32\n"
    "  n_layer: 1\n  n_head: 2\n  n_positions: 16\n  bos_token_id: 10\n  eos_token_id: 10\n"
    "codebook_args:\n  codebook_at: [mlp]\n  num_codes: 20\n  k_codebook: 1\n"
    "dataset_args:\n  seq_len: 16\nfsm_args:\n  max_eval_samples: 8\n  generate_samples: 0\n"
    "training_args:\n  per_device_train_batch_size: 4\n  max_steps: 2\n  logging_steps: 1\n"
    "  eval_steps: 2\n  save_steps: 2\n";

// The tiny test GPT-2 compiled with codebooks at mlp (64 codes) and
// attn_preproj (one per head, 32 codes), k = 2, on every layer, and 30
// documents of 40 random token ids below 256 as DIR/tokens.npy: a model and
// data for small real caches. Returns the compile command's result.
inline Result make_tiny_cache_inputs(const std::filesystem::path& dir, const std::string& model) {
  Result r = run_tool("compile " + std::string(CB_SOURCE_DIR) + "/tests/models/gpt2/model.onnx -o " + model +
                      " --at mlp,attn_preproj --groups 1,heads --codes 64,32 -k 2 --layers all");
  std::vector<int64_t> ids(30 * 40);
  uint64_t x = 12345;
  for (auto& v : ids) v = int64_t((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 33) % 256;
  npy_write((dir / "tokens.npy").string(), Tensor::from_vector(ids, {30, 40}));
  return r;
}

// Whether the folders hold the same files with the same bytes (at least one).
inline bool same_files(const std::filesystem::path& a, const std::filesystem::path& b) {
  size_t files = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(a)) {
    if (!e.is_regular_file()) continue;
    std::filesystem::path other = b / std::filesystem::relative(e.path(), a);
    EXPECT_EQ(file_bytes(e.path()), file_bytes(other)) << other;
    if (file_bytes(e.path()) != file_bytes(other)) return false;
    ++files;
  }
  size_t other_files = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(b)) other_files += e.is_regular_file();
  EXPECT_EQ(files, other_files);
  return files == other_files && files > 0;
}

}  // namespace cb::test
