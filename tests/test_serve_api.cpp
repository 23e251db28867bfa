// `codebook serve`'s JSON API over a real server on 127.0.0.1 (a free port),
// on a small cache built by `codebook cache build` from the tiny GPT-2 with
// codebooks: every endpoint against an independent reference (the cache's ids
// counted by brute force, or the CLI's `run`, `search` and `topics` on the
// same cache and model), the bad requests of issue 11 (each a 4xx with a JSON
// error, and the server keeps serving), concurrent demo-code saves, the
// "busy" answer past the model queue, and the built binary printing its URL.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "frontend/npy.h"
#include "tests/cache_test_util.h"
#include "tests/cli_util.h"
#include "tools/cache/code_cache.h"
#include "tools/serve/server.h"

namespace fs = std::filesystem;
using namespace cb;
using namespace cb::test;

namespace {

const std::string kGpt2Bpe = std::string(CB_SOURCE_DIR) + "/../shared/data/gpt2-bpe";

// A server on a free port of 127.0.0.1, serving on its own thread.
struct RunningServer {
  explicit RunningServer(serve::ServeOptions o) : server(std::move(o)) {
    port = server.bind();
    thread = std::thread([this] { server.listen(); });
  }
  ~RunningServer() {
    server.stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(60, 0);
    return c;
  }
  serve::CodeServer server;
  int port = 0;
  std::thread thread;
};

class ServeApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = temp_dir("serve");
    model_ = (dir_ / "cb.onnx").string();
    cache_ = (dir_ / "cache").string();
    Result r = cb::test::make_tiny_cache_inputs(dir_, model_);
    ASSERT_EQ(r.code, 0) << r.out;
    r = run_tool("cache build " + model_ + " -o " + cache_ + " --data " + (dir_ / "tokens.npy").string() +
                 " --tokenizer " + kGpt2Bpe + " --block-size 16 --progress off --scores");
    ASSERT_EQ(r.code, 0) << r.out;
    serve::ServeOptions o = options(cache_, model_);
    o.max_body_bytes = 64 << 10;
    server_ = new RunningServer(o);
  }
  static void TearDownTestSuite() {
    delete server_;
    fs::remove_all(dir_);
  }

  // GET or POST; the answer's status and parsed JSON body (every answer must be JSON).
  static std::pair<int, Json> get(const std::string& path, RunningServer* s = nullptr) {
    auto res = (s ? s : server_)->client().Get(path);
    return parsed(res, path);
  }
  static std::pair<int, Json> post(const std::string& path, const std::string& body, RunningServer* s = nullptr) {
    auto res = (s ? s : server_)->client().Post(path, body, "application/json");
    return parsed(res, path);
  }
  static std::pair<int, Json> parsed(const httplib::Result& res, const std::string& what) {
    EXPECT_TRUE(res) << what << ": no answer (" << httplib::to_string(res.error()) << ")";
    if (!res) return {-1, Json()};
    Json j;
    try {
      j = json_parse(res->body, what);
    } catch (const Error& e) {
      ADD_FAILURE() << what << ": the answer is not JSON: " << res->body.substr(0, 200);
    }
    return {res->status, j};
  }
  // The JSON object a CLI command prints.
  static Json cli_json(const std::string& args) {
    Result r = run_tool(args);
    EXPECT_EQ(r.code, 0) << args << "\n" << r.out;
    size_t at = r.out.find('{');
    return json_parse(at == std::string::npos ? "null" : r.out.substr(at));
  }
  // A server over `cache` with `model` (none: empty) on a free port, one model thread.
  static serve::ServeOptions options(const std::string& cache, const std::string& model) {
    serve::ServeOptions o;
    o.cache_dir = cache;
    o.model = model;
    o.port = 0;
    o.threads = 1;
    return o;
  }
  static void expect_serving() {
    auto [status, j] = get("/api/info");
    EXPECT_EQ(status, 200);
  }

  static fs::path dir_;
  static std::string model_, cache_;
  static RunningServer* server_;
};
fs::path ServeApi::dir_;
std::string ServeApi::model_, ServeApi::cache_;
RunningServer* ServeApi::server_ = nullptr;

