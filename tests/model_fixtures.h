// The committed test models (tests/models/<name>/model.onnx, made by
// scripts/make_test_models.py) and their cases' inputs, for the tests that
// run every model.
#pragma once
#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "frontend/npy.h"
#include "runtime/executable.h"

namespace cb::test {

inline std::filesystem::path models_dir() { return std::filesystem::path(CB_SOURCE_DIR) / "tests" / "models"; }

// Sub-folders of tests/models that hold a model.onnx, sorted by name.
inline std::vector<std::string> model_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(models_dir(), ec))
    if (entry.is_directory() && std::filesystem::exists(entry.path() / "model.onnx"))
      names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The inputs of `exe` read from DIR/<input name>.npy (a case folder).
inline std::map<std::string, Tensor> case_inputs(const Executable& exe, const std::filesystem::path& dir) {
  std::map<std::string, Tensor> feeds;
  for (const std::string& name : exe.input_names()) feeds[name] = npy_read((dir / (name + ".npy")).string());
  return feeds;
}

}  // namespace cb::test
