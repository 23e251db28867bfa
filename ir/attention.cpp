// The layout attributes of codebook.Attention (contract in ir/attention.h).
#include "ir/attention.h"

#include <algorithm>
#include <vector>

#include "ir/graph.h"
#include "support/error.h"

namespace cb {

bool AttentionLayout::is_default() const {
  return q_perm == kIdentity && k_perm == kIdentity && v_perm == kIdentity && out_perm == kIdentity && num_heads == 0 &&
         head_offsets == std::array<int64_t, 3>{0, 0, 0};
}

namespace {

AttentionLayout::Perm read_perm(const Node& n, const char* attr) {
  const std::vector<int64_t> p = n.attr_ints(attr, {0, 1, 2, 3});
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  CB_CHECK(sorted == std::vector<int64_t>({0, 1, 2, 3}),
           n.describe() << ": " << attr << " must be a permutation of [0, 1, 2, 3], got " << p.size() << " values");
  return {p[0], p[1], p[2], p[3]};
}

}  // namespace

AttentionLayout attention_layout(const Node& n) {
  AttentionLayout l;
  l.q_perm = read_perm(n, "q_perm");
  l.k_perm = read_perm(n, "k_perm");
  l.v_perm = read_perm(n, "v_perm");
  l.out_perm = read_perm(n, "out_perm");
  CB_CHECK(l.q_perm[3] == 3, n.describe() << ": q_perm must keep the head axis last (q_perm[3] = 3)");
  CB_CHECK(l.v_perm[3] == 3, n.describe() << ": v_perm must keep the head axis last (v_perm[3] = 3)");
  CB_CHECK(l.k_perm[2] == 3 || l.k_perm[3] == 3,
           n.describe() << ": k_perm must keep the head or the key axis last (k_perm[2] or k_perm[3] = 3)");
  CB_CHECK(l.out_perm[3] == 3, n.describe() << ": out_perm must keep the head axis last (out_perm[3] = 3)");
  l.num_heads = n.attr_int("num_heads", 0);
  CB_CHECK(l.num_heads >= 0, n.describe() << ": num_heads must be >= 0, got " << l.num_heads);
  const std::vector<int64_t> off = n.attr_ints("head_offsets", {0, 0, 0});
  CB_CHECK(off.size() == 3, n.describe() << ": head_offsets must have 3 values (Q, Kt, V), got " << off.size());
  for (size_t i = 0; i < 3; ++i) {
    CB_CHECK(off[i] >= 0, n.describe() << ": head_offsets must be >= 0, got " << off[i]);
    CB_CHECK(off[i] == 0 || l.num_heads > 0, n.describe() << ": head_offsets need num_heads");
    l.head_offsets[i] = off[i];
  }
  return l;
}

}  // namespace cb