TEST_F(ServeApi, InfoListsTheSitesMetricsAndTheModel) {
  auto [status, j] = get("/api/info");
  ASSERT_EQ(status, 200) << j.dump();
  cache::CodeCache c = cache::CodeCache::open(cache_);
  EXPECT_EQ(j.at("tokens").as_int(), 1200);
  EXPECT_EQ(j.at("documents").as_int(), 30);
  EXPECT_TRUE(j.at("model").as_bool());
  EXPECT_FALSE(j.at("read_only").as_bool());
  ASSERT_EQ(j.at("sites").size(), c.sites().size());
  for (size_t i = 0; i < c.sites().size(); ++i) {
    const Json& s = j.at("sites").at(i);
    const cache::SiteArrays& a = c.sites()[i];
    EXPECT_EQ(s.at("name").as_string(), a.info().name);
    EXPECT_EQ(s.at("members").size(), size_t(a.info().groups));
    int64_t dead = 0;
    for (int64_t g = 0; g < a.info().groups; ++g)
      for (int64_t code = 0; code < a.info().codes; ++code) dead += a.count(g, code) == 0;
    EXPECT_EQ(s.at("dead_codes").as_int(), dead) << a.info().name;
  }
  EXPECT_EQ(j.at("metrics"), c.manifest().metrics);
}

TEST_F(ServeApi, PageAndAssetsAreServedFromTheBinary) {
  auto c = server_->client();
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<script src=\"/static/app.js\">"), std::string::npos);
  for (std::string name : {"app.js", "style.css"}) {
    auto a = c.Get("/static/" + name);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->status, 200) << name;
    EXPECT_GT(a->body.size(), 500u) << name;
  }
}

// A code's examples against the cache's ids counted here: activations in the
// first slot, the documents they fall in (pages of 4), the tokens it fires on most.
TEST_F(ServeApi, CodeExamplesMatchTheIdsCountedByBruteForce) {
  cache::CodeCache c = cache::CodeCache::open(cache_);
  const cache::SiteArrays& site = c.site("layer1.attn_preproj");
  const int64_t g = 2;
  // The code of member 2 firing most in slot 0.
  std::map<int64_t, std::vector<int64_t>> where;
  for (int64_t p = 0; p < c.num_tokens(); ++p) where[site.code(p, g, 0)].push_back(p);
  int64_t code = 0;
  for (auto& [k, v] : where)
    if (k >= 0 && v.size() > where[code].size()) code = k;
  const std::vector<int64_t>& positions = where[code];
  std::vector<int64_t> docs;
  for (int64_t p : positions) {
    int64_t d = c.document_of(p);
    if (docs.empty() || docs.back() != d) docs.push_back(d);
  }
  std::map<uint32_t, int64_t> per_token;
  for (int64_t p : positions) ++per_token[c.tokens()[size_t(p)]];
  int64_t most = 0;
  for (auto& [t, n] : per_token) most = std::max(most, n);

  std::vector<int64_t> seen_docs, seen_positions;
  for (int64_t page = 0;; ++page) {
    auto [status, j] = get("/api/code?site=layer1.attn_preproj%5B2%5D&code=" + std::to_string(code) +
                           "&per_page=4&page=" + std::to_string(page));
    ASSERT_EQ(status, 200) << j.dump();
    EXPECT_EQ(j.at("activations").as_int(), int64_t(positions.size()));
    EXPECT_DOUBLE_EQ(j.at("density").as_double(), double(positions.size()) / 1200.0);
    EXPECT_EQ(j.at("documents").as_int(), int64_t(docs.size()));
    EXPECT_EQ(j.at("member").as_string(), "layer1.attn_preproj[2]");
    EXPECT_EQ(j.at("top_tokens").at(0).at("count").as_int(), most);
    EXPECT_TRUE(j.at("scores").is_object());  // built with --scores
    EXPECT_EQ(j.at("scores").at("counts").size(), 10u);
    EXPECT_TRUE(j.at("writes").find("similar")) << j.at("writes").dump();
    EXPECT_TRUE(j.at("writes").find("promoted")) << j.at("writes").dump();
    if (j.at("examples").size() == 0) break;
    EXPECT_LE(j.at("examples").size(), 4u);
    for (const Json& e : j.at("examples").as_array()) {
      seen_docs.push_back(e.at("doc").as_int());
      for (const Json& p : e.at("positions").as_array()) seen_positions.push_back(p.as_int());
      int fired = 0;
      for (const Json& part : e.at("parts").as_array()) fired += part.at("fired").as_bool();
      EXPECT_EQ(fired, int(e.at("positions").size()));
      EXPECT_NE(e.at("snippet").as_string().find("[["), std::string::npos);
    }
    ASSERT_LT(page, 100);
  }
  EXPECT_EQ(seen_docs, docs);
  EXPECT_EQ(seen_positions, positions);

  // Top-k slots 2: the code in either slot.
  int64_t both = 0;
  for (int64_t p = 0; p < c.num_tokens(); ++p) both += site.fires(p, g, code, 2);
  auto [status, j] = get("/api/code?site=layer1.attn_preproj%5B2%5D&code=" + std::to_string(code) + "&topk_slots=2");
  ASSERT_EQ(status, 200);
  EXPECT_EQ(j.at("activations").as_int(), both);

  // Minimum activations: the first code at or after the one asked for with that many.
  int64_t min_acts = int64_t(positions.size());
  int64_t expected = code;
  for (int64_t k = 0; k <= code; ++k)
    if (int64_t(where[k].size()) >= min_acts) {
      expected = k;
      break;
    }
  auto [s2, j2] = get("/api/code?site=layer1.attn_preproj%5B2%5D&code=0&min_acts=" + std::to_string(min_acts));
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(j2.at("code").as_int(), expected);
  EXPECT_EQ(j2.at("requested_code").as_int(), 0);
}

