#include "support/threads.h"

#include <omp.h>

namespace cb {

void set_num_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

}  // namespace cb
