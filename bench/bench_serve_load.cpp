// Load test of `codebook serve` (issue 11): N concurrent clients for S seconds
// of mixed requests -- regex search, a code's examples, and (when the server
// has a model) live-model run, intervene and generate -- against a running server. Prints the
// requests, errors (any answer but 200; 503 "busy" counted apart) and the
// p50/p99 latency per kind. Exit 1 when any request failed.
//   bench_serve_load PORT [--clients 8] [--seconds 30] [--host 127.0.0.1]
// bench/serve_load.sh builds the caches, starts the server and reads its RSS.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/json.h"

namespace {

struct Stats {
  std::vector<double> ms;
  int64_t errors = 0, busy = 0;
};

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_serve_load PORT [--clients 8] [--seconds 30] [--host 127.0.0.1]\n");
    return 2;
  }
  int port = std::atoi(argv[1]), clients = 8;
  double seconds = 30;
  std::string host = "127.0.0.1";
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--clients")) clients = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seconds")) seconds = std::atof(argv[i + 1]);
    if (!std::strcmp(argv[i], "--host")) host = argv[i + 1];
  }
  httplib::Client probe(host, port);
  auto info_res = probe.Get("/api/info");
  if (!info_res || info_res->status != 200) {
    std::fprintf(stderr, "no server answering /api/info on %s:%d\n", host.c_str(), port);
    return 2;
  }
  cb::Json info = cb::json_parse(info_res->body, "/api/info");
  struct Member {
    std::string name;
    int64_t codes;
  };
  std::vector<Member> members;
  for (const cb::Json& s : info.at("sites").as_array())
    for (const cb::Json& m : s.at("members").as_array()) members.push_back({m.as_string(), s.at("codes").as_int()});
  const bool model = info.at("model").as_bool();
  const bool tokfsm = info.at("tokfsm_state_digits").as_int() > 0;
  // Patterns and prompts that fit the cache's text (TokFSM digits, else English).
  std::vector<std::string> patterns =
      tokfsm ? std::vector<std::string>{"4(3)", "(1)2", "0(0)", "9(.)", "(5)5", "7(8)"}
             : std::vector<std::string>{"New (York)", "(the)", " (a) ", "([A-Z])", "(ing)", "\\. (T)"};
  std::vector<std::string> prompts =
      tokfsm ? std::vector<std::string>{"4312", "0123456789", "55", "9876543210123"}
             : std::vector<std::string>{"The cat sat on the", "New York is", "Once upon a time", "He said"};
  auto encode = [](const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
      if (isalnum(c))
        out += char(c);
      else {
        char buf[4];
        std::snprintf(buf, sizeof buf, "%%%02X", c);
        out += buf;
      }
    }
    return out;
  };

  std::mutex mutex;
  std::map<std::string, Stats> stats;
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(uint64_t(c) * 7919 + 1);
      httplib::Client cli(host, port);
      cli.set_read_timeout(120, 0);
      std::map<std::string, Stats> mine;
      while (std::chrono::steady_clock::now() < until) {
        // 40% search, 40% a code's examples, 10% run, 5% intervene, 5% generate (model requests: code without a model).
        int kind = int(rng() % 20);
        std::string name;
        auto t0 = std::chrono::steady_clock::now();
        httplib::Result res = [&] {
          if (kind < 8) {
            name = "search";
            return cli.Get("/api/search?regex=" + encode(patterns[rng() % patterns.size()]) + "&min_precision=0.5");
          } else if (kind < 16 || !model) {
            name = "code";
            const Member& m = members[rng() % members.size()];
            return cli.Get("/api/code?site=" + encode(m.name) + "&code=" + std::to_string(rng() % uint64_t(m.codes)) +
                           "&per_page=20&page=" + std::to_string(rng() % 3));
          }
          name = kind < 18 ? "run" : kind == 18 ? "intervene" : "generate";
          const Member& m = members[rng() % members.size()];
          std::string body = "{\"prompt\": \"" + prompts[rng() % prompts.size()] + "\"";
          if (name != "run")
            body += ", \"ablate\": [\"" + m.name + ":" + std::to_string(rng() % uint64_t(m.codes)) + "\"]";
          if (name == "generate")
            body += ", \"max_tokens\": 16, \"temperature\": 1, \"seed\": " + std::to_string(rng() % 1000);
          return cli.Post("/api/" + name, body + "}", "application/json");
        }();
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        Stats& s = mine[name];
        if (res && res->status == 200)
          s.ms.push_back(ms);
        else if (res && res->status == 503)
          ++s.busy;
        else {
          ++s.errors;
          if (s.errors <= 3)
            std::fprintf(stderr, "%s: %s\n", name.c_str(),
                         res ? (std::to_string(res->status) + " " + res->body.substr(0, 200)).c_str()
                             : httplib::to_string(res.error()).c_str());
        }
      }
      std::lock_guard<std::mutex> lock(mutex);
      for (auto& [k, s] : mine) {
        Stats& t = stats[k];
        t.ms.insert(t.ms.end(), s.ms.begin(), s.ms.end());
        t.errors += s.errors, t.busy += s.busy;
      }
    });
  for (auto& t : threads) t.join();

  int64_t errors = 0;
  Stats all;
  std::printf("%d clients, %.0f s, cache of %lld tokens%s\n", clients, seconds, (long long)info.at("tokens").as_int(),
              model ? ", live model" : "");
  std::printf("%-10s %9s %7s %6s %9s %9s\n", "request", "ok", "errors", "busy", "p50 ms", "p99 ms");
  for (auto& [k, s] : stats) {
    std::printf("%-10s %9zu %7lld %6lld %9.2f %9.2f\n", k.c_str(), s.ms.size(), (long long)s.errors, (long long)s.busy,
                percentile(s.ms, 0.5), percentile(s.ms, 0.99));
    errors += s.errors;
    all.ms.insert(all.ms.end(), s.ms.begin(), s.ms.end());
    all.busy += s.busy;
  }
  std::printf("%-10s %9zu %7lld %6lld %9.2f %9.2f\n", "all", all.ms.size(), (long long)errors, (long long)all.busy,
              percentile(all.ms, 0.5), percentile(all.ms, 0.99));
  return errors ? 1 : 0;
}