TEST_F(ServeApi, SearchAndTopicsAnswerAsTheCommandLine) {
  Json cli = cli_json("search " + cache_ + " '(e)' --min-precision 0 --top 3 --sort recall --json");
  auto [status, j] = get("/api/search?regex=%28e%29&min_precision=0&top=3&sort=recall");
  ASSERT_EQ(status, 200) << j.dump();
  EXPECT_GT(j.at("matches").as_int(), 0);
  EXPECT_EQ(j.at("matches"), cli.at("matches"));
  ASSERT_EQ(j.at("codes").size(), cli.at("codes").size());
  for (size_t i = 0; i < cli.at("codes").size(); ++i)
    for (const char* key : {"site", "group", "code", "precision", "recall", "activations"})
      EXPECT_EQ(j.at("codes").at(i).at(key), cli.at("codes").at(i).at(key)) << i << " " << key;

  Json topics = cli_json("topics " + cache_ + " --doc 4 --recall 0.1 --json");
  auto [s2, t] = get("/api/topics?doc=4&recall=0.1");
  ASSERT_EQ(s2, 200) << t.dump();
  ASSERT_EQ(t.at("codes").size(), topics.at("codes").size());
  for (size_t i = 0; i < t.at("codes").size(); ++i)
    EXPECT_EQ(t.at("codes").at(i).at("code"), topics.at("codes").at(i).at("code"));
  // Sorted by activations instead of recall: the same codes, most activations first.
  auto [s4, by_acts] = get("/api/topics?doc=4&recall=0.1&sort=acts");
  ASSERT_EQ(s4, 200) << by_acts.dump();
  ASSERT_EQ(by_acts.at("codes").size(), t.at("codes").size());
  std::multiset<int64_t> codes_by_recall, codes_by_acts;
  for (size_t i = 0; i < t.at("codes").size(); ++i) {
    codes_by_recall.insert(t.at("codes").at(i).at("code").as_int());
    codes_by_acts.insert(by_acts.at("codes").at(i).at("code").as_int());
    if (i > 0)
      EXPECT_GE(by_acts.at("codes").at(i - 1).at("activations").as_int(),
                by_acts.at("codes").at(i).at("activations").as_int());
  }
  EXPECT_EQ(codes_by_recall, codes_by_acts);
  // "next": the next document with a topic code at this recall, as the CLI sees them.
  int64_t expected = -1;
  for (int64_t d = 5; d < 30 && expected < 0; ++d)
    if (cli_json("topics " + cache_ + " --doc " + std::to_string(d) + " --recall 0.5 --json").at("codes").size() > 0)
      expected = d;
  auto [s3, n] = get("/api/topics?doc=4&recall=0.5&next=1");
  if (expected >= 0) {
    ASSERT_EQ(s3, 200) << n.dump();
    EXPECT_EQ(n.at("doc").as_int(), expected);
  } else {
    EXPECT_TRUE(s3 == 200 || s3 == 404) << n.dump();
  }
}

