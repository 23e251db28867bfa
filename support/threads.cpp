#include "support/threads.h"

#include <omp.h>

#include <algorithm>
#include <string>

#include "support/error.h"
#include "support/thread_count.h"

namespace cb {

int max_threads() { return 4 * std::max(1, omp_get_num_procs()); }

int checked_thread_count(int64_t n, const std::string& name, bool zero_is_default) {
  const int most = max_threads();
  if ((n >= 1 && n <= most) || (n == 0 && zero_is_default)) return int(n);
  CB_FAIL(name << ": must be between 1 and " << most << " (4 x the " << most / 4 << " cores of this machine)"
               << (zero_is_default ? ", or 0 for all cores" : "") << ", got " << n
               << (name.find('.') != std::string::npos  // a config key, e.g. of a checkpoint made elsewhere
                       ? " (override it: " + name + "=" + std::to_string(std::min(most, 2)) + ")"
                       : ""));
}

void set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(checked_thread_count(n, "thread count", false));
}

}  // namespace cb
