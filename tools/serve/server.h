// `codebook serve`: the code browser's HTTP server (cpp-httplib). It serves
// the page compiled into the binary (tools/serve/assets/) and the JSON API
// under /api/ (docs/serve.md) over one code cache and, with a model, the live
// model endpoints. Every request is bounded (body size, regex length, result
// counts, prompt and generation lengths, one model request at a time with a
// short queue), names sites and codes, never files, and gets a JSON error
// with a 4xx status when it is bad; the server keeps serving.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace cb::serve {

struct ServeOptions {
  std::string cache_dir;
  std::string model;  // empty: no live model
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  bool read_only = false;
  size_t max_body_bytes = size_t(1) << 20;
  int model_queue = 4;           // model requests that may wait behind the running one
  int threads = 0;               // model threads (0: all cores)
  double generate_seconds = 30;  // model time of one /api/generate request
};

class CodeServer {
 public:
  // Opens the cache and loads the model; throws cb::Error naming what is wrong.
  explicit CodeServer(ServeOptions options);
  ~CodeServer();
  // Binds options.host:options.port; returns the port (the one picked for
  // port 0). Throws cb::Error when the address cannot be bound.
  int bind();
  // Serves until stop() (from another thread).
  void listen();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cb::serve
