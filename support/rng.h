// The one random generator of the project (codebook and model initialisation,
// training data):  xoshiro256** (Blackman & Vigna, 2018)
// seeded through splitmix64, with the derived draws training needs (unbiased
// integers, uniform floats, normals, shuffles, choice without replacement).
//
// Why our own: std::mt19937 is portable but std::uniform_int_distribution,
// std::normal_distribution and std::shuffle are implementation-defined, so the
// same seed gives different data on libstdc++, libc++ and MSVC. Everything
// here is specified exactly:
//   * Rng(seed): the four state words are the first four outputs of
//     splitmix64 started at `seed` (the seeding Vigna recommends).
//   * Rng::derive(seed, a, b): an independent stream per key pair, used to give
//     every training sample its own generator (sample i of a run is drawn from
//     derive(seed, stream, i)), so any sample can be produced without producing
//     the ones before it: resuming at step s sees exactly the data of an
//     uninterrupted run.
//   * below(n): uniform in [0, n) by rejection (no modulo bias).
//   * uniform_double(): the top 53 bits / 2^53, in [0, 1);
//     uniform_float(): the top 24 bits / 2^24, in [0, 1).
//   * normal(): Box-Muller on two uniform_double() draws; the second value of
//     the pair is dropped so the generator's state is only its four words
//     (normal_pair() returns both).
//   * shuffle(): Fisher-Yates from the last element down, j = below(i + 1).
//   * choice_without_replacement(n, k): a partial Fisher-Yates over 0..n-1;
//     returns k distinct values in the order drawn (O(n) memory).
// The integer stream, below(), the uniform floats, shuffle and choice are
// bit-identical on every platform. normal() also needs std::log, std::sqrt and
// std::cos/std::sin: sqrt is exact (IEEE 754), log/cos/sin are within an ulp on
// glibc and may differ in the last bit on other C libraries.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "support/error.h"

namespace cb {

// splitmix64's output function (Stafford's Mix13): a bijective 64-bit mixer.
inline uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// splitmix64 (Steele, Lea & Flood): a Weyl sequence through splitmix64_mix.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() { return splitmix64_mix(state_ += 0x9e3779b97f4a7c15ULL); }

 private:
  uint64_t state_;
};

class Rng {
 public:
  using State = std::array<uint64_t, 4>;

  explicit Rng(uint64_t seed) {
    SplitMix64 sm(seed);
    for (uint64_t& w : s_) w = sm.next();
  }
  // A generator at an exact state (from state()); the all-zero state is invalid.
  static Rng from_state(const State& s) {
    CB_CHECK(s[0] | s[1] | s[2] | s[3], "Rng::from_state: the all-zero xoshiro256** state is invalid");
    Rng r(0);
    r.s_ = s;
    return r;
  }
  // The generator of stream (a, b) under `seed`: Rng(h) where
  // h = mix(mix(mix(seed) ^ mix(a + G)) ^ mix(b + 2G)), mix = splitmix64_mix,
  // G = 0x9e3779b97f4a7c15. Different keys give unrelated streams.
  // A stream per name (a codebook site, a parameter): adding a name never
  // changes the draws of another.
  static Rng for_name(uint64_t seed, std::string_view name) {
    uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
    for (unsigned char ch : name) h = (h ^ ch) * 0x100000001b3ULL;
    return derive(seed, h);
  }
  static Rng derive(uint64_t seed, uint64_t a, uint64_t b = 0) {
    constexpr uint64_t G = 0x9e3779b97f4a7c15ULL;
    uint64_t h = splitmix64_mix(seed);
    h = splitmix64_mix(h ^ splitmix64_mix(a + G));
    h = splitmix64_mix(h ^ splitmix64_mix(b + 2 * G));
    return Rng(h);
  }

  const State& state() const { return s_; }

  // xoshiro256**: the next 64 random bits.
  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // Uniform in [0, n), n >= 1, without modulo bias: draws below 2^64 mod n are
  // rejected so the accepted range is a multiple of n.
  uint64_t below(uint64_t n) {
    CB_CHECK(n > 0, "Rng::below: empty range (n = 0)");
    const uint64_t threshold = (0 - n) % n;  // 2^64 mod n
    for (;;) {
      uint64_t r = next_u64();
      if (r >= threshold) return r % n;
    }
  }
  // Uniform in [lo, hi).
  int64_t uniform_int(int64_t lo, int64_t hi) {
    CB_CHECK(lo < hi, "Rng::uniform_int: empty range [" << lo << ", " << hi << ")");
    return lo + int64_t(below(uint64_t(hi) - uint64_t(lo)));
  }
  double uniform_double() { return double(next_u64() >> 11) * 0x1.0p-53; }
  float uniform_float() { return float(next_u64() >> 40) * 0x1.0p-24f; }

  // Box-Muller: u1 = 1 - uniform_double() in (0, 1], u2 = uniform_double(),
  // r = sqrt(-2 ln u1): returns (r cos 2 pi u2, r sin 2 pi u2).
  std::pair<double, double> normal_pair() {
    const double u1 = 1.0 - uniform_double();
    const double u2 = uniform_double();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double theta = 6.283185307179586476925286766559 * u2;
    return {r * std::cos(theta), r * std::sin(theta)};
  }
  double normal(double mean = 0.0, double stddev = 1.0) { return mean + stddev * normal_pair().first; }
  // n draws of N(mean, stddev^2) as floats, both outputs of each Box-Muller pair used.
  void fill_normal(float* out, int64_t n, double mean = 0.0, double stddev = 1.0) {
    for (int64_t i = 0; i < n; i += 2) {
      auto [a, b] = normal_pair();
      out[i] = float(mean + stddev * a);
      if (i + 1 < n) out[i + 1] = float(mean + stddev * b);
    }
  }

  template <typename T>
  void shuffle(T* data, size_t n) {
    for (size_t i = n; i > 1; --i) {
      size_t j = size_t(below(i));
      std::swap(data[i - 1], data[j]);
    }
  }
  template <typename T>
  void shuffle(std::vector<T>& v) {
    shuffle(v.data(), v.size());
  }

  // k distinct values of 0..n-1, in the order drawn (position i is the i-th
  // step of a Fisher-Yates shuffle run from the front).
  std::vector<int64_t> choice_without_replacement(int64_t n, int64_t k) {
    CB_CHECK(n >= 0 && k >= 0 && k <= n,
             "Rng::choice_without_replacement: cannot choose " << k << " distinct values out of " << n);
    std::vector<int64_t> pool(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pool[size_t(i)] = i;
    for (int64_t i = 0; i < k; ++i) {
      int64_t j = i + int64_t(below(uint64_t(n - i)));
      std::swap(pool[size_t(i)], pool[size_t(j)]);
    }
    pool.resize(size_t(k));
    return pool;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  State s_{};
};

}  // namespace cb
