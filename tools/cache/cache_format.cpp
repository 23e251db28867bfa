#include "tools/cache/cache_format.h"

#include <limits>

#include "support/error.h"

namespace cb::cache {

std::string CacheSite::member_name(int64_t g) const { return groups > 1 ? name + "[" + std::to_string(g) + "]" : name; }

Json CacheSite::to_json() const {
  Json j = Json::Object{};
  j["name"] = name;
  j["layer"] = layer;
  j["placement"] = placement;
  j["groups"] = groups;
  j["codes"] = codes;
  j["k"] = k;
  j["ids_dtype"] = std::string(dtype_name(ids_dtype));
  j["positions_dtype"] = std::string(dtype_name(positions_dtype));
  j["scores"] = scores;
  return j;
}

static DType stored_dtype(const Json& j, const std::string& key, std::initializer_list<DType> allowed,
                          const std::string& what) {
  std::string s = j.at(key).as_string();
  for (DType d : allowed)
    if (s == dtype_name(d)) return d;
  CB_FAIL(what << ": " << key << " '" << s << "' is not one of the dtypes a cache stores");
}

CacheSite CacheSite::from_json(const Json& j, const std::string& what) {
  CacheSite s;
  try {
    s.name = j.at("name").as_string();
    s.layer = j.at("layer").as_int();
    s.placement = j.at("placement").as_string();
    s.groups = j.at("groups").as_int();
    s.codes = j.at("codes").as_int();
    s.k = j.at("k").as_int();
    s.ids_dtype = stored_dtype(j, "ids_dtype", {DType::u16, DType::u32}, what);
    s.positions_dtype = stored_dtype(j, "positions_dtype", {DType::u32, DType::i64}, what);
    s.scores = j.at("scores").as_bool();
  } catch (const Error& e) {
    CB_FAIL(what << ": site entry: " << e.what());
  }
  CB_CHECK(s.name.find('/') == std::string::npos && s.name.find("..") == std::string::npos && !s.name.empty(),
           what << ": bad site name '" << s.name << "'");
  CB_CHECK(s.groups >= 1 && s.codes >= 1 && s.k >= 1 && s.k <= s.codes,
           what << ": site " << s.name << " has groups " << s.groups << ", codes " << s.codes << ", k " << s.k);
  return s;
}

DType ids_dtype_for(int64_t codes) { return codes < int64_t(kNoCode16) ? DType::u16 : DType::u32; }

DType positions_dtype_for(int64_t tokens) {
  return tokens <= int64_t(std::numeric_limits<uint32_t>::max()) ? DType::u32 : DType::i64;
}

Json CacheManifest::to_json() const {
  Json j = Json::Object{};
  j["format"] = kFormatName;
  j["version"] = kFormatVersion;
  j["tokens"] = tokens;
  j["documents"] = documents;
  j["rows"] = rows;
  j["text_bytes"] = text_bytes;
  j["block"]["mode"] = block_mode;
  j["block"]["size"] = block_size;
  j["tokenizer"] = tokenizer;
  Json::Array s;
  for (auto& site : sites) s.push_back(site.to_json());
  j["sites"] = Json(s);
  j["model"] = model;
  j["source"] = source;
  j["build"] = build;
  j["metrics"] = metrics;
  if (is_shard()) {
    j["shard"]["index"] = shard_index;
    j["shard"]["count"] = shard_count;
  }
  return j;
}

CacheManifest CacheManifest::from_json(const Json& j, const std::string& what) {
  CacheManifest m;
  const Json* f = j.find("format");
  CB_CHECK(f && f->is_string() && f->as_string() == kFormatName,
           what << ": not a code cache manifest (no \"format\": \"" << kFormatName << "\")");
  int64_t version = j.at("version").as_int();
  CB_CHECK(version == kFormatVersion, what << ": cache format version " << version << "; this codebook reads version "
                                           << kFormatVersion << " (rebuild the cache)");
  try {
    m.tokens = j.at("tokens").as_int();
    m.documents = j.at("documents").as_int();
    m.rows = j.at("rows").as_int();
    m.text_bytes = j.at("text_bytes").as_int();
    m.block_mode = j.at("block").at("mode").as_string();
    m.block_size = j.at("block").at("size").as_int();
    m.tokenizer = j.at("tokenizer").as_string();
    for (const Json& s : j.at("sites").as_array()) m.sites.push_back(CacheSite::from_json(s, what));
    m.model = j.at("model");
    m.source = j.at("source");
    m.build = j.at("build");
    m.metrics = j.at("metrics");
    if (const Json* sh = j.find("shard")) {
      m.shard_index = sh->at("index").as_int();
      m.shard_count = sh->at("count").as_int();
    }
  } catch (const Error& e) {
    CB_FAIL(what << ": " << e.what());
  }
  CB_CHECK(m.tokens >= 0 && m.documents >= 0 && m.rows >= 0 && m.text_bytes >= 0, what << ": negative sizes");
  return m;
}

}  // namespace cb::cache
