// codebook topics CACHE --doc N: the topic codes of one document of a code
// cache, the codes that fire on a large share of its tokens (codebook-spec
// §7.2; docs/cache.md "Topic codes").
#include <boost/program_options.hpp>
#include <iomanip>
#include <iostream>

#include "support/error.h"
#include "support/json.h"
#include "support/utf8.h"
#include "tools/cache/code_cache.h"
#include "tools/cache/code_search.h"
#include "tools/command.h"
#include "tools/option_checks.h"
#include "tools/options.h"
#include "tools/text_io.h"

namespace po = boost::program_options;

namespace cb::tools {

int cmd_topics(int argc, char** argv) {
  po::options_description opts("usage: codebook topics CACHE --doc N [options]\n\noptions");
  opts.add_options()("doc", po::value<int64_t>()->notifier(must_be_non_negative("--doc")), "the document (0-based)")(
      "recall", po::value<double>()->default_value(0.2)->notifier(must_be_in_range(0.0, 1.0, "--recall")),
      "keep codes firing on at least this share of its tokens")(
      "max-chars", po::value<int64_t>()->default_value(1024)->notifier(must_be_non_negative("--max-chars")),
      "bytes of the document's text shown")("json", "print one JSON object");
  po::variables_map vm;
  if (!parse_command_line(argc, argv, opts, "cache", "a code cache directory", vm,
                          "\nThe codes of every codebook that fire on at least --recall of the document's\n"
                          "tokens (recall = its tokens where the code fires / its tokens, > 0.01) with\n"
                          "precision = those / the code's activations >= 0.01, by recall.\n"))
    return 0;
  CB_CHECK(vm.count("doc"), "--doc N is required");
  int64_t d = vm["doc"].as<int64_t>();
  double threshold = vm["recall"].as<double>();
  int64_t max_chars = vm["max-chars"].as<int64_t>();
  cache::CodeCache c = cache::CodeCache::open(vm["cache"].as<std::string>());
  std::vector<cache::CodeMatch> codes = cache::topic_codes(c, d, threshold);
  const int64_t T = c.doc_tokens()[size_t(d) + 1] - c.doc_tokens()[size_t(d)];
  std::string_view text = c.document_text(d);

  if (vm.count("json")) {
    Json j = Json::Object{};
    j["doc"] = d;
    j["tokens"] = T;
    j["text"] = utf8_replace_invalid(text);
    Json::Array list;
    for (const auto& cm : codes) {
      Json e = cm.to_json();
      list.push_back(std::move(e));
    }
    j["codes"] = Json(std::move(list));
    std::cout << j.dump() << "\n";
    return 0;
  }
  std::string shown(text.substr(0, size_t(std::max<int64_t>(0, max_chars))));
  std::cout << "document " << d << " (" << T << " tokens): " << escape_bytes(shown)
            << (int64_t(text.size()) > max_chars ? "..." : "") << "\n";
  if (codes.empty()) {
    std::cout << "no code fires on at least " << threshold << " of its tokens with precision >= 0.01\n";
    return 0;
  }
  std::cout << std::left << std::setw(28) << "site" << std::right << std::setw(7) << "code" << std::setw(11)
            << "precision" << std::setw(9) << "recall" << std::setw(13) << "activations"
            << "\n"
            << std::fixed << std::setprecision(3);
  for (const auto& cm : codes)
    std::cout << std::left << std::setw(28) << cm.member_name() << std::right << std::setw(7) << cm.code
              << std::setw(11) << cm.precision << std::setw(9) << cm.recall << std::setw(13) << cm.activations << "\n";
  return 0;
}

}  // namespace cb::tools
