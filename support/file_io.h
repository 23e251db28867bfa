// Writing files so that a reader never sees a half-written one.
#pragma once
#include <string>

namespace cb {

// Writes `bytes` to a temporary file next to `path` and renames it into place;
// shared by every tool that writes files. Throws cb::Error naming the path.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace cb
