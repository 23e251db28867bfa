// Fast CPU kernels of Transpose, Slice, Split and Concat (see
// layout_kernels.h). Each op is one or more planned strided copies:
//   Transpose  the output is contiguous, the source read with permuted
//              strides: blocks that stay contiguous become memcpy runs
//              (e.g. perm [0,2,1,3] moves rows of the last dim), swapped
//              axes become tiled 2-D transposes;
//   Slice      the output is contiguous, the source read from the start
//              offset with stride * step per axis (as the reference kernel);
//   Split      per output, rows of the input copied out (parts of up to
//              4 KiB a row: each input row's parts together, copy_row_parts);
//   Concat     per input, rows copied into the output (likewise).
// They only move bytes, so the results equal the reference kernels' bit for
// bit; elements of other sizes than 1, 2, 4 or 8 bytes, and tensors of rank
// above StridedCopy::kMaxRank, go to the reference kernels.
#include "backends/cpu/layout_kernels.h"

#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CB_LAYOUT_X86 1
#endif

#include "backends/cpu/fallback_kernel.h"
#include "backends/cpu/vec_math.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"
#include "support/cpu_features.h"
#include "support/error.h"

namespace cb {

namespace {

constexpr int64_t kPieceBytes = 64 * 1024;  // long runs are cut into pieces of this size (one unit each)
constexpr int64_t kTileBlockRows = 32;      // tile rows per unit of a 2-D transpose
constexpr int64_t kScalarTile = 16;         // edge of the portable transpose tiles

// Calls fn(U{}) with the unsigned integer U of `esize` bytes: elements are
// moved by value, never computed with.
template <typename Fn>
void esize_dispatch(size_t esize, Fn&& fn) {
  switch (esize) {
    case 1: return fn(uint8_t{});
    case 2: return fn(uint16_t{});
    case 4: return fn(uint32_t{});
    default: return fn(uint64_t{});
  }
}

// dst[r * dst_row + c] = src[r + c * src_col] for rows [r0, r1), columns
// [c_begin, c_end), in square tiles so that both sides stay in cache.
template <typename E>
void tile_portable(const E* src, E* dst, int64_t r0, int64_t r1, int64_t c_begin, int64_t c_end, int64_t src_col,
                   int64_t dst_row) {
  for (int64_t c0 = c_begin; c0 < c_end; c0 += kScalarTile) {
    const int64_t c1 = std::min(c0 + kScalarTile, c_end);
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = c0; c < c1; ++c) dst[r * dst_row + c] = src[r + c * src_col];
  }
}

// count runs of `bytes` bytes, the i-th from src + i * src_step to
// dst + i * dst_step; short runs of common sizes are copied with fixed-size
// moves instead of memcpy calls.
template <int64_t kBytes>
void copy_fixed_runs(const uint8_t* src, uint8_t* dst, int64_t count, int64_t src_step, int64_t dst_step) {
  for (int64_t i = 0; i < count; ++i) std::memcpy(dst + i * dst_step, src + i * src_step, kBytes);
}

void copy_runs(const uint8_t* src, uint8_t* dst, int64_t count, int64_t src_step, int64_t dst_step, int64_t bytes) {
  switch (bytes) {
    case 4: return copy_fixed_runs<4>(src, dst, count, src_step, dst_step);
    case 8: return copy_fixed_runs<8>(src, dst, count, src_step, dst_step);
    case 16: return copy_fixed_runs<16>(src, dst, count, src_step, dst_step);
    case 32: return copy_fixed_runs<32>(src, dst, count, src_step, dst_step);
    case 64: return copy_fixed_runs<64>(src, dst, count, src_step, dst_step);
    case 128: return copy_fixed_runs<128>(src, dst, count, src_step, dst_step);
    default:
      for (int64_t i = 0; i < count; ++i) std::memcpy(dst + i * dst_step, src + i * src_step, size_t(bytes));
  }
}

#ifdef CB_LAYOUT_X86
// The same for 4-byte elements: 8x8 tiles transposed in AVX2 registers
// (simd::transpose8x8; the bits are shuffled as floats, never computed
// with), edges portable.
__attribute__((target("avx2"))) void tile_avx2_4byte(const uint32_t* src_u, uint32_t* dst_u, int64_t r0, int64_t r1,
                                                     int64_t cols, int64_t src_col, int64_t dst_row) {
  const float* src = reinterpret_cast<const float*>(src_u);
  float* dst = reinterpret_cast<float*>(dst_u);
  const int64_t c8 = cols / 8 * 8, r8 = r0 + (r1 - r0) / 8 * 8;
  for (int64_t c0 = 0; c0 < c8; c0 += 8)
    for (int64_t r = r0; r < r8; r += 8)
      simd::transpose8x8(src + r + c0 * src_col, src_col, dst + r * dst_row + c0, dst_row);
  if (r8 < r1) tile_portable(src_u, dst_u, r8, r1, 0, c8, src_col, dst_row);
  if (c8 < cols) tile_portable(src_u, dst_u, r0, r1, c8, cols, src_col, dst_row);
}

#endif

}  // namespace

