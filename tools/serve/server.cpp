#include "tools/serve/server.h"

#include <httplib.h>

#include <functional>
#include <map>
#include <set>

#include "support/error.h"
#include "support/json.h"
#include "tools/cache/code_cache.h"
#include "tools/serve/assets.h"
#include "tools/serve/cache_api.h"
#include "tools/serve/http_error.h"
#include "tools/serve/live_model.h"
#include "tools/serve/train_curves.h"

namespace cb::serve {

namespace {

void send_json(httplib::Response& res, int status, const Json& j) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(j.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, Json(Json::Object{{"error", Json(message)}}));
}

// Runs `fn`, turning every failure into a JSON error: HttpError keeps its
// status, cb::Error (bad input named by the cache or model code) is a 400.
void answer(httplib::Response& res, const std::function<Json()>& fn) {
  try {
    send_json(res, 200, fn());
  } catch (const HttpError& e) {
    send_error(res, e.status(), e.what());
  } catch (const Error& e) {
    send_error(res, 400, e.what());
  } catch (const std::bad_alloc&) {
    send_error(res, 503, "out of memory");
  } catch (const std::exception& e) {
    send_error(res, 500, e.what());
  }
}

Json body_json(const httplib::Request& req) {
  try {
    return json_parse(req.body, "request body");
  } catch (const Error& e) {
    throw HttpError(400, std::string("malformed JSON: ") + e.what());
  }
}

}  // namespace

struct CodeServer::Impl {
  ServeOptions options;
  cache::CodeCache cache;
  std::unique_ptr<CacheApi> api;
  std::unique_ptr<LiveModel> model;
  httplib::Server http;
  std::map<std::string, std::set<std::string>> methods;  // API path -> allowed methods

  explicit Impl(ServeOptions o) : options(std::move(o)), cache(cache::CodeCache::open(options.cache_dir)) {
    if (!options.model.empty()) {
      LiveModelOptions lo;
      lo.max_queue = options.model_queue;
      lo.threads = options.threads;
      lo.max_generate_seconds = options.generate_seconds;
      model = std::make_unique<LiveModel>(options.model, cache.manifest().tokenizer, lo);
    }
    api = std::make_unique<CacheApi>(cache, options.model, options.read_only, model != nullptr);
    routes();
  }

  LiveModel& live() {
    if (!model) throw HttpError(404, "no live model: start the server with --model MODEL");
    return *model;
  }

  void get(const std::string& path, std::function<Json(const httplib::Request&)> fn) {
    methods[path].insert("GET");
    http.Get(path, [fn](const httplib::Request& req, httplib::Response& res) { answer(res, [&] { return fn(req); }); });
  }
  void post(const std::string& path, std::function<Json(const Json&)> fn) {
    methods[path].insert("POST");
    http.Post(path, [fn](const httplib::Request& req, httplib::Response& res) {
      answer(res, [&] { return fn(body_json(req)); });
    });
  }

  void routes() {
    get("/api/info", [this](auto&) {
      Json j = api->info();
      j["curves"] = !find_training_log(options.model).empty();
      return j;
    });
    get("/api/search", [this](auto& req) { return api->search(req.params); });
    get("/api/code", [this](auto& req) { return api->code(req.params); });
    get("/api/topics", [this](auto& req) { return api->topics(req.params); });
    get("/api/similar", [this](auto& req) { return api->similar(req.params); });
    get("/api/demo_codes", [this](auto&) { return api->demo_codes(); });
    get("/api/curves", [this](auto&) {
      std::string log = find_training_log(options.model);
      if (log.empty()) throw HttpError(404, "the model is not a training run with a log.jsonl");
      return training_curves(log);
    });
    post("/api/demo_codes", [this](const Json& b) { return api->save_demo_code(b); });
    post("/api/run", [this](const Json& b) { return live().run(b); });
    post("/api/intervene", [this](const Json& b) { return live().intervene(b); });
    post("/api/generate", [this](const Json& b) { return live().generate(b); });

    // The page: compiled-in assets looked up by name (no file is ever read).
    auto asset = [](const std::string& name, httplib::Response& res) {
      for (const Asset& a : kAssets)
        if (a.name == name) {
          res.set_header("X-Content-Type-Options", "nosniff");
          res.set_content(std::string(a.body), std::string(a.content_type));
          return true;
        }
      return false;
    };
    http.Get("/", [asset](const httplib::Request&, httplib::Response& res) { asset("index.html", res); });
    http.Get(R"(/static/([A-Za-z0-9_.-]+))", [asset](const httplib::Request& req, httplib::Response& res) {
      if (!asset(req.matches[1], res)) send_error(res, 404, "no such file");
    });

    // Everything else: 405 for a known path with another method, else 404.
    auto other = [this](const httplib::Request& req, httplib::Response& res) {
      auto it = methods.find(req.path);
      if (it == methods.end()) return send_error(res, 404, "not found: " + req.path);
      std::string allow;
      for (const std::string& m : it->second) allow += (allow.empty() ? "" : ", ") + m;
      res.set_header("Allow", allow);
      send_error(res, 405, req.method + " is not allowed on " + req.path + " (allowed: " + allow + ")");
    };
    http.Get(".*", other);
    http.Post(".*", other);
    http.Put(".*", other);
    http.Patch(".*", other);
    http.Delete(".*", other);
    http.Options(".*", other);

    // Errors httplib answers itself (413 body too large, 400 bad request line,
    // ...) get a JSON body too.
    http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (res.body.empty())
        send_error(
            res, res.status,
            res.status == 413 ? "request body too large" : "bad request (HTTP " + std::to_string(res.status) + ")");
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
      send_error(res, 500, "internal error");
    });
    // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, with which a
    // second server on a port in use silently shares it instead of failing.
    http.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });
    http.set_payload_max_length(options.max_body_bytes);
    http.set_read_timeout(10, 0);
    http.set_write_timeout(30, 0);
  }
};

CodeServer::CodeServer(ServeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
CodeServer::~CodeServer() = default;

int CodeServer::bind() {
  const ServeOptions& o = impl_->options;
  int port = o.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(o.host);
    CB_CHECK(port > 0, "cannot bind " << o.host << " to a free port");
  } else {
    CB_CHECK(impl_->http.bind_to_port(o.host, port),
             "cannot bind " << o.host << ":" << port << " (in use? try --port 0 for a free one)");
  }
  return port;
}

void CodeServer::listen() { impl_->http.listen_after_bind(); }
void CodeServer::stop() { impl_->http.stop(); }

}  // namespace cb::serve
