#include "support/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "support/checked_size.h"
#include "support/error.h"

namespace cb {

namespace {

// "a directory", "a named pipe (FIFO)", ...: what a non-regular file is.
const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a named pipe (FIFO)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

[[noreturn]] void fail_not_regular(const std::string& path, const std::string& what, mode_t mode) {
  CB_FAIL(what << " '" << path << "' is " << kind_of(mode) << "; only regular files can be read");
}

}  // namespace

InputFile InputFile::open(const std::string& path, const std::string& what) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) CB_FAIL("cannot open " << what << " '" << path << "': " << std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    CB_FAIL("cannot read " << what << " '" << path << "': " << std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_not_regular(path, what, st.st_mode);
  }
  // Regular files never block; reads go back to the usual blocking mode.
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return InputFile(fd, size_t(st.st_size));
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::string InputFile::read_all(const std::string& path) const {
  const size_t memory = physical_memory_bytes();
  CB_CHECK(memory == 0 || size_ <= memory, "out of memory reading '" << path << "': it is " << size_
                                                                     << " bytes, more than the machine's " << memory
                                                                     << " bytes of memory");
  std::string bytes;
  try {
    bytes.resize(size_);
  } catch (const std::bad_alloc&) {
    CB_FAIL("out of memory reading '" << path << "' (" << size_ << " bytes)");
  } catch (const std::length_error&) {
    CB_FAIL("out of memory reading '" << path << "' (" << size_ << " bytes)");
  }
  size_t done = 0;
  while (done < size_) {
    ssize_t n = ::pread(fd_, bytes.data() + done, size_ - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) CB_FAIL("cannot read '" << path << "': " << std::strerror(errno));
    if (n == 0) CB_FAIL("cannot read '" << path << "': the file shrank while it was read");
    done += size_t(n);
  }
  return bytes;
}

size_t check_input_file(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) CB_FAIL("cannot open " << what << " '" << path << "': " << std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail_not_regular(path, what, st.st_mode);
  return size_t(st.st_size);
}

std::string read_input_file(const std::string& path, const std::string& what) {
  return InputFile::open(path, what).read_all(path);
}

void check_name_inside_folder(const std::string& name, const std::string& what, const std::string& folder) {
  CB_CHECK(!name.empty(), what << " is empty");
  CB_CHECK(name[0] != '/', what << " '" << name << "' is an absolute path; it must be relative to " << folder);
  for (size_t start = 0; start <= name.size();) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    CB_CHECK(name.compare(start, end - start, "..") != 0, what << " '" << name << "' leaves " << folder << " ('..')");
    start = end + 1;
  }
}

}  // namespace cb