// ---------------------------------------------------------------------------
// StridedCopy

StridedCopy::StridedCopy(const std::vector<int64_t>& dims_in, const std::vector<int64_t>& src_in,
                         const std::vector<int64_t>& dst_in, size_t esize)
    : esize_(esize) {
  CB_CHECK(dims_in.size() == src_in.size() && dims_in.size() == dst_in.size(),
           "strided copy: " << dims_in.size() << " dims with " << src_in.size() << " source and " << dst_in.size()
                            << " destination strides");
  CB_CHECK(esize == 1 || esize == 2 || esize == 4 || esize == 8,
           "strided copy: elements of " << esize << " bytes (expected 1, 2, 4 or 8)");
  // Drop dims of 1, merge a dim into the one before when both operands step
  // over it contiguously.
  std::vector<int64_t> dims, s, d;
  for (size_t k = 0; k < dims_in.size(); ++k) {
    if (dims_in[k] == 0) return;  // empty
    if (dims_in[k] == 1) continue;
    if (!dims.empty() && s.back() == src_in[k] * dims_in[k] && d.back() == dst_in[k] * dims_in[k]) {
      dims.back() *= dims_in[k];
      s.back() = src_in[k];
      d.back() = dst_in[k];
    } else {
      dims.push_back(dims_in[k]);
      s.push_back(src_in[k]);
      d.push_back(dst_in[k]);
    }
  }
  CB_CHECK(dims.size() <= kMaxRank, "strided copy: " << dims.size() << " dims exceed the limit of " << kMaxRank);
  int64_t total = 1;
  for (int64_t n : dims) total *= n;
  bytes_ = size_t(total) * esize;
  const int64_t e = int64_t(esize);

  if (dims.empty() || (s.back() == 1 && d.back() == 1)) {
    kind_ = Kind::runs;
    run_bytes_ = dims.empty() ? e : dims.back() * e;
    if (!dims.empty()) {
      dims.pop_back();
      s.pop_back();
      d.pop_back();
    }
    piece_bytes_ = run_bytes_ <= kPieceBytes ? run_bytes_ : kPieceBytes / e * e;
    units_per_outer_ = (run_bytes_ + piece_bytes_ - 1) / piece_bytes_;
  } else {
    // A transpose: the destination contiguous along dim a, the source along b.
    int64_t a = -1, b = -1;
    for (int64_t k = int64_t(dims.size()) - 1; k >= 0; --k) {
      if (a < 0 && d[size_t(k)] == 1) a = k;
      if (b < 0 && s[size_t(k)] == 1) b = k;
    }
    if (a >= 0 && b >= 0 && a != b && dims[size_t(a)] >= 4 && dims[size_t(b)] >= 4) {
      kind_ = Kind::tiles;
      rows_ = dims[size_t(b)];
      cols_ = dims[size_t(a)];
      dst_row_ = d[size_t(b)];
      src_col_ = s[size_t(a)];
      for (int64_t k : {std::max(a, b), std::min(a, b)}) {
        dims.erase(dims.begin() + k);
        s.erase(s.begin() + k);
        d.erase(d.begin() + k);
      }
      units_per_outer_ = (rows_ + kTileBlockRows - 1) / kTileBlockRows;
    } else {
      kind_ = Kind::elements;
      count_ = dims.back();
      src_inner_ = s.back() * e;
      dst_inner_ = d.back() * e;
      dims.pop_back();
      s.pop_back();
      d.pop_back();
    }
  }
  dims_ = dims;
  for (int64_t& v : s) v *= e;
  for (int64_t& v : d) v *= e;
  src_step_ = s;
  dst_step_ = d;
  outer_ = 1;
  for (int64_t n : dims_) outer_ *= n;
}

