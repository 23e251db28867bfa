// TEMPORARY (branch h/export): `codebook cache export` until the lead's
// tools/cmd_cache.cpp (cache build and the other cache subcommands) lands;
// on merge, keep the lead's file, which dispatches `export` to cache_export_main.
#include <cstring>

#include "support/error.h"
#include "tools/cache/cache_export.h"
#include "tools/command.h"

namespace cb::tools {

int cmd_cache(int argc, char** argv) {
  CB_CHECK(argc >= 2 && std::strcmp(argv[1], "export") == 0, "usage: codebook cache export CACHE ... (see --help)");
  return cache_export_main(argc - 1, argv + 1);
}

}  // namespace cb::tools
