#include "support/file_io.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "support/error.h"

namespace cb {

namespace {

// Why a file at `path` could not be created: its folder is missing, or the
// system's reason (permission denied, read-only file system, ...).
std::string create_failure_reason(const std::string& path, int err) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!dir.empty() && !std::filesystem::is_directory(dir, ec))
    return std::filesystem::exists(dir, ec) ? "'" + dir.string() + "' is not a folder"
                                            : "folder '" + dir.string() + "' does not exist";
  return std::strerror(err);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) {
      int err = errno;
      CB_FAIL("cannot write '" << path << "': " << create_failure_reason(path, err));
    }
    f.write(bytes.data(), std::streamsize(bytes.size()));
    f.flush();
    if (!f) {
      int err = errno;  // before remove() changes it
      std::remove(tmp.c_str());
      CB_FAIL("error writing '" << path << "' (as '" << tmp << "'): " << std::strerror(err));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    CB_FAIL("cannot rename '" << tmp << "' to '" << path << "': " << std::strerror(errno));
  }
}

}  // namespace cb
