// `codebook cache merge`: joins the shards of one build (`cache build
// --shard I/N`, batch b computed by shard b mod N) into the cache an unsharded
// build writes, byte for byte.
#pragma once
#include <string>
#include <vector>

#include "tools/cache/cache_format.h"

namespace cb::cache {

// Checks that `shards` are all N shards of one build (same model, data and
// options) and writes the merged cache to `out_dir`.
CacheManifest merge_shards(const std::vector<std::string>& shards, const std::string& out_dir, bool overwrite,
                           size_t index_memory = size_t(256) << 20);

}  // namespace cb::cache
