// Every pass by name, with its options as text, e.g.
//   insert-codebooks --at attn_plus_mlp --codes 8 -k 1
// The names are the ones PassManager reports (--print-after, --time-passes),
// the golden IR tests' `// pass:` lines use this form (tests/golden/), and
// docs/passes.md describes each pass and its options.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "passes/insert_codebooks.h"
#include "passes/interventions.h"
#include "passes/pass.h"

namespace cb {

// A pass's options: (name, value) pairs in the order given, names without
// their dashes. An option may repeat (--ablate twice).
class PassOptions {
 public:
  // Parses "--name value ..." ("-k 1" and "--name=value" too). Throws cb::Error
  // on a value without a name or a name without a value.
  static PassOptions parse(const std::string& text);
  void add(std::string name, std::string value) { items_.emplace_back(std::move(name), std::move(value)); }
  bool has(const std::string& name) const;
  // The last value given for `name`, or `fallback`.
  std::string get(const std::string& name, const std::string& fallback) const;
  std::vector<std::string> all(const std::string& name) const;
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

struct PassInfo {
  std::string name;
  std::string summary;               // one line
  std::vector<std::string> options;  // the option names it accepts
  std::function<std::unique_ptr<Pass>(const PassOptions&)> make;
};

// The registered passes, in the order docs/passes.md describes them.
const std::vector<PassInfo>& pass_registry();
const PassInfo* find_pass(const std::string& name);  // nullptr when unknown
// Builds pass `name` with `opts`. Throws cb::Error on an unknown pass or an
// option it does not take, listing what exists.
std::unique_ptr<Pass> make_pass(const std::string& name, const PassOptions& opts = {});
// The same from one line: the name, then its options.
std::unique_ptr<Pass> make_pass_from_text(const std::string& text);

// The insert-codebooks and interventions options, shared with the CLI
// (tools/codebook_options.cpp): the same names, defaults and error messages.
CodebookConfig codebook_config_from_pass_options(const PassOptions& o);
InterventionSet interventions_from_pass_options(const PassOptions& o);

}  // namespace cb