void StridedCopy::run_outer(const uint8_t* src, uint8_t* dst, int64_t part) const {
  switch (kind_) {
    case Kind::runs: {
      const int64_t off = part * piece_bytes_;
      std::memcpy(dst + off, src + off, size_t(std::min(piece_bytes_, run_bytes_ - off)));
      return;
    }
    case Kind::tiles: {
      const int64_t r0 = part * kTileBlockRows, r1 = std::min(rows_, r0 + kTileBlockRows);
#ifdef CB_LAYOUT_X86
      if (esize_ == 4 && cpu_has_avx2()) {
        tile_avx2_4byte(reinterpret_cast<const uint32_t*>(src), reinterpret_cast<uint32_t*>(dst), r0, r1, cols_,
                        src_col_, dst_row_);
        return;
      }
#endif
      esize_dispatch(esize_, [&](auto tag) {
        using E = decltype(tag);
        tile_portable(reinterpret_cast<const E*>(src), reinterpret_cast<E*>(dst), r0, r1, 0, cols_, src_col_, dst_row_);
      });
      return;
    }
    case Kind::elements:
      esize_dispatch(esize_, [&](auto tag) {
        using E = decltype(tag);
        const int64_t si = src_inner_ / int64_t(sizeof(E)), di = dst_inner_ / int64_t(sizeof(E));
        const E* s = reinterpret_cast<const E*>(src);
        E* d = reinterpret_cast<E*>(dst);
        for (int64_t i = 0; i < count_; ++i) d[i * di] = s[i * si];
      });
      return;
    case Kind::empty: return;
  }
}

void StridedCopy::run_units(const uint8_t* src, uint8_t* dst, int64_t begin, int64_t end) const {
  if (kind_ == Kind::empty || begin >= end) return;
  const size_t rank = dims_.size();
  int64_t idx[kMaxRank];
  int64_t o = begin / units_per_outer_, part = begin % units_per_outer_;
  for (size_t k = rank; k-- > 0;) {
    idx[k] = o % dims_[k];
    o /= dims_[k];
    src += idx[k] * src_step_[k];
    dst += idx[k] * dst_step_[k];
  }
  // Odometer step over the outer dims 0..top-1 (the last one fastest),
  // moving both pointers along.
  auto next_index = [&](size_t top) {
    for (size_t k = top; k-- > 0;) {
      if (++idx[k] < dims_[k]) {
        src += src_step_[k];
        dst += dst_step_[k];
        return;
      }
      src -= src_step_[k] * (dims_[k] - 1);
      dst -= dst_step_[k] * (dims_[k] - 1);
      idx[k] = 0;
    }
  };
  if (kind_ == Kind::runs && units_per_outer_ == 1 && rank > 0) {
    // Whole runs: a tight loop along the innermost outer dim.
    const size_t last = rank - 1;
    const int64_t n = dims_[last], ss = src_step_[last], ds = dst_step_[last];
    for (int64_t u = begin; u < end;) {
      const int64_t count = std::min(end - u, n - idx[last]);
      copy_runs(src, dst, count, ss, ds, run_bytes_);
      u += count;
      idx[last] += count;
      src += count * ss;
      dst += count * ds;
      if (idx[last] < n) break;  // u == end
      src -= n * ss;
      dst -= n * ds;
      idx[last] = 0;
      next_index(last);
    }
    return;
  }
  for (int64_t u = begin; u < end; ++u) {
    run_outer(src, dst, part);
    if (++part < units_per_outer_) continue;
    part = 0;
    next_index(rank);
  }
}

