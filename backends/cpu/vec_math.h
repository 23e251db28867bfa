// Vector arithmetic for the CPU backend's own f32 kernels (elementwise_kernels.cpp,
// grad_kernels.cpp): a Vec of 8 floats in AVX2+FMA builds (a plain float
// otherwise), its loads and stores (whole and masked partial vectors),
// polynomial approximations of exp, tanh and erf (coefficients fitted for
// these kernels, minimax-like, evaluated in f32 with FMA), and GELU and its
// derivative built on them:
//   exp(x)  = 2^n (1 + r + r^2 P(r)), r = x - n ln2, |r| <= ln2/2; < 1 ulp.
//   tanh(x) = x + x^3 P(x^2) for |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1);
//             ~1 ulp.
//   erf(x)  = x + x P(x^2) for |x| < 0.921875, else
//             1 - exp(-x^2) Q(1/|x| - 0.6) up to |x| = 3.925, 1 beyond (erf
//             rounds to 1 in f32 there); max abs error 5.7e-8 on [-6, 6].
// Every function works lane by lane: a lane's result does not depend on the
// other lanes, so an element gives the same bits whether it is in a whole
// vector or a masked partial one.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CB_SIMD_AVX2 1
#endif

namespace cb::simd {

#ifdef CB_SIMD_AVX2
struct Vec {
  __m256 v;
};
using Mask = __m256;
constexpr int64_t kWidth = 8;

inline Vec splat(float f) { return {_mm256_set1_ps(f)}; }
inline Vec load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store(float* p, Vec x) { _mm256_storeu_ps(p, x.v); }
// Lanes [0, n) of a partial vector (n < 8); the others read as 0 and are not written.
inline __m256i tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// Lanes i with lo <= i < hi.
inline __m256 lanes_in(int64_t lo, int64_t hi) {
  const __m256i i = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i lo_v = _mm256_set1_epi32(int(std::max<int64_t>(lo, -1))),
                hi_v = _mm256_set1_epi32(int(std::min<int64_t>(hi, 8)));
  return _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpgt_epi32(lo_v, i), _mm256_cmpgt_epi32(hi_v, i)));
}
inline Vec load_partial(const float* p, int64_t n) { return {_mm256_maskload_ps(p, tail_mask(n))}; }
inline void store_partial(float* p, Vec x, int64_t n) { _mm256_maskstore_ps(p, tail_mask(n), x.v); }

inline Vec operator+(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
inline Vec operator-(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vec operator*(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vec operator/(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
inline Vec operator-(Vec a) { return {_mm256_xor_ps(a.v, _mm256_set1_ps(-0.f))}; }
inline Vec madd(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }    // a * b + c, one rounding
inline Vec nmadd(Vec a, Vec b, Vec c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }  // c - a * b, one rounding
inline Vec abs(Vec a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.f), a.v)}; }
inline Vec sqrt(Vec a) { return {_mm256_sqrt_ps(a.v)}; }
// |mag| with the sign of `sign`; `mag` must have a clear sign bit.
inline Vec with_sign_of(Vec mag, Vec sign) {
  return {_mm256_or_ps(mag.v, _mm256_and_ps(sign.v, _mm256_set1_ps(-0.f)))};
}
// min(bound, x) and max(bound, x) that return x when x is NaN.
inline Vec min_or_nan(Vec bound, Vec x) { return {_mm256_min_ps(bound.v, x.v)}; }
inline Vec max_or_nan(Vec bound, Vec x) { return {_mm256_max_ps(bound.v, x.v)}; }
// max(x, bound), bound where x is NaN.
inline Vec max_ignoring_nan(Vec x, Vec bound) { return {_mm256_max_ps(x.v, bound.v)}; }
inline Mask less(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ); }
inline Mask greater_equal(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ); }
inline Mask equal(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ); }       // false at a NaN
inline Mask not_equal(Vec a, Vec b) { return _mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ); }  // true at a NaN
inline Vec select(Mask m, Vec if_true, Vec if_false) { return {_mm256_blendv_ps(if_false.v, if_true.v, m)}; }
inline bool all(Mask m) { return _mm256_movemask_ps(m) == 0xff; }
inline Mask and_masks(Mask a, Mask b) { return _mm256_and_ps(a, b); }
inline Vec round_to_int(Vec a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
inline Vec floor(Vec a) { return {_mm256_floor_ps(a.v)}; }
// 2^n for integral n in [-126, 127].
inline Vec pow2(Vec n) {
  __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127)), 23);
  return {_mm256_castsi256_ps(bits)};
}
#else
// Portable: one float at a time (the loops never see a partial vector).
using Vec = float;
using Mask = bool;
constexpr int64_t kWidth = 1;

