// Reference kernels for the data-movement ops: views (Reshape, Flatten,
// Squeeze, Unsqueeze), Transpose, Concat, Split, Slice, Expand, Tile and the
// host side of the device copies; and
// the registration of every tensor-op kernel (the other families live in
// tensor_*.cpp). The CPU backend runs these same kernels on GPT-2 sized
// tensors, so they copy contiguous runs with memcpy, never element by element
// when a run exists. Output shapes were already inferred (and validated) by the
// op schemas in ir/ops/tensor.cpp; the kernels only move bytes.
#include <cstring>

#include "backends/reference/reference_backend.h"
#include "backends/reference/tensor_copy.h"
#include "ir/codebook.h"
#include "ir/placement.h"

namespace cb {

void register_reference_tensor_index(KernelTable& t);
void register_reference_tensor_create(KernelTable& t);
void register_reference_tensor_pad(KernelTable& t);
void register_reference_tensor_scan(KernelTable& t);

namespace {

// Reshape, Flatten, Squeeze, Unsqueeze: same bytes, the inferred dims.
void view_kernel(KernelContext& ctx) {
  if (ctx.outputs[0]) *ctx.outputs[0] = ctx.in(0).reshaped(ctx.outputs[0]->dims());
}

// codebook.CopyToDevice / CopyToHost on the host (ir/placement.h): a plain
// copy. A device backend runs them with make_device_copy_kernel instead.
void host_copy_kernel(KernelContext& ctx) {
  if (ctx.in(0).nbytes()) std::memcpy(ctx.out(0).raw(), ctx.in(0).raw(), ctx.in(0).nbytes());
}

void transpose_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  size_t r = in.rank();
  std::vector<int64_t> perm = ctx.node.attr_ints("perm");
  if (perm.empty())
    for (size_t i = 0; i < r; ++i) perm.push_back(int64_t(r - 1 - i));
  std::vector<int64_t> in_strides = contiguous_strides(in.dims()), strides(r);
  for (size_t i = 0; i < r; ++i) strides[i] = in_strides[size_t(perm[i])];
  strided_copy(bytes_of(in), out.dims(), strides, bytes_of(out), dtype_size(in.dtype()));
}

void concat_kernel(KernelContext& ctx) {
  Tensor& out = ctx.out(0);
  int64_t axis = norm_axis(ctx.node.attr_int("axis", 0), int64_t(out.rank()));
  size_t esize = dtype_size(out.dtype());
  int64_t outer = dims_product(out.dims(), 0, size_t(axis));
  std::vector<size_t> chunk;  // bytes each input adds per outer index
  for (size_t i = 0; i < ctx.inputs.size(); ++i)
    chunk.push_back(size_t(dims_product(ctx.in(i).dims(), size_t(axis), ctx.in(i).rank())) * esize);
  uint8_t* dst = bytes_of(out);
  for (int64_t o = 0; o < outer; ++o)
    for (size_t i = 0; i < ctx.inputs.size(); ++i) {
      if (!chunk[i]) continue;
      std::memcpy(dst, bytes_of(ctx.in(i)) + size_t(o) * chunk[i], chunk[i]);
      dst += chunk[i];
    }
}

// The sizes of Split's parts along the axis (as the schema inferred them).
std::vector<int64_t> split_sizes(const KernelContext& ctx, int64_t dim) {
  int64_t n = int64_t(ctx.node.outputs.size());
  if (ctx.inputs.size() > 1 && ctx.inputs[1]) return ctx.inputs[1]->to_int_vector();
  int64_t chunk = dim % n == 0 ? dim / n : dim / n + 1;
  std::vector<int64_t> sizes(size_t(n), chunk);
  sizes.back() = dim - chunk * (n - 1);
  return sizes;
}

void split_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  int64_t axis = norm_axis(ctx.node.attr_int("axis", 0), int64_t(in.rank()));
  size_t esize = dtype_size(in.dtype());
  std::vector<int64_t> sizes = split_sizes(ctx, in.dim(size_t(axis)));
  int64_t outer = dims_product(in.dims(), 0, size_t(axis));
  size_t inner = size_t(dims_product(in.dims(), size_t(axis) + 1, in.rank())) * esize;
  size_t row = size_t(in.dim(size_t(axis))) * inner;  // input bytes per outer index
  size_t offset = 0;                                  // byte offset of part p within a row
  for (size_t p = 0; p < sizes.size(); ++p) {
    size_t part = size_t(sizes[p]) * inner;
    if (p < ctx.outputs.size() && ctx.outputs[p] && part) {
      uint8_t* dst = bytes_of(*ctx.outputs[p]);
      const uint8_t* src = bytes_of(in) + offset;
      for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + size_t(o) * part, src + size_t(o) * row, part);
    }
    offset += part;
  }
}

