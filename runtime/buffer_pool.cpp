#include "runtime/buffer_pool.h"

#include <cstdint>

#include "support/error.h"

namespace cb {

std::shared_ptr<Buffer> BufferPool::get(size_t bytes) {
  CB_CHECK(bytes <= SIZE_MAX - 63, "out of memory allocating " << bytes << " bytes");
  size_t rounded = (bytes + 63) / 64 * 64;
  auto& bucket = buckets_[rounded];
  for (auto& b : bucket)
    if (b.use_count() == 1) return b;
  bucket.push_back(allocate_(rounded));
  bytes_held_ += rounded;
  return bucket.back();
}

void BufferPool::release(const std::unordered_set<const Buffer*>& buffers) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    auto& bucket = it->second;
    for (size_t i = 0; i < bucket.size();) {
      if (bucket[i].use_count() == 1 && buffers.count(bucket[i].get())) {
        bytes_held_ -= it->first;
        bucket.erase(bucket.begin() + std::ptrdiff_t(i));
      } else {
        ++i;
      }
    }
    it = bucket.empty() ? buckets_.erase(it) : std::next(it);
  }
}

}  // namespace cb
