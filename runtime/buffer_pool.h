// Reuses output buffers across nodes and across runs. Fresh memory costs about
// 3 ms per MiB on first touch here, so a model run should allocate nothing new
// after its first (warm-up) call. A pooled buffer is free when the pool holds
// the only reference to it: tensors handed to the caller keep theirs alive.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <unordered_set>
#include <vector>

#include "ir/tensor.h"

namespace cb {

class BufferPool {
 public:
  using Allocate = std::function<std::shared_ptr<Buffer>(size_t)>;
  // `allocate` makes new buffers: host memory unless a device's allocator is given.
  explicit BufferPool(Allocate allocate = buffer_allocate) : allocate_(std::move(allocate)) {}
  std::shared_ptr<Buffer> get(size_t bytes);
  size_t bytes_held() const { return bytes_held_; }
  // Drops these buffers (the ones the memory planner moved into its arena)
  // where the pool holds the only reference.
  void release(const std::unordered_set<const Buffer*>& buffers);
  void clear() {
    buckets_.clear();
    bytes_held_ = 0;
  }

 private:
  Allocate allocate_;
  std::map<size_t, std::vector<std::shared_ptr<Buffer>>> buckets_;
  size_t bytes_held_ = 0;
};

}  // namespace cb