// Slice: the effective start and step of each axis after ONNX's clamping
// (the output dims, already inferred, give the counts).
void slice_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  if (out.numel() == 0) return;
  int64_t r = int64_t(in.rank());
  std::vector<int64_t> starts = ctx.in(1).to_int_vector(), ends = ctx.in(2).to_int_vector();
  size_t n = starts.size();
  std::vector<int64_t> axes, steps(n, 1);
  if (ctx.inputs.size() > 3 && ctx.inputs[3])
    axes = ctx.inputs[3]->to_int_vector();
  else
    for (size_t i = 0; i < n; ++i) axes.push_back(int64_t(i));
  if (ctx.inputs.size() > 4 && ctx.inputs[4]) steps = ctx.inputs[4]->to_int_vector();
  std::vector<int64_t> in_strides = contiguous_strides(in.dims()), strides = in_strides;
  int64_t base = 0;
  for (size_t i = 0; i < n; ++i) {
    int64_t a = norm_axis(axes[i], r), d = in.dim(size_t(a)), st = starts[i], step = steps[i];
    if (st < 0) st += d;
    st = step > 0 ? std::min(std::max<int64_t>(st, 0), d) : std::min(std::max<int64_t>(st, 0), d - 1);
    base += st * in_strides[size_t(a)];
    // With one element the step is never taken (and step * stride may overflow).
    strides[size_t(a)] = out.dim(size_t(a)) > 1 ? in_strides[size_t(a)] * step : 0;
  }
  size_t esize = dtype_size(in.dtype());
  strided_copy(bytes_of(in) + size_t(base) * esize, out.dims(), strides, bytes_of(out), esize);
}

void expand_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  strided_copy(bytes_of(in), out.dims(), broadcast_strides(in.dims(), out.dims()), bytes_of(out),
               dtype_size(in.dtype()));
}

// Tile: output dim d splits into (repeat k_d, source index i_d), and the
// output is contiguous over the interleaved dims [k_0, i_0, k_1, i_1, ...].
void tile_kernel(KernelContext& ctx) {
  const Tensor& in = ctx.in(0);
  Tensor& out = ctx.out(0);
  std::vector<int64_t> in_strides = contiguous_strides(in.dims()), dims, strides;
  for (size_t d = 0; d < in.rank(); ++d) {
    int64_t reps = in.dim(d) ? out.dim(d) / in.dim(d) : 0;
    dims.insert(dims.end(), {reps, in.dim(d)});
    strides.insert(strides.end(), {0, in_strides[d]});
  }
  strided_copy(bytes_of(in), dims, strides, bytes_of(out), dtype_size(in.dtype()));
}

}  // namespace

void register_reference_tensor(KernelTable& t) {
  for (const char* op : {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}) t.add(op, view_kernel);
  t.add("Transpose", transpose_kernel);
  for (const char* op : {kCopyToDeviceOp, kCopyToHostOp}) t.add(op, host_copy_kernel, kCodebookDomain);
  t.add("Concat", concat_kernel);
  t.add("Split", split_kernel);
  t.add("Slice", slice_kernel);
  t.add("Expand", expand_kernel);
  t.add("Tile", tile_kernel);
  register_reference_tensor_index(t);
  register_reference_tensor_create(t);
  register_reference_tensor_pad(t);
  register_reference_tensor_scan(t);
}

}  // namespace cb