TEST_F(ServeApi, SimilarCodesAreTheCommandLines) {
  Json cli = cli_json("similar " + model_ + " layer0.mlp 5 -n 4 --json");
  auto [status, j] = get("/api/similar?site=layer0.mlp&code=5&n=4");
  ASSERT_EQ(status, 200) << j.dump();
  ASSERT_EQ(j.at("similar").size(), 4u);
  const Json* list = cli.find("similar");
  ASSERT_TRUE(list) << cli.dump();
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(j.at("similar").at(i).at("code"), list->at(i).at("code"));
}

// The live model against `codebook run` on the same model and tokens.
TEST_F(ServeApi, RunAndInterveneMatchCodebookRun) {
  const std::string tokens = "[5, 17, 300, 42, 7]";
  auto [status, j] = post("/api/run", "{\"tokens\": " + tokens + "}");
  ASSERT_EQ(status, 200) << j.dump();
  Json cli = cli_json("run " + model_ + " --tokens 5,17,300,42,7 --show-codes all --top 10 --json");
  ASSERT_EQ(j.at("next").size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(j.at("next").at(i).at("token"), cli.at("next").at(i).at("token"));
    EXPECT_NEAR(j.at("next").at(i).at("p").as_double(), cli.at("next").at(i).at("p").as_double(), 1e-5);
  }
  for (auto& [site, codes] : cli.at("codes").as_object()) EXPECT_EQ(j.at("codes").at(site), codes) << site;

  // Ablate the codes layer0.mlp selects at the last position, there and everywhere.
  std::string ablated;
  for (const Json& c : cli.at("codes").at("layer0.mlp").at(4).at(0).as_array())
    ablated += (ablated.empty() ? "" : ",") + std::to_string(c.as_int());
  auto [s2, iv] = post("/api/intervene", "{\"tokens\": " + tokens + ", \"ablate\": [\"layer0.mlp:" + ablated + "\"]}");
  ASSERT_EQ(s2, 200) << iv.dump();
  Json cmp = cli_json("run " + model_ + " --tokens 5,17,300,42,7 --ablate layer0.mlp:" + ablated +
                      " --compare --top 10 --json");
  EXPECT_GT(iv.at("jsd").as_double(), 0.0);
  EXPECT_NEAR(iv.at("jsd").as_double(), cmp.at("jsd").as_double(), 1e-6);
  EXPECT_EQ(iv.at("jsd_unit").as_string(), "bits");
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(iv.at("next").at(i).at("token"), cmp.at("next").at(i).at("token"));
    EXPECT_EQ(iv.at("clean_next").at(i).at("token"), cmp.at("clean_next").at(i).at("token"));
  }
  // The ablated codes are gone from the last position's codes.
  for (const Json& c : iv.at("codes").at("layer0.mlp").at(4).at(0).as_array())
    EXPECT_EQ(("," + ablated + ",").find("," + std::to_string(c.as_int()) + ","), std::string::npos);
}

