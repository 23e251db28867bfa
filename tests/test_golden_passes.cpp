// Golden IR tests of the graph rewrites, in the TVM/MLIR style: every
// tests/golden/<pass>/<case>.before.ir is parsed, the passes named on its
// `// pass: NAME --option value ...` lines run in order through a PassManager
// (verification on; names and options as in passes/pass_registry.h), and the
// printed result must equal <case>.after.ir exactly, less the `//` comment
// lines at its top (which say what to look for). `// metadata: KEY = VALUE`
// lines set graph metadata, which the IR text does not carry.
//
// After an intended change of a pass, regenerate the expected files with
//   CB_UPDATE_GOLDEN=1 ./build/release/tests/test_golden_passes
// and read the diff before committing it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "ir/parser.h"
#include "ir/printer.h"
#include "passes/pass.h"
#include "passes/pass_registry.h"
#include "support/error.h"

using namespace cb;
namespace fs = std::filesystem;

namespace {

const fs::path kGoldenDir = fs::path(CB_SOURCE_DIR) / "tests" / "golden";
const std::string kBefore = ".before.ir", kAfter = ".after.ir";

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) out.push_back(line);
  return out;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The expected text: the .after.ir without its leading comment lines.
std::pair<std::string, std::string> split_header(const std::string& text) {
  size_t at = 0;
  while (at < text.size() && starts_with(text.substr(at), "//")) {
    size_t nl = text.find('\n', at);
    at = nl == std::string::npos ? text.size() : nl + 1;
  }
  return {text.substr(0, at), text.substr(at)};
}

// A line diff of two texts (longest common subsequence; the files are small):
// "-" for expected lines missing from `got`, "+" for new ones, two unchanged
// lines of context around each change and "..." for the lines skipped.
std::string line_diff(const std::string& expected, const std::string& got) {
  std::vector<std::string> a = lines_of(expected), b = lines_of(got);
  size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> lcs(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = n; i-- > 0;)
    for (size_t j = m; j-- > 0;)
      lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : std::max(lcs[i + 1][j], lcs[i][j + 1]);
  std::vector<std::string> ops;  // "  line", "- line", "+ line"
  size_t i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] == b[j]) {
      ops.push_back("  " + a[i++]);
      ++j;
    } else if (i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1])) {
      ops.push_back("- " + a[i++]);
    } else {
      ops.push_back("+ " + b[j++]);
    }
  }
  const size_t context = 2;
  std::vector<bool> shown(ops.size(), false);
  for (size_t k = 0; k < ops.size(); ++k)
    if (ops[k][0] != ' ')
      for (size_t c = k >= context ? k - context : 0; c <= std::min(ops.size() - 1, k + context); ++c) shown[c] = true;
  std::ostringstream os;
  bool skipped = false;
  for (size_t k = 0; k < ops.size(); ++k) {
    if (!shown[k]) {
      skipped = true;
      continue;
    }
    if (skipped) os << "...\n";
    skipped = false;
    os << ops[k] << "\n";
  }
  if (skipped) os << "...\n";
  return os.str();
}

struct GoldenCase {
  std::string pass, name;
  fs::path before, after;
};

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  if (!fs::is_directory(kGoldenDir)) return cases;
  for (const auto& dir : fs::directory_iterator(kGoldenDir)) {
    if (!dir.is_directory()) continue;
    for (const auto& f : fs::directory_iterator(dir.path())) {
      std::string file = f.path().filename().string();
      if (file.size() <= kBefore.size() || file.substr(file.size() - kBefore.size()) != kBefore) continue;
      std::string name = file.substr(0, file.size() - kBefore.size());
      cases.push_back({dir.path().filename().string(), name, f.path(), dir.path() / (name + kAfter)});
    }
  }
  std::sort(cases.begin(), cases.end(), [](const GoldenCase& x, const GoldenCase& y) {
    return std::tie(x.pass, x.name) < std::tie(y.pass, y.name);
  });
  return cases;
}

