#include "tools/serve/train_curves.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <vector>

#include "support/error.h"

namespace fs = std::filesystem;

namespace cb::serve {

std::string find_training_log(const std::string& model_arg) {
  if (model_arg.empty()) return "";
  std::error_code ec;
  fs::path p = fs::absolute(model_arg, ec);
  fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  // A checkpoint folder's run is the folder above it.
  if (dir.filename().string().rfind("checkpoint-", 0) == 0) dir = dir.parent_path();
  fs::path log = dir / "log.jsonl";
  return fs::is_regular_file(log, ec) ? log.string() : "";
}

Json training_curves(const std::string& log_path, size_t max_points) {
  std::error_code ec;
  uintmax_t size = fs::file_size(log_path, ec);
  CB_CHECK(!ec, "cannot read " << log_path << ": " << ec.message());
  CB_CHECK(size <= (uintmax_t(256) << 20), log_path << " is larger than 256 MiB");
  std::ifstream f(log_path);
  CB_CHECK(f, "cannot read " << log_path);
  std::map<std::string, std::vector<std::pair<double, double>>> series;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    Json j;
    try {
      j = json_parse(line, log_path);
    } catch (const Error&) {
      continue;  // a line being written
    }
    const Json* step = j.find("step");
    if (!j.is_object() || !step || !step->is_number()) continue;
    for (const auto& [key, v] : j.as_object())
      if (v.is_number() && key != "step" && key != "elapsed_seconds" && key != "tokens_per_s")
        series[key].push_back({step->as_double(), v.as_double()});
  }
  Json out = Json::Object{};
  out["log"] = fs::path(log_path).filename().string();
  Json s = Json::Object{};
  for (auto& [key, points] : series) {
    Json::Array a;
    size_t n = points.size(), stride = n > max_points ? (n + max_points - 1) / max_points : 1;
    for (size_t i = 0; i < n; i += stride)
      a.push_back(Json(Json::Array{Json(points[i].first), Json(points[i].second)}));
    if (n > 0 && (n - 1) % stride != 0)
      a.push_back(Json(Json::Array{Json(points.back().first), Json(points.back().second)}));
    s[key] = Json(std::move(a));
  }
  out["series"] = std::move(s);
  return out;
}

}  // namespace cb::serve