// /api/generate is `codebook generate` (the same Generator and Sampler): the
// same tokens for the same prompt, sampling and interventions, greedy or
// sampled, with an ablation everywhere and a force at an absolute position
// that only a generated token reaches.
TEST_F(ServeApi, GenerateGivesTheTokensOfCodebookGenerate) {
  // The codes layer0.mlp selects at the prompt's last position.
  auto [s0, run] = post("/api/run", "{\"tokens\": [5, 17, 300, 42, 7]}");
  ASSERT_EQ(s0, 200) << run.dump();
  std::string selected;
  for (const Json& c : run.at("codes").at("layer0.mlp").at(4).at(0).as_array())
    selected += (selected.empty() ? "" : ",") + std::to_string(c.as_int());
  struct Case {
    std::string json, sampling, interventions;  // request fields; the CLI's options
  };
  const std::vector<Case> cases = {
      {"", "", ""},
      {"\"ablate\": [\"layer0.mlp:" + selected + "\"]", "", "--ablate layer0.mlp:" + selected},
      {"\"temperature\": 0.9, \"top_k\": 20, \"top_p\": 0.9, \"seed\": 11, \"force\": [\"layer1.mlp:7@6\"]",
       "--temperature 0.9 --top-k 20 --top-p 0.9 --seed 11", "--force layer1.mlp:7@6"},
      {"\"temperature\": 1.5, \"seed\": 3, \"ablate\": [\"layer0.attn_preproj[1]:2@*\"], \"ablate_mode\": \"zero\"",
       "--temperature 1.5 --seed 3", "--ablate 'layer0.attn_preproj[1]:2@*' --ablate-mode zero"},
  };
  auto ids = [](const Json& list) {
    std::string s;
    for (const Json& t : list.as_array()) s += (s.empty() ? "" : ",") + std::to_string(t.at("id").as_int());
    return s;
  };
  auto cli_ids = [&](const std::string& options) {
    Result r = run_tool("generate " + model_ + " --tokens 5,17,300,42,7 --max-new 6 --ids --threads 1 " + options);
    EXPECT_EQ(r.code, 0) << options << "\n" << r.out;
    return r.out.substr(0, r.out.find('\n'));
  };
  int changed = 0;
  for (const Case& c : cases) {
    auto [status, gen] = post("/api/generate", std::string("{\"tokens\": [5, 17, 300, 42, 7], \"max_tokens\": 6") +
                                                   (c.json.empty() ? "" : ", ") + c.json + "}");
    ASSERT_EQ(status, 200) << c.json << ": " << gen.dump();
    ASSERT_EQ(gen.at("continuation").size(), 6u) << c.json;
    EXPECT_EQ(gen.at("stopped").as_string(), "max_tokens");
    EXPECT_EQ(ids(gen.at("continuation")), cli_ids(c.sampling + " " + c.interventions)) << c.json;
    if (c.interventions.empty()) {
      EXPECT_FALSE(gen.find("clean_continuation")) << c.json;
    } else {
      EXPECT_EQ(ids(gen.at("clean_continuation")), cli_ids(c.sampling)) << c.json;
      changed += gen.at("clean_continuation") != gen.at("continuation");
    }
  }
  EXPECT_GT(changed, 0) << "no intervention changed a continuation: the comparison shows nothing";
  // The same request again (the cached generator, its KV cache reused) gives the same tokens.
  const std::string body = "{\"tokens\": [5, 17], \"max_tokens\": 5, \"temperature\": 1, \"seed\": 4}";
  auto [s1, first] = post("/api/generate", body);
  auto [s2, second] = post("/api/generate", body);
  ASSERT_EQ(s1, 200);
  ASSERT_EQ(s2, 200);
  EXPECT_EQ(first.at("continuation"), second.at("continuation"));
}

// Generation is bounded in model time: past the limit it stops after the
// token at hand (here a limit of 0: one token, the one the prompt gives).
TEST_F(ServeApi, GenerationStopsAtTheTimeLimit) {
  serve::ServeOptions o = options(cache_, model_);
  o.generate_seconds = 0;
  RunningServer s(o);
  auto [status, j] = post("/api/generate", "{\"tokens\": [5, 17, 300], \"max_tokens\": 8}", &s);
  ASSERT_EQ(status, 200) << j.dump();
  EXPECT_EQ(j.at("stopped").as_string(), "time");
  EXPECT_EQ(j.at("continuation").size(), 1u);
}

