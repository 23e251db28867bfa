// codebook serve CACHE [--model MODEL]: the code browser, a web page and a
// JSON API over a code cache and, with --model, a live model to run, ablate
// and steer (tools/serve/, docs/serve.md).
#include <boost/program_options.hpp>
#include <iostream>

#include "support/error.h"
#include "tools/command.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/serve/server.h"

namespace po = boost::program_options;

namespace cb::tools {

int cmd_serve(int argc, char** argv) {
  po::options_description opts("usage: codebook serve CACHE [options]\n\noptions");
  opts.add_options()("model", po::value<std::string>(),
                     "MODEL: a compiled model, or a `codebook train` run folder: the live model (run, ablate, force, "
                     "generate)")("host", po::value<std::string>()->default_value("127.0.0.1"),
                                  "address to listen on (127.0.0.1: this machine only)")(
      "port", po::value<int>()->default_value(8080)->notifier(must_be_in_range(0, 65535, "--port")),
      "port (0: any free port, printed)")("read-only", "disable everything that writes (saving demo codes)")(
      "max-body", po::value<int64_t>()->default_value(1 << 20)->notifier(must_be_positive("--max-body")),
      "largest request body accepted, in bytes")(
      "queue", po::value<int>()->default_value(4)->notifier(must_be_non_negative("--queue")),
      "model requests that may wait behind the running one; more are answered 503 busy")(
      "threads", po::value<int>()->default_value(0)->notifier(must_be_thread_count("--threads", true)),
      "model threads (0 = all cores)");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "cache", "a code cache directory (`codebook cache build`)", vm,
                          "\nServes the code browser: open the printed URL. The page and the JSON API under\n"
                          "/api/ (docs/serve.md) browse the cache's codes, search them with a regex, show\n"
                          "topic codes of a document, and, with --model, run prompts with ablated or forced\n"
                          "codes.\n"))
    return 0;
  serve::ServeOptions o;
  o.cache_dir = vm["cache"].as<std::string>();
  if (vm.count("model")) o.model = vm["model"].as<std::string>();
  o.host = vm["host"].as<std::string>();
  o.port = vm["port"].as<int>();
  o.read_only = vm.count("read-only") > 0;
  int64_t max_body = vm["max-body"].as<int64_t>();
  o.max_body_bytes = size_t(max_body);
  o.model_queue = vm["queue"].as<int>();
  o.threads = vm["threads"].as<int>();

  serve::CodeServer server(o);
  int port = server.bind();
  std::string host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::cout << "serving " << o.cache_dir << (o.model.empty() ? "" : " with the model " + o.model) << " at http://"
            << host << ":" << port << "/" << (o.read_only ? " (read-only)" : "") << std::endl;
  server.listen();
  return 0;
}

}  // namespace cb::tools
