// The one oneDNN CPU engine every CPU-backend kernel shares.
#pragma once
#include <dnnl.hpp>

namespace cb {

inline dnnl::engine& dnnl_cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

}  // namespace cb