void StridedCopy::run(const uint8_t* src, uint8_t* dst, int threads) const {
  parallel_chunks(units(), bytes_, kParallelCopyBytes, threads,
                  [&](int64_t begin, int64_t end) { run_units(src, dst, begin, end); });
}

// ---------------------------------------------------------------------------
// The kernels

namespace {

// Several copies (the parts of a Split or Concat) in one parallel region:
// their units are numbered one after the other.
struct CopyJob {
  StridedCopy copy;
  const uint8_t* src;
  uint8_t* dst;
};

void run_jobs(const std::vector<CopyJob>& jobs, int threads) {
  std::vector<int64_t> first(jobs.size() + 1, 0);
  size_t bytes = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    first[j + 1] = first[j] + jobs[j].copy.units();
    bytes += jobs[j].copy.bytes();
  }
  parallel_chunks(first.back(), bytes, kParallelCopyBytes, threads, [&](int64_t begin, int64_t end) {
    size_t j = size_t(std::upper_bound(first.begin(), first.end(), begin) - first.begin()) - 1;
    for (; begin < end; ++j) {
      const int64_t stop = std::min(end, first[j + 1]);
      jobs[j].copy.run_units(jobs[j].src, jobs[j].dst, begin - first[j], stop - first[j]);
      begin = stop;
    }
  });
}

// The parts of each row of a Split's input (or a Concat's output) moved
// together, row after row: the row is read (written) once and in order.
// Copied part by part instead, each part's pass read every row's cache lines
// again for a few of their bytes (a TokFSM step's QKV Split of 128-byte parts
// took 1.4-7 ms per 12 MiB). For parts of up to kRowPartBytes per row.
constexpr size_t kRowPartBytes = 4096;

struct RowPart {
  uint8_t* data;  // the part's own tensor: row o at o * bytes
  size_t bytes;   // per row
  size_t at;      // its offset within a row of `rows`
};

void copy_row_parts(uint8_t* rows, size_t row_bytes, int64_t outer, const std::vector<RowPart>& parts, bool out_of_rows,
                    int threads) {
  parallel_chunks(outer, size_t(outer) * row_bytes, kParallelCopyBytes, threads, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      uint8_t* row = rows + size_t(o) * row_bytes;
      for (const RowPart& p : parts) {
        uint8_t* own = p.data + size_t(o) * p.bytes;
        if (out_of_rows)
          std::memcpy(own, row + p.at, p.bytes);
        else
          std::memcpy(row + p.at, own, p.bytes);
      }
    }
  });
}

enum class LayoutOp { transpose, slice, split, concat };

class LayoutKernel : public FallbackKernel {
 public:
  LayoutKernel(const Node& node, LayoutOp op) : FallbackKernel(node), op_(op) {}

  void run(KernelContext& ctx) override {
    const Tensor& in = ctx.in(0);
    const size_t esize = dtype_size(in.dtype());
    const bool plain = esize == 1 || esize == 2 || esize == 4 || esize == 8;
    size_t rank = in.rank();
    for (Tensor* t : ctx.outputs)
      if (t) rank = std::max(rank, t->rank());
    if (!plain || rank > StridedCopy::kMaxRank) return fall_back(ctx);
    const int threads = std::max(1, ctx.num_threads);
    switch (op_) {
      case LayoutOp::transpose: return transpose(ctx, esize, threads);
      case LayoutOp::slice: return slice(ctx, esize, threads);
      case LayoutOp::split: return split(ctx, esize, threads);
      case LayoutOp::concat: return concat(ctx, esize, threads);
    }
  }

