#include "tools/options.h"

#include <cctype>
#include <iostream>

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

}  // namespace cb::tools
