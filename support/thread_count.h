// Thread counts a user gives (--threads, runtime.threads), checked before they
// reach OpenMP, oneDNN or std::thread (support/threads.h).
#pragma once
#include <cstdint>
#include <string>

namespace cb {

// The most threads a user may ask for: 4 x the cores this process may run
// on. More only oversubscribes the machine, and tens of thousands made
// libgomp (under oneDNN) crash or fail with "Thread creation failed".
int max_threads();

// A thread count the user gave as `name` (an option such as "--threads" or a
// config key such as "runtime.threads"), checked: 1..max_threads(), or 0 (the
// default: all cores) when `zero_is_default`. Throws cb::Error naming `name`,
// the value and the allowed range otherwise.
int checked_thread_count(int64_t n, const std::string& name, bool zero_is_default);

}  // namespace cb