 private:
  LayoutOp op_;

  static uint8_t* bytes(const Tensor& t) { return static_cast<uint8_t*>(t.raw()); }

  static int64_t dims_product(const std::vector<int64_t>& dims, size_t begin, size_t end) {
    int64_t p = 1;
    for (size_t i = begin; i < end; ++i) p *= dims[i];
    return p;
  }

  static void transpose(KernelContext& ctx, size_t esize, int threads) {
    const Tensor& in = ctx.in(0);
    Tensor& out = ctx.out(0);
    const size_t r = in.rank();
    std::vector<int64_t> perm = ctx.node.attr_ints("perm");
    if (perm.empty())
      for (size_t i = 0; i < r; ++i) perm.push_back(int64_t(r - 1 - i));
    CB_CHECK(perm.size() == r, ctx.node.describe()
                                   << ": perm of " << perm.size() << " axes for input " << dims_str(in.dims()));
    const std::vector<int64_t> in_strides = contiguous_strides(in.dims());
    std::vector<int64_t> strides(r);
    for (size_t i = 0; i < r; ++i) strides[i] = in_strides[size_t(perm[i])];
    StridedCopy(out.dims(), strides, contiguous_strides(out.dims()), esize).run(bytes(in), bytes(out), threads);
  }

  // Start offset and stride * step per axis after ONNX's clamping, exactly
  // as the reference Slice kernel computes them.
  static void slice(KernelContext& ctx, size_t esize, int threads) {
    const Tensor& in = ctx.in(0);
    Tensor& out = ctx.out(0);
    if (out.numel() == 0) return;
    const int64_t r = int64_t(in.rank());
    const std::vector<int64_t> starts = ctx.in(1).to_int_vector(), ends = ctx.in(2).to_int_vector();
    const size_t n = starts.size();
    std::vector<int64_t> axes, steps(n, 1);
    if (ctx.inputs.size() > 3 && ctx.inputs[3])
      axes = ctx.inputs[3]->to_int_vector();
    else
      for (size_t i = 0; i < n; ++i) axes.push_back(int64_t(i));
    if (ctx.inputs.size() > 4 && ctx.inputs[4]) steps = ctx.inputs[4]->to_int_vector();
    CB_CHECK(axes.size() == n && steps.size() == n, ctx.node.describe() << ": starts, axes and steps differ in length");
    const std::vector<int64_t> in_strides = contiguous_strides(in.dims());
    std::vector<int64_t> strides = in_strides;
    int64_t base = 0;
    for (size_t i = 0; i < n; ++i) {
      const int64_t a = norm_axis(axes[i], r), d = in.dim(size_t(a)), step = steps[i];
      int64_t st = starts[i];
      if (st < 0) st += d;
      st = step > 0 ? std::min(std::max<int64_t>(st, 0), d) : std::min(std::max<int64_t>(st, 0), d - 1);
      base += st * in_strides[size_t(a)];
      strides[size_t(a)] = out.dim(size_t(a)) > 1 ? in_strides[size_t(a)] * step : 0;
    }
    StridedCopy(out.dims(), strides, contiguous_strides(out.dims()), esize)
        .run(bytes(in) + size_t(base) * esize, bytes(out), threads);
  }

