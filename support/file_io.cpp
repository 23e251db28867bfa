#include "support/file_io.h"

#include <signal.h>
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
  remove_stale_temp_files(path);
  std::string tmp = atomic_temp_name(path, ::getpid());
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

std::string atomic_temp_name(const std::string& path, long pid) { return path + ".tmp." + std::to_string(pid); }

void remove_stale_temp_files(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string digits = name.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    long pid = std::stol(digits);
    // kill(pid, 0) fails with ESRCH only when no such process exists (EPERM:
    // it exists but belongs to another user).
    if (pid <= 0 || pid == long(::getpid()) || ::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code rm;
    fs::remove(it->path(), rm);
  }
}

}  // namespace cb
