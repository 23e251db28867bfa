// The CPU emulation of the CUDA runtime (include/cuda_runtime.h): device
// memory with a registry, copies, sticky errors, and the launch, which runs
// each block's threads as fibers on the calling OS thread (a small x86-64
// context switch: glibc's swapcontext makes a system call per switch, and a
// launch makes millions of switches).
//
// The scheduler runs every ready fiber in turn until it ends or waits at a
// barrier: __syncthreads waits for every live thread of the block, a warp
// barrier (the shuffles, __syncwarp) for every live lane of the warp. When
// all are waiting, it releases the warps whose lanes have all arrived, else
// the block barrier. Lanes of one warp waiting at different barriers are a
// deadlock on the GPU and an error here. Alternate phases run the fibers in
// opposite orders, so that a missing barrier is seen from both sides.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#define CB_EMULATION_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CB_EMULATION_ASAN 1
#endif
#endif
#ifdef CB_EMULATION_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// cb_emulation_switch(save, to): saves the callee-saved registers, the SSE
// and x87 control words and the stack pointer (into *save), and resumes the
// context that `to` points to (System V x86-64).
#if !defined(__x86_64__)
#error "the CUDA emulation's context switch is written for x86-64"
#endif
extern "C" void cb_emulation_switch(void** save, void* to);
asm(R"(
.text
.globl cb_emulation_switch
.type cb_emulation_switch, @function
cb_emulation_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  fldcw (%rsp)
  ldmxcsr 8(%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size cb_emulation_switch, .-cb_emulation_switch
.section .note.GNU-stack,"",@progbits
.text
)");

namespace cb::cuda_emulation {

namespace {

// An H100's limits, which a launch must respect as on the GPU.
constexpr int kMaxThreads = 1024;
constexpr int kDefaultDynamicShared = 48 * 1024;
constexpr int kMaxSharedOptIn = 227 * 1024;
constexpr int kMultiprocessors = 132;
#ifdef CB_EMULATION_ASAN
constexpr size_t kStackBytes = 512 * 1024;  // the sanitizers' frames are larger
#else
constexpr size_t kStackBytes = 128 * 1024;
#endif

std::recursive_mutex g_mutex;               // one emulated device: one caller at a time
std::map<uintptr_t, size_t> g_allocations;  // device memory: start -> bytes
std::map<const void*, int> g_max_dynamic_shared;
cudaError_t g_last_error = cudaSuccess;    // cleared by cudaGetLastError
cudaError_t g_sticky_error = cudaSuccess;  // a failed kernel: every later call fails
std::string g_error_detail;

void set_error(cudaError_t e, const std::string& detail, bool sticky) {
  g_last_error = e;
  if (sticky && g_sticky_error == cudaSuccess) g_sticky_error = e;
  g_error_detail = detail;
}

// ---- fibers ----

enum class State { kReady, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct Fiber {
  void* sp = nullptr;  // the saved stack pointer while switched out
  uint3 index;
  int linear = 0;
  State state = State::kReady;
  char* stack = nullptr;  // from the pool once started, returned when done
  bool started = false;
  void* fake_stack = nullptr;  // the sanitizer's, across switches
};

// Fiber stacks, mapped once and reused by every block and launch.
class StackPool {
 public:
  char* take() {
    if (!free_.empty()) {
      char* s = free_.back();
      free_.pop_back();
#ifdef CB_EMULATION_ASAN
      __asan_unpoison_memory_region(s, kStackBytes);  // a failed fiber's frames were never unwound
#endif
      return s;
    }
    void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "cuda emulation: cannot map a fiber stack\n");
      std::abort();
    }
    return static_cast<char*>(p);
  }
  void give_back(char* s) { free_.push_back(s); }

 private:
  std::vector<char*> free_;
};

struct Block {
  dim3 grid, block;
  uint3 index;
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  Fiber* current = nullptr;
  void* scheduler_sp = nullptr;
  const void* scheduler_stack = nullptr;  // the sanitizer's view of the scheduler's stack
  size_t scheduler_stack_size = 0;
  std::vector<uint64_t> warp_slots;
  std::vector<std::max_align_t> shared;  // dynamic shared memory
  std::string error;
};

thread_local Block* t_block = nullptr;
StackPool g_stacks;

void start_switch([[maybe_unused]] void** fake_stack_save, [[maybe_unused]] const void* bottom,
                  [[maybe_unused]] size_t size) {
#ifdef CB_EMULATION_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#endif
}
void finish_switch([[maybe_unused]] void* fake_stack_save, [[maybe_unused]] const void** bottom_old,
                   [[maybe_unused]] size_t* size_old) {
#ifdef CB_EMULATION_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, size_old);
#endif
}

Block& block() {
  if (!t_block) {
    std::fprintf(stderr, "cuda emulation: a device function was called outside a kernel\n");
    std::abort();
  }
  return *t_block;
}

[[noreturn]] void fiber_main() {
  Block& b = *t_block;
  finish_switch(nullptr, &b.scheduler_stack, &b.scheduler_stack_size);
  (*b.body)();
  b.current->state = State::kDone;
  start_switch(nullptr, b.scheduler_stack, b.scheduler_stack_size);  // this fiber ends: no fake stack to keep
  void* unused;
  cb_emulation_switch(&unused, b.scheduler_sp);
  __builtin_unreachable();
}

// A fresh stack whose first switch "returns" into fiber_main, as if called:
// the saved registers (zero), the control words, then fiber_main's address.
void* initial_stack(char* stack) {
  auto* top = reinterpret_cast<uint64_t*>(stack + kStackBytes);  // 16-byte aligned
  uint64_t* sp = top - 10;
  sp[0] = 0x037f;                         // x87 control word: round to nearest, all exceptions masked
  sp[1] = 0x1f80;                         // MXCSR: the same for SSE
  for (int r = 2; r < 8; ++r) sp[r] = 0;  // r15 ... rbp
  sp[8] = reinterpret_cast<uint64_t>(&fiber_main);
  sp[9] = 0;  // fiber_main's return address: it never returns
  return sp;
}

// From a fiber: back to the scheduler until it resumes this fiber.
void wait(State state) {
  Block& b = block();
  Fiber* f = b.current;
  f->state = state;
  start_switch(&f->fake_stack, b.scheduler_stack, b.scheduler_stack_size);
  cb_emulation_switch(&f->sp, b.scheduler_sp);
  finish_switch(f->fake_stack, &b.scheduler_stack, &b.scheduler_stack_size);
}

void resume(Block& b, Fiber& f) {
  b.current = &f;
  if (!f.started) {
    f.started = true;
    f.stack = g_stacks.take();
    f.sp = initial_stack(f.stack);
  }
  f.state = State::kReady;
  void* fake_stack = nullptr;
  start_switch(&fake_stack, f.stack, kStackBytes);
  cb_emulation_switch(&b.scheduler_sp, f.sp);
  finish_switch(fake_stack, nullptr, nullptr);
  if (f.state == State::kDone && f.stack) {
    g_stacks.give_back(f.stack);
    f.stack = nullptr;
  }
}

// Runs one block to its end; false (with b.error) where it cannot finish.
bool run_block(Block& b) {
  const int threads = int(b.block.x * b.block.y * b.block.z), warps = (threads + 31) / 32;
  b.fibers.assign(size_t(threads), Fiber{});
  for (int t = 0; t < threads; ++t) {
    Fiber& f = b.fibers[size_t(t)];
    f.linear = t;
    f.index = {unsigned(t) % b.block.x, unsigned(t) / b.block.x % b.block.y, unsigned(t) / (b.block.x * b.block.y)};
  }
  b.warp_slots.assign(size_t(warps) * 32, 0);
  for (int phase = 0;; ++phase) {
    for (int k = 0; k < threads; ++k) {
      Fiber& f = b.fibers[size_t(phase % 2 ? threads - 1 - k : k)];
      if (f.state == State::kReady) resume(b, f);
      if (!b.error.empty()) return false;
    }
    bool released = false, waiting = false;
    for (int w = 0; w < warps; ++w) {
      int live = 0, at_warp = 0;
      for (int t = w * 32; t < std::min(threads, w * 32 + 32); ++t) {
        const State s = b.fibers[size_t(t)].state;
        live += s != State::kDone;
        at_warp += s == State::kAtWarpBarrier;
      }
      if (at_warp == 0) continue;
      if (at_warp != live) {
        b.error = "warp " + std::to_string(w) + ": some lanes wait at a warp shuffle or __syncwarp, others at " +
                  "__syncthreads (a deadlock on the GPU)";
        return false;
      }
      for (int t = w * 32; t < std::min(threads, w * 32 + 32); ++t)
        if (b.fibers[size_t(t)].state == State::kAtWarpBarrier) b.fibers[size_t(t)].state = State::kReady;
      released = true;
    }
    if (released) continue;
    for (Fiber& f : b.fibers)
      if (f.state == State::kAtBlockBarrier) {
        f.state = State::kReady;
        waiting = true;
      }
    if (!waiting) return true;  // every thread has ended
  }
}

}  // namespace

const uint3& thread_idx() { return block().current->index; }
const uint3& block_idx() { return block().index; }
const dim3& block_dim() { return block().block; }
const dim3& grid_dim() { return block().grid; }
void* dynamic_shared_memory() { return block().shared.data(); }
int lane_id() { return block().current->linear % 32; }
void sync_threads() { wait(State::kAtBlockBarrier); }
void sync_warp() { wait(State::kAtWarpBarrier); }
uint64_t& warp_slot() { return block().warp_slots[size_t(block().current->linear)]; }

uint64_t warp_slot_of(int lane) {
  Block& b = block();
  const int t = b.current->linear / 32 * 32 + lane;
  if (lane < 0 || lane >= 32 || t >= int(b.fibers.size())) {
    fail("a warp shuffle reads a lane that the block does not have");
    return 0;
  }
  return b.warp_slots[size_t(t)];
}

void fail(const char* what) {
  Block& b = block();
  if (b.error.empty()) b.error = what;
  wait(State::kDone);  // never resumed: the launch ends with the error
}

bool is_device_memory(const void* p, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = g_allocations.upper_bound(a);
  if (it == g_allocations.begin()) return false;
  --it;
  return a + bytes <= it->first + std::max<size_t>(it->second, 1);
}

cudaError_t set_max_dynamic_shared(const void* kernel, int bytes) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (bytes < 0 || bytes > kMaxSharedOptIn) return g_last_error = cudaErrorInvalidValue;
  g_max_dynamic_shared[kernel] = bytes;
  return cudaSuccess;
}

