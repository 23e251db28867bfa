// An exclusive lock on a folder for the life of a process's work in it, so
// that two processes never write one folder at once (two `codebook train`
// runs into one --output). flock(2) on a lock file inside the folder: the
// kernel drops it when the process ends, even by kill -9, so a crashed run
// never leaves the folder locked.
#pragma once
#include <string>

namespace cb {

class FolderLock {
 public:
  // Locks `lock_file` (created when missing; its folder must exist) and
  // writes this process's id into it. When another process holds it, throws
  // cb::Error: "<what> is in use by process <pid> (...)".
  FolderLock(const std::string& lock_file, const std::string& what);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace cb