// Runs the case's passes on its before text and returns the printed result.
std::string run_case(const std::string& before_text) {
  std::unique_ptr<Graph> g = parse_graph(before_text);
  PassInstrumentation instr;  // verification on, nothing printed
  PassManager pm(instr);
  int passes = 0;
  for (const std::string& line : lines_of(before_text)) {
    if (starts_with(line, "// pass:")) {
      pm.add(make_pass_from_text(line.substr(8)));
      ++passes;
    } else if (starts_with(line, "// metadata:")) {
      std::string kv = line.substr(12);
      size_t eq = kv.find('=');
      EXPECT_NE(eq, std::string::npos) << line;
      auto trim = [](std::string s) {
        s.erase(0, s.find_first_not_of(' '));
        s.erase(s.find_last_not_of(' ') + 1);
        return s;
      };
      g->metadata[trim(kv.substr(0, eq))] = trim(kv.substr(eq + 1));
    }
  }
  EXPECT_GT(passes, 0) << "no `// pass:` line";
  pm.run(*g);
  return print_graph(*g);
}

// One test over every case (not one per case): ctest lists gtest cases when
// the test is built, so a case file added later would otherwise not run.
void check_case(const GoldenCase& c, bool update) {
  SCOPED_TRACE(c.pass + "/" + c.name);
  std::string got = run_case(read_text(c.before));
  std::string header, expected;
  if (fs::exists(c.after)) std::tie(header, expected) = split_header(read_text(c.after));
  if (update) {
    if (header.empty()) header = "// TODO: what to look for in this rewrite\n";
    std::ofstream(c.after, std::ios::binary) << header << got;
    return;
  }
  ASSERT_TRUE(fs::exists(c.after)) << c.after << " is missing (CB_UPDATE_GOLDEN=1 writes it)";
  EXPECT_TRUE(starts_with(header, "//")) << c.after << ": say at its top what the rewrite shows";
  // The expected text is itself valid IR in the printer's form.
  EXPECT_EQ(print_graph(*parse_graph(expected)), expected) << c.after << " does not read back as written";
  if (got != expected)
    ADD_FAILURE() << c.pass << "/" << c.name << ": the IR after the pass differs from " << c.after
                  << " (- expected, + got; CB_UPDATE_GOLDEN=1 rewrites the file):\n"
                  << line_diff(expected, got);
}

TEST(Golden, EveryCaseMatchesItsExpectedIr) {
  bool update = std::getenv("CB_UPDATE_GOLDEN") && std::string(std::getenv("CB_UPDATE_GOLDEN")) == "1";
  std::vector<GoldenCase> cases = golden_cases();
  ASSERT_FALSE(cases.empty()) << "no cases in " << kGoldenDir;
  for (const GoldenCase& c : cases) check_case(c, update);
}

TEST(Golden, EveryRewritingPassHasCases) {
  std::set<std::string> covered;
  for (const GoldenCase& c : golden_cases()) covered.insert(c.pass);
  for (const char* pass : {"insert-codebooks", "interventions", "lower-codebook", "fuse-gelu", "fuse-layer-norm",
                           "tie-embeddings", "autodiff"})
    EXPECT_TRUE(covered.count(pass)) << "no golden case in tests/golden/" << pass;
}

TEST(Golden, DiffMarksChangedLines) {
  EXPECT_EQ(line_diff("a\nb\nc\n", "a\nx\nc\n"), "  a\n- b\n+ x\n  c\n");
  EXPECT_EQ(line_diff("1\n2\n3\n4\n5\n6\n7\n", "1\n2\n3\n4\n5\n6\nx\n"), "...\n  5\n  6\n- 7\n+ x\n");
}

