// The one exception type for bad input and failed checks. Messages say what is
// wrong and where (node name, op, shapes); tools turn it into exit code 2.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace cb {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// CB_CHECK(cond, "message " << value) throws cb::Error with the streamed message.
#define CB_CHECK(cond, msg)                  \
  do {                                       \
    if (!(cond)) {                           \
      std::ostringstream cb_check_os_;       \
      cb_check_os_ << msg;                   \
      throw ::cb::Error(cb_check_os_.str()); \
    }                                        \
  } while (0)

#define CB_FAIL(msg)                       \
  do {                                     \
    std::ostringstream cb_check_os_;       \
    cb_check_os_ << msg;                   \
    throw ::cb::Error(cb_check_os_.str()); \
  } while (0)

}  // namespace cb