inline Vec splat(float f) { return f; }
inline Vec load(const float* p) { return *p; }
inline void store(float* p, Vec x) { *p = x; }
inline Mask lanes_in(int64_t lo, int64_t hi) { return lo <= 0 && 0 < hi; }
inline Vec load_partial(const float* p, int64_t) { return *p; }
inline void store_partial(float* p, Vec x, int64_t) { *p = x; }
inline Vec madd(Vec a, Vec b, Vec c) { return a * b + c; }
inline Vec nmadd(Vec a, Vec b, Vec c) { return c - a * b; }
inline Vec abs(Vec a) { return std::fabs(a); }
inline Vec sqrt(Vec a) { return std::sqrt(a); }
inline Vec with_sign_of(Vec mag, Vec sign) { return std::copysign(mag, sign); }
inline Vec min_or_nan(Vec bound, Vec x) { return x > bound ? bound : x; }
inline Vec max_or_nan(Vec bound, Vec x) { return x < bound ? bound : x; }
inline Vec max_ignoring_nan(Vec x, Vec bound) { return x > bound ? x : bound; }
inline Mask less(Vec a, Vec b) { return a < b; }
inline Mask greater_equal(Vec a, Vec b) { return a >= b; }
inline Mask equal(Vec a, Vec b) { return a == b; }
inline Mask not_equal(Vec a, Vec b) { return a != b; }
inline Vec select(Mask m, Vec if_true, Vec if_false) { return m ? if_true : if_false; }
inline bool all(Mask m) { return m; }
inline Mask and_masks(Mask a, Mask b) { return a && b; }
inline Vec round_to_int(Vec a) { return std::nearbyint(a); }
inline Vec floor(Vec a) { return std::floor(a); }
inline Vec pow2(Vec n) { return n == n ? std::ldexp(1.f, int(n)) : n; }
#endif

// The first min(n, kWidth) floats at p, as a whole or a masked partial vector.
inline Vec load_n(const float* p, int64_t n) { return n >= kWidth ? load(p) : load_partial(p, n); }
inline void store_n(float* p, Vec x, int64_t n) {
  if (n >= kWidth)
    store(p, x);
  else
    store_partial(p, x, n);
}

#ifdef CB_SIMD_AVX2
// r[c] lane i = old r[i] lane c: an 8 x 8 block transposed in registers.
inline void transpose8x8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}
#endif

// dst[c * ldd + r] = src[r * lds + c] for r, c < 8: an 8 x 8 block
// transposed in registers (AVX2), element by element otherwise.
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
#ifdef CB_SIMD_AVX2
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  transpose8x8(r);
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * ldd, r[i]);
#else
  for (int64_t r = 0; r < 8; ++r)
    for (int64_t c = 0; c < 8; ++c) dst[c * ldd + r] = src[r * lds + c];
#endif
}

// The largest lane, ignoring NaN lanes (-inf where all are NaN), and the sum of the lanes.
inline float reduce_max(Vec v) {
#ifdef CB_SIMD_AVX2
  // _mm_max_ps(a, b) returns b where either is NaN: the low half's NaN lanes
  // become -inf, then the high half's NaN lanes lose to them.
  const __m128 low = _mm_max_ps(_mm256_castps256_ps128(v.v), _mm_set1_ps(-INFINITY));
  __m128 m = _mm_max_ps(_mm256_extractf128_ps(v.v, 1), low);
  m = _mm_max_ps(_mm_movehl_ps(m, m), m);
  return _mm_cvtss_f32(_mm_max_ss(_mm_movehdup_ps(m), m));
#else
  return v == v ? v : -INFINITY;
#endif
}
inline float reduce_add(Vec v) {
#ifdef CB_SIMD_AVX2
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v.v), _mm256_extractf128_ps(v.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
#else
  return v;
#endif
}