// The PassManager's instrumentation: printing before/after a named pass, the
// one-line note for an unchanged graph, and the timings.
TEST(PassManager, PrintsAroundTheNamedPassAndTimesIt) {
  const char* text = R"(graph main(%x: f32[2]) -> (%y) {
  %a = Identity(%x)
  %y = Relu(%a)
}
)";
  auto g = parse_graph(text);
  std::ostringstream dump;
  PassInstrumentation instr;
  instr.print_before = {"identity-elimination"};
  instr.print_after = {"all"};
  instr.dump = &dump;
  PassManager pm(instr);
  pm.add(make_pass("identity-elimination"));
  pm.add(make_pass("dead-code-elimination"));
  size_t runs_before = 0;
  for (const PassTiming& t : pass_timings())
    if (t.name == "identity-elimination") runs_before = size_t(t.runs);
  EXPECT_TRUE(pm.run(*g));
  std::string out = dump.str();
  EXPECT_NE(out.find("// ----- IR before identity-elimination -----\n"), std::string::npos) << out;
  EXPECT_NE(out.find("// ----- IR after identity-elimination -----\n"), std::string::npos) << out;
  EXPECT_NE(out.find("// ----- IR after dead-code-elimination: unchanged -----\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("IR before dead-code-elimination"), std::string::npos) << out;
  EXPECT_NE(out.find("%y = Relu(%x)"), std::string::npos) << out;
  auto it = std::find_if(pass_timings().begin(), pass_timings().end(),
                         [](const PassTiming& t) { return t.name == "identity-elimination"; });
  ASSERT_NE(it, pass_timings().end());
  EXPECT_EQ(it->runs, int64_t(runs_before) + 1);
  std::ostringstream table;
  print_pass_timings(table);
  EXPECT_NE(table.str().find("identity-elimination"), std::string::npos) << table.str();
}

// Verification runs after every pass that changed the graph (in every build
// type) and names the pass; it can be turned off.
TEST(PassManager, VerifiesAfterAChangeAndNamesThePass) {
  struct Breaks : Pass {
    std::string name() const override { return "breaks"; }
    bool run(Graph& g) override {
      g.nodes().front()->op_type = "NoSuchOp";
      return true;
    }
  };
  const char* text = "graph main(%x: f32[2]) -> (%y) {\n  %y = Relu(%x)\n}\n";
  auto g = parse_graph(text);
  Breaks breaks;
  try {
    PassManager(PassInstrumentation{}).run(breaks, *g);
    ADD_FAILURE() << "verification did not run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("after pass 'breaks'"), std::string::npos) << e.what();
  }
  PassInstrumentation off;
  off.verify = false;
  auto g2 = parse_graph(text);
  EXPECT_TRUE(PassManager(off).run(breaks, *g2));
}

TEST(PassRegistry, BuildsPassesByNameAndRejectsUnknownOptions) {
  EXPECT_EQ(make_pass("fuse-gelu")->name(), "fuse-gelu");
  for (const PassInfo& p : pass_registry()) {
    if (p.name == "autodiff") continue;  // needs --loss and --wrt
    EXPECT_EQ(make_pass(p.name)->name(), p.name) << "the registry name is the one PassManager reports";
  }
  EXPECT_EQ(make_pass_from_text("autodiff --loss l --wrt a,b")->name(), "autodiff");
  EXPECT_THROW(make_pass("no-such-pass"), Error);
  EXPECT_THROW(make_pass_from_text("fuse-gelu --at mlp"), Error);
  EXPECT_THROW(make_pass_from_text("insert-codebooks --at"), Error);

  PassOptions o = PassOptions::parse("--at mlp,qkv --codes 8 -k 1 --groups=2,heads --ablate a:1 --ablate b:2");
  EXPECT_EQ(o.get("k", ""), "1");
  EXPECT_EQ(o.all("ablate"), (std::vector<std::string>{"a:1", "b:2"}));
  CodebookConfig cfg = codebook_config_from_pass_options(o);
  ASSERT_EQ(cfg.placements.size(), 2u);
  EXPECT_EQ(cfg.placements[1].placement, Placement::qkv);
  EXPECT_EQ(cfg.placements[1].num_codes, 8);
  EXPECT_EQ(cfg.placements[1].k, 1);
  EXPECT_EQ(cfg.placements[1].groups, kGroupsPerHead);
  EXPECT_EQ(cfg.placements[0].groups, 2);
}

}  // namespace
