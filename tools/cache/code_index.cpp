#include "tools/cache/code_index.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "support/error.h"
#include "tools/cache/npy_file.h"

namespace fs = std::filesystem;

namespace cb::cache {

namespace {

// Calls fn(pos, g, code) for every filled slot of ids.npy, reading it in
// pieces of about 4 MiB.
template <typename Id, typename Fn>
void scan_ids(const std::string& path, size_t data_offset, const CacheSite& site, int64_t tokens, Fn&& fn) {
  FILE* f = std::fopen(path.c_str(), "rb");
  CB_CHECK(f, "cannot open '" << path << "'");
  std::fseek(f, long(data_offset), SEEK_SET);
  int64_t per_token = site.groups * site.k;
  int64_t chunk = std::max<int64_t>(1, (int64_t(4) << 20) / int64_t(sizeof(Id) * size_t(per_token)));
  std::vector<Id> buf(size_t(chunk * per_token));
  const Id none = Id(~Id(0));
  for (int64_t p0 = 0; p0 < tokens; p0 += chunk) {
    int64_t n = std::min(chunk, tokens - p0);
    size_t want = size_t(n * per_token);
    if (std::fread(buf.data(), sizeof(Id), want, f) != want) {
      std::fclose(f);
      CB_FAIL(path << ": truncated while indexing");
    }
    for (int64_t t = 0; t < n; ++t)
      for (int64_t g = 0; g < site.groups; ++g)
        for (int64_t s = 0; s < site.k; ++s) {
          Id c = buf[size_t((t * site.groups + g) * site.k + s)];
          if (c != none) fn(p0 + t, g, int64_t(c));
        }
  }
  std::fclose(f);
}

template <typename Id>
IndexStats build(const std::string& dir, const CacheSite& site, int64_t tokens, size_t memory_bytes) {
  std::string ids_path = (fs::path(dir) / "ids.npy").string();
  MappedNpy ids = MappedNpy::open(ids_path);  // header and size checks only; read with stdio below
  ids.expect({site.ids_dtype}, {tokens, site.groups, site.k});
  size_t data_offset = ids.data_offset();
  int64_t G = site.groups, K = site.codes;
  std::vector<int64_t> counts(size_t(G * K), 0);
  scan_ids<Id>(ids_path, data_offset, site, tokens, [&](int64_t, int64_t g, int64_t c) {
    CB_CHECK(c < K, ids_path << ": code " << c << " out of range (the site has " << K << " codes)");
    ++counts[size_t(g * K + c)];
  });
  std::vector<int64_t> offsets(size_t(G * K) + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) offsets[i + 1] = offsets[i] + counts[i];
  int64_t total = offsets.back();

  npy_write((fs::path(dir) / "counts.npy").string(), Tensor::from_vector(counts, {G, K}));
  npy_write((fs::path(dir) / "index_offsets.npy").string(), Tensor::from_vector(offsets, {G * K + 1}));

  // Positions, for as many consecutive codes (g * K + c order) at a time as
  // fit in the buffer; a code with more positions than that has a pass alone.
  bool wide = site.positions_dtype == DType::i64;
  size_t width = wide ? 8 : 4;
  int64_t capacity = std::max<int64_t>(1, int64_t(memory_bytes / width));
  std::string pos_path = (fs::path(dir) / "index_positions.npy").string();
  NpyAppender out(pos_path + ".tmp", site.positions_dtype, {});
  IndexStats stats;
  stats.positions = total;
  // Reserved once: growing it between groups would hold the old and new buffers at once.
  std::vector<char> buf;
  buf.reserve(size_t(std::min(total, capacity)) * width);
  for (int64_t lo = 0; lo < G * K;) {
    int64_t hi = lo + 1;
    while (hi < G * K && offsets[size_t(hi + 1)] - offsets[size_t(lo)] <= capacity) ++hi;
    int64_t n = offsets[size_t(hi)] - offsets[size_t(lo)];
    if (n > 0) {
      ++stats.passes;
      bool alone = n > capacity;  // one code: its positions come in order, stream them
      std::vector<int64_t> cursor(offsets.begin() + lo, offsets.begin() + hi);
      buf.assign(size_t(std::min(n, capacity)) * width, 0);
      int64_t filled = 0;
      scan_ids<Id>(ids_path, data_offset, site, tokens, [&](int64_t pos, int64_t g, int64_t c) {
        int64_t lin = g * K + c;
        if (lin < lo || lin >= hi) return;
        int64_t at = alone ? filled++ : cursor[size_t(lin - lo)]++ - offsets[size_t(lo)];
        if (wide)
          reinterpret_cast<int64_t*>(buf.data())[at] = pos;
        else
          reinterpret_cast<uint32_t*>(buf.data())[at] = uint32_t(pos);
        if (alone && filled == capacity) {
          out.append(buf.data(), filled);
          filled = 0;
        }
      });
      out.append(buf.data(), alone ? filled : n);
    }
    lo = hi;
  }
  out.finish();
  fs::rename(pos_path + ".tmp", pos_path);
  return stats;
}

}  // namespace

IndexStats build_code_index(const std::string& site_dir, const CacheSite& site, int64_t tokens, size_t memory_bytes) {
  return site.ids_dtype == DType::u32 ? build<uint32_t>(site_dir, site, tokens, memory_bytes)
                                      : build<uint16_t>(site_dir, site, tokens, memory_bytes);
}

}  // namespace cb::cache
