// Reference Einsum: a straightforward loop over the index space. For every
// output element it walks all values of the summed labels, multiplying the
// operands' elements (located through per-label strides, which also express
// diagonals and size-1 broadcasting) and accumulating in double / int64.
#include <vector>

#include "backends/reference/accumulate.h"
#include "backends/reference/kernel_util.h"
#include "backends/reference/reference_backend.h"
#include "ir/ops/einsum_equation.h"

namespace cb {

void register_reference_einsum(KernelTable& t);

namespace {

// An odometer over a list of label sizes that keeps each operand's offset.
struct Odometer {
  std::vector<int64_t> sizes;
  std::vector<std::vector<int64_t>> strides;  // [label][operand]
  std::vector<int64_t> idx, off;

  Odometer(std::vector<int64_t> s, std::vector<std::vector<int64_t>> st, size_t nops)
      : sizes(std::move(s)), strides(std::move(st)), idx(sizes.size(), 0), off(nops, 0) {}
  int64_t total() const {
    int64_t t = 1;
    for (auto s : sizes) t *= s;
    return t;
  }
  void reset() {
    std::fill(idx.begin(), idx.end(), 0);
    std::fill(off.begin(), off.end(), 0);
  }
  void next() {
    for (size_t d = sizes.size(); d-- > 0;) {
      if (++idx[d] < sizes[d]) {
        for (size_t k = 0; k < off.size(); ++k) off[k] += strides[d][k];
        return;
      }
      for (size_t k = 0; k < off.size(); ++k) off[k] -= strides[d][k] * (sizes[d] - 1);
      idx[d] = 0;
    }
  }
};

template <typename T>
void einsum_typed(const std::vector<const Tensor*>& ins, Tensor& y, const EinsumPlan& plan,
                  const std::vector<int64_t>& label_size) {
  size_t nops = ins.size();
  // stride[label][operand]: summed over the operand's dims carrying that label.
  std::vector<std::vector<int64_t>> stride(size_t(plan.num_labels), std::vector<int64_t>(nops, 0));
  for (size_t k = 0; k < nops; ++k) {
    std::vector<int64_t> cs = contiguous_strides(ins[k]->dims());
    for (size_t d = 0; d < cs.size(); ++d) {
      size_t l = size_t(plan.operand_labels[k][d]);
      if (ins[k]->dim(d) != 1) stride[l][k] += cs[d];
    }
  }
  std::vector<bool> in_output(size_t(plan.num_labels), false);
  std::vector<int64_t> out_sizes, sum_sizes;
  std::vector<std::vector<int64_t>> out_strides, sum_strides;
  for (int l : plan.output_labels) {
    in_output[size_t(l)] = true;
    out_sizes.push_back(label_size[size_t(l)]);
    out_strides.push_back(stride[size_t(l)]);
  }
  for (int l = 0; l < plan.num_labels; ++l)
    if (!in_output[size_t(l)]) {
      sum_sizes.push_back(label_size[size_t(l)]);
      sum_strides.push_back(stride[size_t(l)]);
    }
  Odometer outer(out_sizes, out_strides, nops), inner(sum_sizes, sum_strides, nops);
  std::vector<const T*> data;
  for (auto* t : ins) data.push_back(t->data<T>());
  T* out = y.data<T>();
  int64_t n_out = outer.total(), n_sum = inner.total();
  for (int64_t o = 0; o < n_out; ++o, outer.next()) {
    AccOf<T> acc = 0;
    inner.reset();
    for (int64_t s = 0; s < n_sum; ++s, inner.next()) {
      AccOf<T> p = 1;
      for (size_t k = 0; k < nops; ++k) p *= load(data[k][outer.off[k] + inner.off[k]]);
      acc += p;
    }
    out[o] = store<T>(acc);
  }
}

void einsum_kernel(KernelContext& ctx) {
  std::vector<const Tensor*> ins;
  std::vector<size_t> ranks;
  for (size_t i = 0; i < ctx.inputs.size(); ++i) {
    ins.push_back(&ctx.in(i));
    ranks.push_back(ins.back()->rank());
  }
  EinsumPlan plan = plan_einsum(ctx.node.attr_string("equation", ""), ranks);
  // A label's size is that of any dim carrying it that is not 1 (else 1); the
  // schema has checked that those agree.
  std::vector<int64_t> label_size(size_t(plan.num_labels), 1);
  for (size_t k = 0; k < ins.size(); ++k)
    for (size_t d = 0; d < ranks[k]; ++d)
      if (ins[k]->dim(d) != 1) label_size[size_t(plan.operand_labels[k][d])] = ins[k]->dim(d);
  dtype_dispatch(ctx.out(0).dtype(), [&](auto tag) { einsum_typed<decltype(tag)>(ins, ctx.out(0), plan, label_size); });
}

}  // namespace

void register_reference_einsum(KernelTable& t) { t.add("Einsum", einsum_kernel); }

}  // namespace cb
