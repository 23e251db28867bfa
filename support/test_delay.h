// Test-only: a pause inside multi-file writes, so that a crash-safety test
// (scripts/crash_safety.sh) can kill a process in the middle of one.
#pragma once

namespace cb {

// Sleeps CB_TEST_WRITE_DELAY_MS milliseconds when that environment variable
// is set (read once, here only); returns at once otherwise. Called between the
// steps of a checkpoint save and of an external-data export. Never set it
// outside tests: every checkpoint gets that much slower per step.
void test_write_delay();

}  // namespace cb
