// Progress on a terminal: one line on stderr redrawn in place,
// "[#####.....] TEXT", shared by the long-running commands (train, cache build).
#pragma once
#include <string>

namespace cb::tools {

// "1:05" / "2:03:04"; "?" for a negative or non-finite time.
std::string duration_str(double seconds);

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  // fraction in [0, 1] fills the bar; text follows it.
  void update(double fraction, const std::string& text);
  // Clears the bar before other output.
  void clear();

 private:
  bool enabled_;
  bool drawn_ = false;
};

}  // namespace cb::tools