TEST_F(ServeApi, BadRequestsAreJsonErrorsAndTheServerKeepsServing) {
  struct Case {
    std::string method, path, body;
    int status;
  };
  const std::vector<Case> cases = {
      {"GET", "/api/code?site=layer9.mlp&code=1", "", 400},              // unknown site
      {"GET", "/api/code?site=layer0.mlp&code=64", "", 400},             // code out of range (64 codes)
      {"GET", "/api/code?site=layer0.mlp&code=-1", "", 400},             // negative code
      {"GET", "/api/code?site=layer0.mlp&code=abc", "", 400},            // not a number
      {"GET", "/api/code?site=layer0.mlp", "", 400},                     // missing code
      {"GET", "/api/similar?site=layer0.mlp&code=99", "", 400},          // similar: out of range
      {"GET", "/api/search?regex=(a", "", 400},                          // invalid regex
      {"GET", "/api/search?regex=" + std::string(5000, 'a'), "", 400},   // regex too long
      {"GET", "/api/search?regex=a&site=layer0.nosuch", "", 400},        // unknown site
      {"GET", "/api/topics?doc=30", "", 400},                            // document out of range
      {"GET", "/api/topics?doc=0&sort=nope", "", 400},                   // unknown sort key
      {"GET", "/api/code?site=..%2F..%2Fetc%2Fpasswd&code=1", "", 400},  // a path as a site
      {"GET", "/api/code?site=%2Fetc%2Fpasswd&code=1", "", 400},         // an absolute path
      {"GET", "/static/../../etc/passwd", "", 404},                      // `..` in the path
      {"GET", "/static/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "", 404},        // encoded
      {"GET", "/etc/passwd", "", 404},                                   // no files outside the assets
      {"GET", "/static/index.html/../../../etc/passwd", "", 404},        // no path behind an asset
      {"POST", "/api/info", "{}", 405},                                  // wrong methods
      {"GET", "/api/run", "", 405},
      {"PUT", "/api/demo_codes", "{}", 405},
      {"DELETE", "/api/demo_codes", "", 405},
      {"POST", "/api/run", "{\"tokens\": [1,", 400},          // malformed JSON
      {"POST", "/api/run", "[1, 2]", 400},                    // not an object
      {"POST", "/api/run", "{}", 400},                        // no prompt
      {"POST", "/api/run", "{\"tokens\": [100000]}", 400},    // token out of the vocabulary
      {"POST", "/api/run", "{\"tokens\": [1, \"x\"]}", 400},  // not token ids
      {"POST", "/api/intervene", "{\"tokens\": [1], \"ablate\": [\"layer7.mlp:1\"]}", 400},    // no such layer
      {"POST", "/api/intervene", "{\"tokens\": [1], \"ablate\": [\"nonsense\"]}", 400},        // bad syntax
      {"POST", "/api/intervene", "{\"tokens\": [1], \"force\": [\"layer0.mlp:64\"]}", 400},    // code out of range
      {"POST", "/api/intervene", "{\"tokens\": [1]}", 400},                                    // nothing to do
      {"POST", "/api/intervene", "{\"tokens\": [1], \"ablate\": [\"layer0.mlp:1@5\"]}", 400},  // past the sequence
      {"POST", "/api/generate", "{\"tokens\": [1], \"max_tokens\": 100000}", 400},             // too many tokens
      {"POST", "/api/demo_codes", "{\"site\": \"../cache.json\", \"code\": 1}", 400},          // a path as a site
      {"POST", "/api/demo_codes", "{\"site\": \"layer0.mlp\", \"code\": 64}", 400},
      {"POST", "/api/run", std::string(100 << 10, ' '), 413},  // body over --max-body (64 KiB here)
  };
  for (const Case& c : cases) {
    auto client = server_->client();
    httplib::Result res = c.method == "GET"    ? client.Get(c.path)
                          : c.method == "POST" ? client.Post(c.path, c.body, "application/json")
                          : c.method == "PUT"  ? client.Put(c.path, c.body, "application/json")
                                               : client.Delete(c.path);
    auto [status, j] = parsed(res, c.method + " " + c.path.substr(0, 80));
    EXPECT_EQ(status, c.status) << c.method << " " << c.path.substr(0, 80) << ": " << j.dump();
    ASSERT_TRUE(j.is_object()) << c.path.substr(0, 80);
    EXPECT_TRUE(j.find("error") && j.at("error").is_string()) << c.path.substr(0, 80) << ": " << j.dump();
    expect_serving();
  }
  EXPECT_FALSE(fs::exists(dir_ / "cache.json"));
}

// Concurrent saves lose nothing; the file stays valid JSON; --read-only refuses.
TEST_F(ServeApi, DemoCodesSavedConcurrentlyAreAllKept) {
  std::vector<std::thread> threads;
  std::vector<int> statuses(12, 0);
  for (int i = 0; i < 12; ++i)
    threads.emplace_back([&, i] {
      auto res = server_->client().Post(
          "/api/demo_codes",
          "{\"site\": \"layer0.attn_preproj[1]\", \"code\": " + std::to_string(i) + ", \"description\": \"d\"}",
          "application/json");
      statuses[size_t(i)] = res ? res->status : -1;
    });
  for (auto& t : threads) t.join();
  for (int s : statuses) EXPECT_EQ(s, 200);
  Json file = json_read_file(cache_ + "/demo_codes.json");
  std::set<int64_t> codes;
  for (const Json& e : file.at("codes").as_array())
    if (e.at("member").as_string() == "layer0.attn_preproj[1]") codes.insert(e.at("code").as_int());
  EXPECT_EQ(codes.size(), 12u);
  auto [status, j] = get("/api/demo_codes");
  ASSERT_EQ(status, 200);
  cache::CodeCache c = cache::CodeCache::open(cache_);
  for (const Json& e : j.at("codes").as_array())
    if (e.at("member").as_string() == "layer0.attn_preproj[1]")
      EXPECT_EQ(e.at("activations").as_int(), c.site("layer0.attn_preproj").count(1, e.at("code").as_int()));
  // Removing one.
  auto [s2, r] = post("/api/demo_codes", "{\"site\": \"layer0.attn_preproj[1]\", \"code\": 3, \"remove\": true}");
  EXPECT_EQ(s2, 200) << r.dump();
  EXPECT_EQ(json_read_file(cache_ + "/demo_codes.json").at("codes").size(), file.at("codes").size() - 1);

  serve::ServeOptions o = options(cache_, "");
  o.read_only = true;
  RunningServer ro(o);
  auto [s3, e] = post("/api/demo_codes", "{\"site\": \"layer0.mlp\", \"code\": 1}", &ro);
  EXPECT_EQ(s3, 403) << e.dump();
  auto [s4, info] = get("/api/info", &ro);
  EXPECT_TRUE(info.at("read_only").as_bool());
  EXPECT_FALSE(info.at("model").as_bool());
  auto [s5, nomodel] = post("/api/run", "{\"tokens\": [1]}", &ro);
  EXPECT_EQ(s5, 404) << nomodel.dump();
}

// With no queue, model requests arriving while one runs are answered 503 "busy".
TEST_F(ServeApi, ModelRequestsPastTheQueueAreBusy) {
  serve::ServeOptions o = options(cache_, model_);
  o.model_queue = 0;
  RunningServer s(o);
  int ok = 0, busy = 0;
  for (int round = 0; round < 10 && busy == 0; ++round) {
    std::vector<std::thread> threads;
    std::vector<int> statuses(6, 0);
    for (int i = 0; i < 6; ++i)
      threads.emplace_back([&, i] {
        auto res = s.client().Post("/api/generate", "{\"tokens\": [1, 2, 3], \"max_tokens\": 64}", "application/json");
        statuses[size_t(i)] = res ? res->status : -1;
        if (res && res->status == 503) EXPECT_NE(res->body.find("busy"), std::string::npos);
      });
    for (auto& t : threads) t.join();
    for (int st : statuses) {
      EXPECT_TRUE(st == 200 || st == 503) << st;
      ok += st == 200, busy += st == 503;
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(busy, 0);
  auto [status, j] = post("/api/run", "{\"tokens\": [1, 2]}", &s);
  EXPECT_EQ(status, 200);
}

// A model inside a training run: its log.jsonl as curves (thinned, the last point kept).
TEST_F(ServeApi, TrainingCurvesComeFromTheRunsLog) {
  fs::create_directories(dir_ / "run");
  fs::copy_file(model_, dir_ / "run" / "model.onnx", fs::copy_options::overwrite_existing);
  {
    std::ofstream log(dir_ / "run" / "log.jsonl");
    for (int step = 1; step <= 2500; ++step)
      log << "{\"step\": " << step << ", \"loss\": " << 10.0 / step
          << ", \"MSE/layer0\": 0.5, \"elapsed_seconds\": 1}\n";
    log << "{\"step\": 2501, \"lo";  // a line being written
  }
  auto [s0, none] = get("/api/curves");
  EXPECT_EQ(s0, 404) << none.dump();  // the test's model is no training run
  RunningServer s(options(cache_, (dir_ / "run" / "model.onnx").string()));
  auto [s1, info] = get("/api/info", &s);
  EXPECT_TRUE(info.at("curves").as_bool());
  auto [status, j] = get("/api/curves", &s);
  ASSERT_EQ(status, 200) << j.dump();
  const Json& loss = j.at("series").at("loss");
  EXPECT_LE(loss.size(), 1001u);
  EXPECT_GE(loss.size(), 800u);
  EXPECT_EQ(loss.at(0).at(0).as_int(), 1);
  EXPECT_DOUBLE_EQ(loss.at(0).at(1).as_double(), 10.0);
  EXPECT_EQ(loss.at(loss.size() - 1).at(0).as_int(), 2500);
  EXPECT_DOUBLE_EQ(loss.at(loss.size() - 1).at(1).as_double(), 10.0 / 2500);
  for (const Json& p : loss.as_array())  // written with 6 significant digits
    EXPECT_NEAR(p.at(1).as_double(), 10.0 / p.at(0).as_double(), 1e-5 * p.at(1).as_double());
  EXPECT_TRUE(j.at("series").find("MSE/layer0"));
  EXPECT_FALSE(j.at("series").find("elapsed_seconds"));
}

// A TokFSM cache (a 2-step run's codes over its task's data): documents and
// examples shown as states ("12-34-5"), as the original's app shows them, and
// as `codebook code` does; a text prompt is <|endoftext|> then one token per
// digit; generation stops at the model's context.
TEST_F(ServeApi, TokFsmCachesShowStates) {
  fs::path cfg = dir_ / "tiny_fsm.yaml";
  std::ofstream(cfg) << kTinyTokFsmConfig;
  const std::string run = (dir_ / "fsm_run").string(), cache = (dir_ / "fsm_cache").string();
  Result r = run_tool("train " + cfg.string() + " --output " + run + " --progress off");
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_tool("cache build " + run + " -o " + cache + " --data tokfsm --max-tokens 320 --progress off");
  ASSERT_EQ(r.code, 0) << r.out;
  RunningServer s(options(cache, run));
  auto [s1, info] = get("/api/info", &s);
  ASSERT_EQ(s1, 200) << info.dump();
  EXPECT_EQ(info.at("tokfsm_state_digits").as_int(), 2);

  // Document 0 as states.
  cache::CodeCache c = cache::CodeCache::open(cache);
  std::string digits(c.document_text(0)), states;
  for (size_t i = 0; i < digits.size(); ++i) states += (i > 0 && i % 2 == 0 ? "-" : "") + digits.substr(i, 1);
  auto [s2, topics] = get("/api/topics?doc=0&max_chars=100000", &s);
  ASSERT_EQ(s2, 200) << topics.dump();
  EXPECT_EQ(topics.at("text").as_string(), states);

  // The code of document 0's first digit: its first example as `codebook code` shows it.
  const int64_t code = c.site("layer0.mlp").code(c.doc_tokens()[0] + 1, 0, 0);
  Json cli = cli_json("code " + cache + " layer0.mlp " + std::to_string(code) + " --max 1 --json");
  auto [s3, j] = get("/api/code?site=layer0.mlp&per_page=1&code=" + std::to_string(code), &s);
  ASSERT_EQ(s3, 200) << j.dump();
  ASSERT_EQ(j.at("examples").size(), 1u);
  EXPECT_EQ(j.at("examples").at(0).at("snippet"), cli.at("examples").at(0).at("snippet"));
  EXPECT_NE(j.at("examples").at(0).at("snippet").as_string().find('-'), std::string::npos);

  auto [s4, ran] = post("/api/run", "{\"prompt\": \"4312\"}", &s);
  ASSERT_EQ(s4, 200) << ran.dump();
  std::vector<int64_t> ids;
  for (const Json& t : ran.at("tokens").as_array()) ids.push_back(t.at("id").as_int());
  EXPECT_EQ(ids, (std::vector<int64_t>{10, 4, 3, 1, 2}));
  // 16 positions: 5 prompt tokens leave room for 11 new ones.
  auto [s5, gen] = post("/api/generate", "{\"prompt\": \"4312\", \"max_tokens\": 20}", &s);
  ASSERT_EQ(s5, 200) << gen.dump();
  EXPECT_EQ(gen.at("continuation").size(), 11u);
  EXPECT_EQ(gen.at("stopped").as_string(), "context");
}

// A port in use is an error, not a second server sharing it.
TEST_F(ServeApi, APortInUseIsAnError) {
  serve::ServeOptions o;
  o.cache_dir = cache_;
  o.port = server_->port;
  serve::CodeServer second(o);
  EXPECT_THROW(second.bind(), Error);
  expect_serving();
}

// The built binary: --port 0 prints the URL of a free port, which serves.
TEST_F(ServeApi, TheBinaryPrintsItsUrlAndServes) {
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    execl(CB_CODEBOOK_BIN, CB_CODEBOOK_BIN, "serve", cache_.c_str(), "--port", "0", "--read-only", (char*)nullptr);
    _exit(127);
  }
  close(out[1]);
  std::string line;
  char ch;
  while (read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
  close(out[0]);
  size_t at = line.find("http://127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << line;
  int port = std::stoi(line.substr(at + 17));
  EXPECT_GT(port, 0);
  EXPECT_NE(line.find("(read-only)"), std::string::npos) << line;
  httplib::Client c("127.0.0.1", port);
  auto res = c.Get("/api/info");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("\"read_only\":true"), std::string::npos);
  kill(pid, SIGTERM);
  int st = 0;
  waitpid(pid, &st, 0);
}

}  // namespace
