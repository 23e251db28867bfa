#include "support/test_delay.h"

#include <chrono>
#include <cstdlib>
#include <thread>

namespace cb {

void test_write_delay() {
  static const long ms = [] {
    const char* v = std::getenv("CB_TEST_WRITE_DELAY_MS");
    return v ? std::strtol(v, nullptr, 10) : 0L;
  }();
  if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

}  // namespace cb