// Bit j set where x[j] > t, for j < n <= 32 (n a multiple of kWidth).
inline uint32_t greater_bits(const float* x, int64_t n, float t) {
  uint32_t bits = 0;
#ifdef CB_SIMD_AVX2
  const __m256 tv = _mm256_set1_ps(t);
  for (int64_t j = 0; j < n; j += 8)
    bits |= uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + j), tv, _CMP_GT_OQ))) << j;
#else
  for (int64_t j = 0; j < n; ++j) bits |= uint32_t(x[j] > t) << j;
#endif
  return bits;
}

// Keeps a loaded vector in its register: left alone, GCC folds the load into
// each FMA of a register tile that reads it, R loads where one does, and the
// tiles become bound by loads instead of FMAs.
inline void pin(Vec& v) {
#ifdef CB_SIMD_AVX2
  asm("" : "+x"(v.v));
#else
  (void)v;
#endif
}

// c[0] + u * (c[1] + u * (... + u * c[n-1])), Horner's scheme with FMA.
template <size_t n>
inline Vec polynomial(Vec u, const float (&c)[n]) {
  Vec r = splat(c[n - 1]);
  for (size_t i = n - 1; i-- > 0;) r = madd(r, u, splat(c[i]));
  return r;
}

// e^x. Inputs are clamped to [-104, 89] (NaN passes): beyond, e^x is 0 or inf
// in f32, and 2^n below is built in two halves so results down to the
// subnormals come out right.
inline Vec exp_approx(Vec x) {
  static constexpr float kExpPoly[] = {0.5f, 0.166665778f, 0.0416668542f, 0.00836314075f, 0.00139012444f};
  x = min_or_nan(splat(89.f), max_or_nan(splat(-104.f), x));
  const Vec n = round_to_int(x * splat(1.44269504f));
  Vec r = nmadd(n, splat(0.693359375f), x);  // x - n ln2, ln2 split in two parts
  r = nmadd(n, splat(-2.12194440e-4f), r);
  const Vec p = madd(r * r, polynomial(r, kExpPoly), r) + splat(1.f);  // e^r, |r| <= ln2/2
  const Vec half = floor(n * splat(0.5f));
  return p * pow2(half) * pow2(n - half);
}

inline Vec tanh_approx(Vec x) {
  static constexpr float kTanhPoly[] = {-0.333333343f, 0.133333042f,    -0.0539592803f,
                                        0.0217690486f, -0.00834428985f, 0.00229307241f};
  const Vec a = abs(x);
  const Vec u = a * a;
  const Vec small = madd(a * u, polynomial(u, kTanhPoly), a);  // |x| < 0.625
  const Mask is_small = less(a, splat(0.625f));
  if (all(is_small)) return with_sign_of(small, x);
  const Vec large = splat(1.f) - splat(2.f) / (exp_approx(a + a) + splat(1.f));  // 1 at |x| = inf; NaN passes
  return with_sign_of(select(is_small, small, large), x);
}

