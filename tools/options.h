// The option parsing every subcommand shares: one positional argument (the
// model or directory), `--help` printing the options plus a description.
#pragma once
#include <boost/program_options.hpp>
#include <string>

#include "passes/pass.h"

namespace cb::tools {

// Adds --help and the positional `arg_name`, parses, and returns false when
// help was printed (the caller then exits 0). Throws a program_options error
// when the positional argument is missing or an option is bad.
bool parse_command_line(int argc, char** argv, boost::program_options::options_description& opts, const char* arg_name,
                        const char* arg_help, boost::program_options::variables_map& vm, const char* description = "");

// Like parse_command_line, but with any number of positional arguments
// (possibly none), collected as the string list `list_name`.
bool parse_command_line_list(int argc, char** argv, boost::program_options::options_description& opts,
                             const char* list_name, const char* list_help, boost::program_options::variables_map& vm,
                             const char* description = "");

// The pass debugging options of the commands that run passes (compile, run,
// export, train): --time-passes, --print-before PASS, --print-after PASS|all,
// --no-verify-passes (docs/passes.md).
void add_pass_options(boost::program_options::options_description& opts);

// Applies those options to every PassManager of the process (passes/pass.h),
// import and training included; with --time-passes it prints the pass timings
// to stderr when it goes out of scope (which restores the previous settings).
// Throws cb::Error on an unknown pass name.
class PassOptionsScope {
 public:
  explicit PassOptionsScope(const boost::program_options::variables_map& vm);
  ~PassOptionsScope();
  PassOptionsScope(const PassOptionsScope&) = delete;
  PassOptionsScope& operator=(const PassOptionsScope&) = delete;

 private:
  PassInstrumentation previous_;
  bool time_passes_ = false;
};

}  // namespace cb::tools