void launch(const void* kernel, dim3 grid, dim3 block_dims, size_t shared, const std::function<void()>& body,
            const char* bad_argument) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (g_sticky_error != cudaSuccess) return;
  const long long threads = (long long)block_dims.x * block_dims.y * block_dims.z;
  if (threads < 1 || threads > kMaxThreads || block_dims.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
      grid.y > 65535 || grid.z > 65535)
    return set_error(cudaErrorInvalidConfiguration, "invalid configuration argument", false);
  auto granted = g_max_dynamic_shared.find(kernel);
  const size_t limit = size_t(granted == g_max_dynamic_shared.end() ? kDefaultDynamicShared : granted->second);
  if (shared > limit)
    return set_error(cudaErrorLaunchOutOfResources,
                     "too many resources requested for launch: " + std::to_string(shared) +
                         " bytes of dynamic shared memory, over the kernel's " + std::to_string(limit),
                     false);
  if (bad_argument)
    return set_error(cudaErrorIllegalAddress, std::string("an illegal memory access: ") + bad_argument, true);
  Block b;
  b.grid = grid;
  b.block = block_dims;
  b.body = &body;
  // Fresh shared memory per launch, at its exact size, so that an access past
  // it meets the sanitizers.
  b.shared.resize((shared + sizeof(std::max_align_t) - 1) / sizeof(std::max_align_t));
  Block* outer = t_block;
  t_block = &b;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        b.index = {x, y, z};
        if (!run_block(b)) {
          for (Fiber& f : b.fibers)
            if (f.stack) g_stacks.give_back(f.stack);
          t_block = outer;
          return set_error(cudaErrorLaunchFailure,
                           "unspecified launch failure (emulation: block (" + std::to_string(x) + ", " +
                               std::to_string(y) + ", " + std::to_string(z) + "): " + b.error + ")",
                           true);
        }
      }
  t_block = outer;
}

}  // namespace cb::cuda_emulation

