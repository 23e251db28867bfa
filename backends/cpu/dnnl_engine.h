// The one oneDNN CPU engine every CPU-backend kernel shares, and a layout test.
#pragma once
#include <dnnl.hpp>

namespace cb {

inline dnnl::engine& dnnl_cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

// A layout that is a permutation of strides (row-major, transposed), not a blocked one.
inline bool dnnl_is_plain_layout(const dnnl::memory::desc& md) {
  return md.data.format_kind == dnnl_blocked && md.data.format_desc.blocking.inner_nblks == 0;
}

}  // namespace cb
