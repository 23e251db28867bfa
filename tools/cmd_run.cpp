#include <iostream>

#include "tools/command.h"

namespace cb::tools {

int cmd_run(int, char**) {
  std::cerr << "codebook run: not implemented yet\n";
  return 2;
}

}  // namespace cb::tools
