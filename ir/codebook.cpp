#include "ir/codebook.h"

#include <algorithm>
#include <cmath>

#include "support/error.h"

namespace cb {

const char* metric_name(CodebookMetric m) { return m == CodebookMetric::inner_product ? "inner_product" : "euclidean"; }

CodebookMetric parse_metric(const std::string& s) {
  if (s == "inner_product") return CodebookMetric::inner_product;
  if (s == "euclidean") return CodebookMetric::euclidean;
  CB_FAIL("unknown codebook metric '" << s << "' (expected inner_product or euclidean)");
}

bool is_codebook_node(const Node& n) { return n.domain == kCodebookDomain && n.op_type == kCodebookOp; }

std::vector<double> codebook_layer_norm(const float* x, const float* scale, const float* bias, int64_t n, double eps) {
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= double(n);
  double var = 0;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= double(n);
  double inv = 1.0 / std::sqrt(var + eps);
  std::vector<double> u(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) u[size_t(i)] = (x[i] - mean) * inv * scale[i] + bias[i];
  return u;
}

int64_t CodebookAttrs::max_disable_topk() const {
  int64_t m = 0;
  for (auto& r : disable_topk) m = std::max(m, r.m);
  return m;
}

namespace {

// Splits a flat int list into records of `width`, naming the attribute on error.
std::vector<std::vector<int64_t>> records(const Node& n, const char* attr, size_t width) {
  std::vector<int64_t> flat = n.attr_ints(attr, {});
  CB_CHECK(flat.size() % width == 0,
           n.describe() << ": attribute " << attr << " has " << flat.size() << " ints, not a multiple of " << width);
  std::vector<std::vector<int64_t>> out;
  for (size_t i = 0; i < flat.size(); i += width) out.emplace_back(flat.begin() + i, flat.begin() + i + width);
  return out;
}

void check_group(const Node& n, const char* attr, int64_t g, int64_t G) {
  CB_CHECK(g == kAll || (g >= 0 && (G <= 0 || g < G)),
           n.describe() << ": " << attr << " names group member " << g << ", but the codebook has "
                        << (G > 0 ? std::to_string(G) : std::string("fewer")) << " members");
}

void check_code(const Node& n, const char* attr, int64_t c, int64_t K, bool allow_blocked) {
  CB_CHECK((allow_blocked && c == -1) || (c >= 0 && (K <= 0 || c < K)),
           n.describe() << ": " << attr << " names code " << c << ", outside [0, "
                        << (K > 0 ? std::to_string(K) : std::string("K")) << ")");
}

}  // namespace

CodebookAttrs CodebookAttrs::from_node(const Node& n, int64_t G, int64_t K) {
  CodebookAttrs a;
  a.k = n.attr_int("k", 1);
  CB_CHECK(a.k >= 1, n.describe() << ": k = " << a.k << " must be at least 1");
  try {
    a.metric = parse_metric(n.attr_string("metric", "inner_product"));
  } catch (const Error& e) {
    CB_FAIL(n.describe() << ": " << e.what());
  }
  a.epsilon = n.attr_float("epsilon", 1e-5f);
  a.keep_k_codes = n.attr_int("keep_k_codes", 1) != 0;
  for (auto& r : records(n, "ablate", 3)) {
    check_group(n, "ablate", r[0], G);
    check_code(n, "ablate", r[2], K, false);
    a.ablate.push_back({r[0], r[1], r[2]});
  }
  for (auto& r : records(n, "disable_topk", 3)) {
    check_group(n, "disable_topk", r[0], G);
    CB_CHECK(r[2] >= 0, n.describe() << ": disable_topk of " << r[2] << " codes must not be negative");
    a.disable_topk.push_back({r[0], r[1], r[2]});
  }
  for (auto& r : records(n, "force", 4)) {
    check_group(n, "force", r[0], G);
    CB_CHECK(r[2] >= -a.k && r[2] < a.k,
             n.describe() << ": force names slot " << r[2] << ", outside [-" << a.k << ", " << a.k << ")");
    check_code(n, "force", r[3], K, true);
    a.force.push_back({r[0], r[1], r[2], r[3]});
  }
  CB_CHECK(K <= 0 || a.k + a.max_disable_topk() <= K || !a.keep_k_codes,
           n.describe() << ": k + disable_topk = " << a.k + a.max_disable_topk() << " exceeds the " << K
                        << " codes of the codebook");
  CB_CHECK(K <= 0 || a.k <= K, n.describe() << ": k = " << a.k << " exceeds the " << K << " codes");
  return a;
}

void CodebookAttrs::to_node(Node& n) const {
  for (const char* key : {"k", "metric", "epsilon", "keep_k_codes", "ablate", "disable_topk", "force"})
    n.attrs.erase(key);
  n.attrs["k"] = k;
  n.attrs["metric"] = std::string(metric_name(metric));
  if (epsilon != 1e-5f) n.attrs["epsilon"] = epsilon;
  if (!keep_k_codes) n.attrs["keep_k_codes"] = int64_t(0);
  std::vector<int64_t> flat;
  for (auto& r : ablate) flat.insert(flat.end(), {r.group, r.position, r.code});
  if (!flat.empty()) n.attrs["ablate"] = flat;
  flat.clear();
  for (auto& r : disable_topk) flat.insert(flat.end(), {r.group, r.position, r.m});
  if (!flat.empty()) n.attrs["disable_topk"] = flat;
  flat.clear();
  for (auto& r : force) flat.insert(flat.end(), {r.group, r.position, r.slot, r.code});
  if (!flat.empty()) n.attrs["force"] = flat;
}

}  // namespace cb
