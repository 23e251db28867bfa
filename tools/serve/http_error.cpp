#include "tools/serve/http_error.h"

#include <cmath>
#include <cstdlib>

namespace cb::serve {

bool has_param(const Params& p, const std::string& name) { return p.find(name) != p.end(); }

std::string string_param(const Params& p, const std::string& name, const std::string& fallback) {
  auto it = p.find(name);
  return it == p.end() ? fallback : it->second;
}

std::string required_param(const Params& p, const std::string& name) {
  auto it = p.find(name);
  if (it == p.end()) throw HttpError(400, "missing parameter '" + name + "'");
  return it->second;
}

int64_t int_param(const Params& p, const std::string& name, int64_t fallback, int64_t lo, int64_t hi) {
  auto it = p.find(name);
  if (it == p.end() || it->second.empty()) return fallback;
  const std::string& s = it->second;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno || end != s.c_str() + s.size())
    throw HttpError(400, "parameter '" + name + "': '" + s + "' is not an integer");
  if (v < lo || v > hi)
    throw HttpError(400, "parameter '" + name + "' = " + s + " is out of range [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
  return v;
}

double double_param(const Params& p, const std::string& name, double fallback, double lo, double hi) {
  auto it = p.find(name);
  if (it == p.end() || it->second.empty()) return fallback;
  const std::string& s = it->second;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v))
    throw HttpError(400, "parameter '" + name + "': '" + s + "' is not a number");
  if (v < lo || v > hi)
    throw HttpError(400, "parameter '" + name + "' = " + s + " is out of range [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
  return v;
}

}  // namespace cb::serve
