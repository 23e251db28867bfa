// Subcommands of the `codebook` tool: one file per subcommand (tools/cmd_*.cpp),
// each a main-like function. tools/main.cpp dispatches and turns cb::Error and
// option errors into a one-line message and exit code 2.
#pragma once
#include <string>
#include <vector>

namespace cb::tools {

// argv[0] is the subcommand name; the rest are its arguments.
int cmd_inspect(int argc, char** argv);
int cmd_run(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_conformance(int argc, char** argv);
int cmd_compile(int argc, char** argv);
int cmd_export(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_import_hf(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_fsm_codes(int argc, char** argv);
int cmd_cache(int argc, char** argv);
int cmd_similar(int argc, char** argv);
int cmd_search(int argc, char** argv);
int cmd_code(int argc, char** argv);
int cmd_topics(int argc, char** argv);
int cmd_serve(int argc, char** argv);

struct Command {
  const char* name;
  const char* summary;
  int (*main)(int argc, char** argv);
};

const std::vector<Command>& commands();

}  // namespace cb::tools