  // The sizes of the parts along the axis (as the schema inferred them).
  static std::vector<int64_t> split_sizes(const KernelContext& ctx, int64_t dim) {
    const int64_t n = int64_t(ctx.node.outputs.size());
    if (ctx.inputs.size() > 1 && ctx.inputs[1]) return ctx.inputs[1]->to_int_vector();
    const int64_t chunk = dim % n == 0 ? dim / n : dim / n + 1;
    std::vector<int64_t> sizes(size_t(n), chunk);
    sizes.back() = dim - chunk * (n - 1);
    return sizes;
  }

  static void split(KernelContext& ctx, size_t esize, int threads) {
    const Tensor& in = ctx.in(0);
    const size_t axis = size_t(norm_axis(ctx.node.attr_int("axis", 0), int64_t(in.rank())));
    const std::vector<int64_t> sizes = split_sizes(ctx, in.dim(axis));
    const int64_t outer = dims_product(in.dims(), 0, axis);
    const int64_t inner = dims_product(in.dims(), axis + 1, in.rank());
    const int64_t row = in.dim(axis) * inner;  // input elements per outer index
    int64_t offset = 0;                        // of part p within a row
    std::vector<CopyJob> jobs;
    std::vector<RowPart> parts;
    size_t widest = 0;
    for (size_t p = 0; p < sizes.size(); ++p) {
      const int64_t part = sizes[p] * inner;
      if (p < ctx.outputs.size() && ctx.outputs[p] && part > 0 && outer > 0) {
        jobs.push_back({StridedCopy({outer, part}, {row, 1}, {part, 1}, esize), bytes(in) + size_t(offset) * esize,
                        bytes(*ctx.outputs[p])});
        parts.push_back({bytes(*ctx.outputs[p]), size_t(part) * esize, size_t(offset) * esize});
        widest = std::max(widest, size_t(part) * esize);
      }
      offset += part;
    }
    if (outer > 1 && parts.size() > 1 && widest <= kRowPartBytes)
      return copy_row_parts(bytes(in), size_t(row) * esize, outer, parts, true, threads);
    run_jobs(jobs, threads);
  }

  static void concat(KernelContext& ctx, size_t esize, int threads) {
    Tensor& out = ctx.out(0);
    const size_t axis = size_t(norm_axis(ctx.node.attr_int("axis", 0), int64_t(out.rank())));
    const int64_t outer = dims_product(out.dims(), 0, axis);
    const int64_t row = dims_product(out.dims(), axis, out.rank());  // output elements per outer index
    int64_t offset = 0;
    std::vector<CopyJob> jobs;
    std::vector<RowPart> parts;
    size_t widest = 0;
    for (size_t i = 0; i < ctx.inputs.size(); ++i) {
      const Tensor& in = ctx.in(i);
      CB_CHECK(dtype_size(in.dtype()) == esize, ctx.node.describe() << ": inputs differ in dtype");
      const int64_t chunk = dims_product(in.dims(), axis, in.rank());
      if (chunk > 0 && outer > 0) {
        jobs.push_back(
            {StridedCopy({outer, chunk}, {chunk, 1}, {row, 1}, esize), bytes(in), bytes(out) + size_t(offset) * esize});
        parts.push_back({bytes(in), size_t(chunk) * esize, size_t(offset) * esize});
        widest = std::max(widest, size_t(chunk) * esize);
      }
      offset += chunk;
    }
    if (outer > 1 && parts.size() > 1 && widest <= kRowPartBytes)
      return copy_row_parts(bytes(out), size_t(row) * esize, outer, parts, false, threads);
    run_jobs(jobs, threads);
  }
};

template <LayoutOp op>
std::unique_ptr<Kernel> make_layout(const Node& node) {
  return std::make_unique<LayoutKernel>(node, op);
}

}  // namespace

void register_cpu_layout_kernels(KernelFactoryTable& t) {
  t.add("Transpose", make_layout<LayoutOp::transpose>);
  t.add("Slice", make_layout<LayoutOp::slice>);
  t.add("Split", make_layout<LayoutOp::split>);
  t.add("Concat", make_layout<LayoutOp::concat>);
}

}  // namespace cb
