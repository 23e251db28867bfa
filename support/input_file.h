// Opening the files the tool reads (models, configs, .npy inputs, text and
// data files). Only regular files are read: a named pipe would block until a
// writer appears, /dev/zero or /dev/urandom never end and read until memory
// runs out, and a directory has no bytes. Every reader opens its file here, so
// each of them refuses such paths with the same clear error, and knows the
// file's size before it allocates anything for it.
#pragma once
#include <cstddef>
#include <string>

namespace cb {

// An open regular file: its descriptor (closed by the destructor) and size.
class InputFile {
 public:
  // Opens `path` for reading without blocking (a named pipe is refused, not
  // waited on). Throws cb::Error naming `what` ("model", "config file", ...)
  // and the path when it cannot be opened or is not a regular file.
  static InputFile open(const std::string& path, const std::string& what = "input file");
  InputFile(InputFile&& o) noexcept : fd_(o.fd_), size_(o.size_) { o.fd_ = -1; }
  InputFile& operator=(InputFile&&) = delete;
  InputFile(const InputFile&) = delete;
  ~InputFile();

  int fd() const { return fd_; }
  size_t size() const { return size_; }
  // The whole file (size() bytes; a file that shrinks meanwhile is an error).
  std::string read_all(const std::string& path) const;

 private:
  InputFile(int fd, size_t size) : fd_(fd), size_(size) {}
  int fd_ = -1;
  size_t size_ = 0;
};

// Throws cb::Error unless `path` names a regular file (after symlinks); for
// readers that open the file themselves (streams). Returns its size.
size_t check_input_file(const std::string& path, const std::string& what = "input file");

// The whole content of the regular file `path`.
std::string read_input_file(const std::string& path, const std::string& what = "input file");

// Checks a file name read from a file (an ONNX external-data location, a shard
// named by a safetensors index) before it is opened: it must be relative and
// stay inside `folder` (no "/..." and no ".." component), so a model cannot
// make the tool read /etc/passwd. `what` says where the name was read
// ("initializer 'w': external data location"). Throws cb::Error.
void check_name_inside_folder(const std::string& name, const std::string& what, const std::string& folder);

}  // namespace cb
