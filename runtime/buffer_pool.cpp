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
  bucket.push_back(buffer_allocate(rounded));
  bytes_held_ += rounded;
  return bucket.back();
}

}  // namespace cb
