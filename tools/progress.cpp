#include "tools/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>

namespace cb::tools {

std::string duration_str(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  int64_t t = int64_t(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60),
                  (long long)(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
}

void ProgressBar::update(double fraction, const std::string& text) {
  if (!enabled_) return;
  int width = 24, filled = int(double(width) * std::clamp(fraction, 0.0, 1.0));
  std::string bar(size_t(filled), '#');
  bar.resize(size_t(width), '.');
  std::fprintf(stderr, "\r[%s] %s   ", bar.c_str(), text.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::clear() {
  if (enabled_ && drawn_) std::fprintf(stderr, "\r%*s\r", 100, "");
  drawn_ = false;
}

}  // namespace cb::tools
