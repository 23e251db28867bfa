// The inverted index of one cache site: from each code of each member to the
// token positions where it fires, built from the site's ids.npy with bounded
// memory (the ids are read in pieces; positions are collected for as many
// codes at a time as fit in `memory_bytes`, one pass over the ids per group
// of codes), so a cache of any size is indexed in the memory of a small one.
#pragma once
#include <cstdint>
#include <string>

#include "tools/cache/cache_format.h"

namespace cb::cache {

struct IndexStats {
  int64_t positions = 0;  // entries written
  int64_t passes = 0;     // passes over ids.npy for the positions
};

// Reads SITE_DIR/ids.npy ([N, G, k]) and writes counts.npy, index_offsets.npy
// and index_positions.npy beside it (each through a temporary name).
IndexStats build_code_index(const std::string& site_dir, const CacheSite& site, int64_t tokens,
                            size_t memory_bytes = size_t(256) << 20);

}  // namespace cb::cache
