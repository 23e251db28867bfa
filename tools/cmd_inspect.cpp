#include <iostream>

#include "tools/command.h"

namespace cb::tools {

int cmd_inspect(int, char**) {
  std::cerr << "codebook inspect: not implemented yet\n";
  return 2;
}

}  // namespace cb::tools
