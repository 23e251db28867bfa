// Writing files so that a reader never sees a half-written one.
#pragma once
#include <string>

namespace cb {

// Writes `bytes` to a temporary file next to `path` and renames it into place;
// shared by every tool that writes files. Throws cb::Error naming the path.
// Removes first the temporary files of `path` that killed processes left
// (remove_stale_temp_files).
void write_file_atomic(const std::string& path, const std::string& bytes);

// The temporary name write_file_atomic writes `path` under in process `pid`:
// "<path>.tmp.<pid>".
std::string atomic_temp_name(const std::string& path, long pid);

// Removes the "<path>.tmp.<pid>" files next to `path` whose process is no
// longer alive (a kill -9 between writing and renaming leaves one behind).
// Files of live processes, including this one, are left alone. Best effort:
// a file that cannot be removed is skipped.
void remove_stale_temp_files(const std::string& path);

}  // namespace cb
