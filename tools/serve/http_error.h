// Errors of the code browser's JSON API (docs/serve.md): an HttpError carries
// the HTTP status the client gets (with {"error": message}); any cb::Error
// from the cache or model code is a 400, as it names bad input.
#pragma once
#include <map>
#include <stdexcept>
#include <string>

namespace cb::serve {

class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// A request's query parameters (httplib::Params is the same type).
using Params = std::multimap<std::string, std::string>;

// Typed query parameters; a malformed or out-of-range value is an HttpError 400
// naming the parameter.
bool has_param(const Params& p, const std::string& name);
std::string string_param(const Params& p, const std::string& name, const std::string& fallback);
std::string required_param(const Params& p, const std::string& name);
int64_t int_param(const Params& p, const std::string& name, int64_t fallback, int64_t lo, int64_t hi);
double double_param(const Params& p, const std::string& name, double fallback, double lo, double hi);

}  // namespace cb::serve
