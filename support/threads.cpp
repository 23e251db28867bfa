#include "support/threads.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <string>
#include <thread>

#include "support/error.h"
#include "support/thread_count.h"

namespace cb {

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, int(std::thread::hardware_concurrency()));
}

int max_threads() { return 4 * available_cores(); }

int checked_thread_count(int64_t n, const std::string& name, bool zero_is_default) {
  const int most = max_threads();
  if ((n >= 1 && n <= most) || (n == 0 && zero_is_default)) return int(n);
  CB_FAIL(name << ": must be between 1 and " << most << " (4 x the " << most / 4 << " cores of this machine)"
               << (zero_is_default ? ", or 0 for all cores" : "") << ", got " << n
               << (name.find('.') != std::string::npos  // a config key, e.g. of a checkpoint made elsewhere
                       ? " (override it: " + name + "=" + std::to_string(std::min(most, 2)) + ")"
                       : ""));
}

int resolve_thread_count(int n) { return n >= 1 ? n : available_cores(); }

int set_num_threads(int n) {
  const int threads = resolve_thread_count(n > 0 ? checked_thread_count(n, "thread count", false) : 0);
  // oneDNN (built on OpenMP) sizes its parallel regions by omp_get_max_threads()
  // of the thread that creates and runs a primitive.
  omp_set_num_threads(threads);
  return threads;
}

}  // namespace cb