using namespace cb::cuda_emulation;

namespace {

cudaError_t result(cudaError_t e) {
  if (g_sticky_error != cudaSuccess) return g_sticky_error;
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

bool registered_start(void* p) { return g_allocations.count(reinterpret_cast<uintptr_t>(p)) > 0; }

// The memory a copy of `kind` reads or writes must be on the side it names.
bool sides_match(const void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (kind == cudaMemcpyDefault) return true;
  const bool dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  return is_device_memory(dst, bytes) == dst_device && is_device_memory(src, bytes) == src_device;
}

}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return result(device == 0 ? cudaSuccess : cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return result(cudaSuccess);
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return result(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = kMaxThreads; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = kDefaultDynamicShared; break;
    case cudaDevAttrMultiProcessorCount: *value = kMultiprocessors; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = kMaxSharedOptIn; break;
    default: return result(cudaErrorInvalidValue);
  }
  return result(cudaSuccess);
}

cudaError_t cudaDeviceSynchronize() { return result(cudaSuccess); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  static int streams = 0;
  *stream = reinterpret_cast<cudaStream_t>(uintptr_t(++streams));
  return result(cudaSuccess);
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return result(cudaSuccess); }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return result(cudaSuccess); }

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  *ptr = nullptr;
  if (g_sticky_error != cudaSuccess) return g_sticky_error;
  void* p = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  if (!p) return result(cudaErrorMemoryAllocation);
  g_allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void** ptr, size_t bytes, cudaStream_t) { return cudaMalloc(ptr, bytes); }

