#include <iostream>

#include "tools/command.h"

namespace cb::tools {

int cmd_bench(int, char**) {
  std::cerr << "codebook bench: not implemented yet\n";
  return 2;
}

}  // namespace cb::tools
