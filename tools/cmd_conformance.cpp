#include <iostream>

#include "tools/command.h"

namespace cb::tools {

int cmd_conformance(int, char**) {
  std::cerr << "codebook conformance: not implemented yet\n";
  return 2;
}

}  // namespace cb::tools