cudaError_t cudaFree(void* ptr) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (!ptr) return cudaSuccess;
  if (!registered_start(ptr)) return result(cudaErrorInvalidValue);
  g_allocations.erase(reinterpret_cast<uintptr_t>(ptr));
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaFreeAsync(void* ptr, cudaStream_t) { return cudaFree(ptr); }

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (g_sticky_error != cudaSuccess) return g_sticky_error;
  if (!bytes) return cudaSuccess;
  if (!sides_match(dst, src, bytes, kind)) return result(cudaErrorInvalidValue);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                              cudaMemcpyKind kind, cudaStream_t stream) {
  if (width > dpitch || width > spitch) return result(cudaErrorInvalidValue);
  for (size_t r = 0; r < height; ++r) {
    cudaError_t e = cudaMemcpyAsync(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                                    width, kind, stream);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t) {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  if (g_sticky_error != cudaSuccess) return g_sticky_error;
  if (!bytes) return cudaSuccess;
  if (!is_device_memory(ptr, bytes)) return result(cudaErrorInvalidValue);
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaGetLastError() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  const cudaError_t e = g_sticky_error != cudaSuccess ? g_sticky_error : g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() {
  std::lock_guard<std::recursive_mutex> lock(g_mutex);
  return g_sticky_error != cudaSuccess ? g_sticky_error : g_last_error;
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return g_error_detail.c_str();  // the launch's own words
  }
}
