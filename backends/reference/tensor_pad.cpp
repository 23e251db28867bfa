// Reference kernel for Pad (constant, reflect, edge and wrap modes; negative
// pads crop). Each output coordinate maps to a source coordinate per axis (or
// to the constant); the last axis is copied as runs with memcpy.
#include "backends/reference/reference_backend.h"
#include "backends/reference/tensor_copy.h"

namespace cb {
namespace {

// Source index for position x (relative to the unpadded start) of an axis of
// size d, or -1 for the constant value. Matches numpy.pad for every pad width.
int64_t pad_source(int64_t x, int64_t d, const std::string& mode) {
  if (x >= 0 && x < d) return x;
  if (mode == "constant" || d == 0) return -1;
  if (mode == "edge") return x < 0 ? 0 : d - 1;
  if (mode == "wrap") return (x % d + d) % d;
  if (d == 1) return 0;  // reflect
  int64_t period = 2 * (d - 1);
  int64_t m = (x % period + period) % period;
  return m >= d ? period - m : m;
}

struct Run {
  int64_t dst, src, len;  // src -1: constant
};

void pad_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  size_t r = in.rank(), esize = dtype_size(in.dtype());
  std::string mode = ctx.node.attr_string("mode", "constant");
  std::vector<int64_t> pads = ctx.in(1).to_int_vector(), axes;
  if (ctx.inputs.size() > 3 && ctx.inputs[3])
    axes = ctx.inputs[3]->to_int_vector();
  else
    for (size_t i = 0; i < r; ++i) axes.push_back(int64_t(i));
  std::vector<int64_t> begin(r, 0);
  for (size_t i = 0; i < axes.size(); ++i) begin[size_t(norm_axis(axes[i], int64_t(r)))] = pads[i];
  std::vector<uint8_t> value(esize, 0);
  if (ctx.inputs.size() > 2 && ctx.inputs[2] && ctx.inputs[2]->numel() == 1)
    std::memcpy(value.data(), ctx.inputs[2]->raw(), esize);
  if (out.numel() == 0) return;
  if (r == 0) {
    std::memcpy(out.raw(), in.raw(), esize);
    return;
  }
  std::vector<std::vector<int64_t>> source(r);
  for (size_t a = 0; a < r; ++a)
    for (int64_t i = 0; i < out.dim(a); ++i) source[a].push_back(pad_source(i - begin[a], in.dim(a), mode));
  // Runs of the last axis: consecutive source elements, or constant stretches.
  std::vector<Run> runs;
  for (int64_t i = 0; i < out.dim(r - 1); ++i) {
    int64_t s = source[r - 1][size_t(i)];
    if (!runs.empty()) {
      Run& last = runs.back();
      if ((s < 0 && last.src < 0) || (s >= 0 && last.src >= 0 && s == last.src + last.len)) {
        ++last.len;
        continue;
      }
    }
    runs.push_back({i, s, 1});
  }
  std::vector<int64_t> in_strides = contiguous_strides(in.dims());
  int64_t rows = dims_product(out.dims(), 0, r - 1), row_len = out.dim(r - 1);
  std::vector<int64_t> idx(r - 1, 0);
  const uint8_t* src = bytes_of(in);
  for (int64_t row = 0; row < rows; ++row) {
    uint8_t* dst = bytes_of(out) + size_t(row * row_len) * esize;
    int64_t src_off = 0;
    bool constant_row = false;
    for (size_t a = 0; a + 1 < r; ++a) {
      int64_t m = source[a][size_t(idx[a])];
      constant_row |= m < 0;
      src_off += m * in_strides[a];
    }
    if (constant_row) {
      fill_bytes(dst, row_len, value.data(), esize);
    } else {
      for (const Run& run : runs) {
        if (run.src < 0)
          fill_bytes(dst + size_t(run.dst) * esize, run.len, value.data(), esize);
        else
          std::memcpy(dst + size_t(run.dst) * esize, src + size_t(src_off + run.src) * esize, size_t(run.len) * esize);
      }
    }
    for (int64_t a = int64_t(r) - 2; a >= 0; --a) {
      if (++idx[size_t(a)] < out.dim(size_t(a))) break;
      idx[size_t(a)] = 0;
    }
  }
}

}  // namespace

void register_reference_tensor_pad(KernelTable& t) { t.add("Pad", pad_kernel); }

}  // namespace cb
