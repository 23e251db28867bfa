#include "tools/options.h"

#include <cctype>
#include <iostream>
#include <sstream>

#include "passes/pass.h"
#include "passes/pass_registry.h"
#include "support/error.h"

namespace po = boost::program_options;

namespace cb::tools {

bool parse_command_line(int argc, char** argv, po::options_description& opts, const char* arg_name,
                        const char* arg_help, po::variables_map& vm, const char* description) {
  opts.add_options()("help,h", "show this help")(arg_name, po::value<std::string>(), arg_help);
  po::positional_options_description pos;
  pos.add(arg_name, 1);
  po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << opts << description;
    return false;
  }
  po::notify(vm);
  if (!vm.count(arg_name)) {
    std::string upper = arg_name;
    for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
    throw po::error("missing " + upper);
  }
  return true;
}

bool parse_command_line_list(int argc, char** argv, po::options_description& opts, const char* list_name,
                             const char* list_help, po::variables_map& vm, const char* description) {
  opts.add_options()("help,h", "show this help")(list_name, po::value<std::vector<std::string>>(), list_help);
  po::positional_options_description pos;
  pos.add(list_name, -1);
  po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << opts << description;
    return false;
  }
  po::notify(vm);
  return true;
}

void add_pass_options(po::options_description& opts) {
  auto many = [] { return po::value<std::vector<std::string>>()->composing(); };
  opts.add_options()("time-passes", "print the time of every pass to stderr at the end")(
      "print-before", many(), "PASS: print the IR to stderr before each run of this pass (repeatable; 'all')")(
      "print-after", many(), "PASS: print the IR to stderr after each run of this pass (repeatable; 'all')")(
      "no-verify-passes", "skip the graph verification after every pass that changed the graph");
}

namespace {

// The pass names of --print-before/--print-after (comma lists allowed), checked.
std::vector<std::string> pass_names(const po::variables_map& vm, const char* option) {
  std::vector<std::string> out;
  if (!vm.count(option)) return out;
  for (const std::string& value : vm[option].as<std::vector<std::string>>()) {
    std::stringstream ss(value);
    std::string name;
    while (std::getline(ss, name, ',')) {
      if (name != "all" && !find_pass(name)) {
        std::string names;
        for (const PassInfo& p : pass_registry()) names += ", " + p.name;
        throw Error("--" + std::string(option) + " " + name + ": no such pass (passes: all" + names + ")");
      }
      out.push_back(name);
    }
  }
  return out;
}

}  // namespace

PassOptionsScope::PassOptionsScope(const po::variables_map& vm) : previous_(default_pass_instrumentation()) {
  PassInstrumentation& instr = default_pass_instrumentation();
  instr.print_before = pass_names(vm, "print-before");
  instr.print_after = pass_names(vm, "print-after");
  instr.verify = !vm.count("no-verify-passes");
  time_passes_ = vm.count("time-passes") != 0;
}

PassOptionsScope::~PassOptionsScope() {
  if (time_passes_) print_pass_timings(std::cerr);
  default_pass_instrumentation() = previous_;
}

}  // namespace cb::tools