inline Vec erf_approx(Vec x) {
  constexpr float kSmallLimit = 0.921875f;  // erf(x) = x + x P(x^2) below
  constexpr float kOneFrom = 3.925f;        // erf(x) rounds to 1 in f32 from about here
  static constexpr float kErfPoly[] = {0.128379151f,   -0.376124948f,  0.112818204f,
                                       -0.0267667212f, 0.00499330321f, -0.000599137682f};
  // erfc(x) e^(x^2) as a polynomial in 1/x - 0.6 on [kSmallLimit, kOneFrom].
  static constexpr float kErfcPoly[] = {0.296287477f,   0.39098388f,   -0.1755808f,    0.0411426201f, 0.0295524281f,
                                        -0.0542204827f, 0.0492088161f, -0.0227720123f, -0.012633143f, 0.0193533469f};
  const Vec a = abs(x);
  const Vec small = madd(a, polynomial(a * a, kErfPoly), a);
  const Mask is_small = less(a, splat(kSmallLimit));
  if (all(is_small)) return with_sign_of(small, x);
  const Vec b = max_or_nan(splat(kSmallLimit), min_or_nan(splat(kOneFrom), a));  // NaN passes
  const Vec q = polynomial(splat(1.f) / b - splat(0.6f), kErfcPoly);
  Vec large = nmadd(exp_approx(-(b * b)), q, splat(1.f));
  large = select(greater_equal(a, splat(kOneFrom)), splat(1.f), large);
  return with_sign_of(select(is_small, small, large), x);
}

// GELU and its derivative, both forms (ir/ops/grad.h has the formulas).
// The tanh form works from e = exp(-2|u|), u = sqrt(2/pi) (x + 0.044715 x^3):
// with d = 1 / (1 + e), (1 + tanh u) / 2 is d for u >= 0 and e d for u < 0,
// and 1 - tanh^2 u = 4 e d^2, so nothing cancels where tanh u is near +-1
// (1 - t * t would lose up to 1e-6 of Gelu' for |x| around 5). The erf form
// is x Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2.
struct GeluTanhParts {
  Vec u, e, d;  // u, exp(-2|u|), 1 / (1 + e)
};
inline GeluTanhParts gelu_tanh_parts(Vec x, Vec x2) {
  constexpr float kS = 0.797884561f, kSA = 0.797884561f * 0.044715f;  // sqrt(2/pi), sqrt(2/pi) 0.044715
  const Vec u = x * madd(x2, splat(kSA), splat(kS));
  const Vec au = abs(u);
  const Vec e = exp_approx(-(au + au));
  return {u, e, splat(1.f) / (splat(1.f) + e)};
}
// (1 + tanh u) / 2.
inline Vec gelu_tanh_half_one_plus_t(const GeluTanhParts& p) { return select(less(p.u, splat(0.f)), p.e * p.d, p.d); }

inline Vec gelu_tanh(Vec x) { return x * gelu_tanh_half_one_plus_t(gelu_tanh_parts(x, x * x)); }

inline Vec gelu_tanh_derivative(Vec x) {
  constexpr float kS = 0.797884561f, kSA = 0.797884561f * 0.044715f;
  const Vec x2 = x * x;
  const GeluTanhParts p = gelu_tanh_parts(x, x2);
  // x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2) / 2 = slope e d^2.
  const Vec slope = x * madd(x2, splat(6.f * kSA), splat(2.f * kS));
  return madd(slope, p.e * (p.d * p.d), gelu_tanh_half_one_plus_t(p));
}

inline Vec normal_cdf(Vec x) { return madd(splat(0.5f), erf_approx(x * splat(0.707106781f)), splat(0.5f)); }

inline Vec gelu_erf(Vec x) { return x * normal_cdf(x); }

// Phi(x) + x phi(x).
inline Vec gelu_erf_derivative(Vec x) {
  const Vec pdf = exp_approx(x * x * splat(-0.5f)) * splat(0.398942280f);
  return madd(x, pdf, normal_cdf(x));
}

// y[i] = f(x[i]) for i in [0, n): whole vectors, then one masked partial one.
template <typename F>
inline void map_vec(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) store(y + i, f(load(x + i)));
  if (i < n) store_partial(y + i, f(load_partial(x + i, n - i)), n - i);
}

// The same over two inputs: y[i] = f(a[i], b[i]).
template <typename F>
inline void map_vec2(const float* a, const float* b, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) store(y + i, f(load(a + i), load(b + i)));
  if (i < n) store_partial(y + i, f(load_partial(a + i, n - i), load_partial(b + i, n - i)), n - i);
}

}  // namespace cb::simd
