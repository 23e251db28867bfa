// codebook.Cache: a code cache (docs/cache.md) with `codebook search`,
// `code` and `topics` as methods returning dicts. They are the code browser's
// JSON API (tools/serve/cache_api.h), which takes its parameters as text, so
// the answers, checks and messages are the server's and the page's.
#include <pybind11/stl.h>

#include <memory>

#include "support/error.h"
#include "tools/cache/code_cache.h"
#include "tools/python/bindings.h"
#include "tools/python/python_convert.h"
#include "tools/serve/cache_api.h"

namespace cb::python {

namespace {

class Cache {
 public:
  explicit Cache(const std::string& dir)
      : cache_(std::make_unique<cache::CodeCache>(cache::CodeCache::open(dir))),
        api_(std::make_unique<serve::CacheApi>(*cache_, "", /*read_only=*/true, /*live_model=*/false)) {}

  const cache::CodeCache& cache() const { return *cache_; }
  serve::CacheApi& api() { return *api_; }

 private:
  std::unique_ptr<cache::CodeCache> cache_;
  std::unique_ptr<serve::CacheApi> api_;
};

// Keyword arguments as query parameters: None is left out, booleans are 1/0.
serve::Params params(std::initializer_list<std::pair<const char*, py::object>> kw) {
  serve::Params p;
  for (auto& [name, v] : kw) {
    if (v.is_none()) continue;
    std::string text = py::isinstance<py::bool_>(v) ? (v.cast<bool>() ? "1" : "0") : py::str(v).cast<std::string>();
    p.emplace(name, text);
  }
  return p;
}

template <typename F>
py::object answer(F&& f) {
  Json j;
  {
    py::gil_scoped_release release;
    j = f();
  }
  return json_to_python(j);
}

}  // namespace

void bind_cache(py::module_& m) {
  py::class_<Cache, std::shared_ptr<Cache>>(m, "Cache", "A code cache written by `codebook cache build`.")
      .def(py::init([](const py::object& path) {
             std::string dir = py::str(py::module_::import("os").attr("fspath")(path));
             py::gil_scoped_release release;
             return std::make_shared<Cache>(dir);
           }),
           py::arg("path"))
      .def_property_readonly("num_tokens", [](const Cache& c) { return c.cache().num_tokens(); })
      .def_property_readonly("num_documents", [](const Cache& c) { return c.cache().num_documents(); })
      .def(
          "info", [](Cache& c) { return json_to_python(c.api().info()); },
          "The cache's tokens, documents, tokenizer, sites (with their members and dead codes) and metrics.")
      .def(
          "document",
          [](const Cache& c, int64_t d) {
            CB_CHECK(d >= 0 && d < c.cache().num_documents(),
                     "document " << d << " out of range; the cache has " << c.cache().num_documents() << " documents");
            std::string_view t = c.cache().document_text(d);
            return py::bytes(t.data(), t.size());
          },
          py::arg("doc"), "The bytes of document `doc`'s text.")
      .def(
          "search",
          [](Cache& c, const std::string& regex, const py::object& site, int64_t top, double min_precision,
             const std::string& sort, int64_t topk_slots, const py::object& parity, int64_t limit) {
            serve::Params p = params({{"regex", py::str(regex)},
                                      {"site", site},
                                      {"top", py::int_(top)},
                                      {"min_precision", py::float_(min_precision)},
                                      {"sort", py::str(sort)},
                                      {"topk_slots", py::int_(topk_slots)},
                                      {"parity", parity},
                                      {"limit", py::int_(limit)}});
            return answer([&] { return c.api().search(p); });
          },
          py::arg("regex"), py::kw_only(), py::arg("site") = py::none(), py::arg("top") = 8,
          py::arg("min_precision") = 0.5, py::arg("sort") = "precision", py::arg("topk_slots") = 0,
          py::arg("parity") = py::none(), py::arg("limit") = 200,
          "`codebook search CACHE REGEX`: {matches, total, codes: [{site, group, member, code, precision, recall, "
          "activations}]}.")
      .def(
          "code",
          [](Cache& c, const std::string& site, int64_t code, int64_t topk_slots, int64_t page, int64_t per_page,
             int64_t context, int64_t tokens, int64_t min_acts) {
            serve::Params p = params({{"site", py::str(site)},
                                      {"code", py::int_(code)},
                                      {"topk_slots", py::int_(topk_slots)},
                                      {"page", py::int_(page)},
                                      {"per_page", py::int_(per_page)},
                                      {"context", py::int_(context)},
                                      {"tokens", py::int_(tokens)},
                                      {"min_acts", py::int_(min_acts)}});
            return answer([&] { return c.api().code(p); });
          },
          py::arg("site"), py::arg("code"), py::kw_only(), py::arg("topk_slots") = 1, py::arg("page") = 0,
          py::arg("per_page") = 20, py::arg("context") = 5, py::arg("tokens") = 10, py::arg("min_acts") = 0,
          "`codebook code CACHE SITE CODE`: activations, density, top_tokens, examples (snippets with [[firing]] "
          "tokens), scores histogram, what it writes.")
      .def(
          "topics",
          [](Cache& c, int64_t doc, double recall, int64_t max_chars) {
            serve::Params p =
                params({{"doc", py::int_(doc)}, {"recall", py::float_(recall)}, {"max_chars", py::int_(max_chars)}});
            return answer([&] { return c.api().topics(p); });
          },
          py::arg("doc"), py::kw_only(), py::arg("recall") = 0.2, py::arg("max_chars") = 1024,
          "`codebook topics CACHE --doc N`: {doc, tokens, text, codes: [...]}, the codes firing on at least "
          "`recall` of the document's tokens.")
      .def(
          "similar",
          [](Cache& c, const std::string& site, int64_t code, int64_t n) {
            serve::Params p = params({{"site", py::str(site)}, {"code", py::int_(code)}, {"n", py::int_(n)}});
            return answer([&] { return c.api().similar(p); });
          },
          py::arg("site"), py::arg("code"), py::kw_only(), py::arg("n") = 8,
          "The codes most similar to one (cosine) and its direct logit effect, from the cache's model.");
}

}  // namespace cb::python
