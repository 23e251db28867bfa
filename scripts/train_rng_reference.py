#!/usr/bin/env python3
"""An independent Python model of support/rng.h (xoshiro256** seeded by splitmix64).

Prints the draws that tests/test_dataset.cpp pins (Rng.PinnedDraws), so the C++
generator is checked against a second implementation of the same written
specification, not against itself. Pure Python, no packages:

    python3 scripts/train_rng_reference.py
"""
import math

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64_mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + GOLDEN) & MASK
        return splitmix64_mix(self.state)


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & MASK


class Rng:
    def __init__(self, seed=None, state=None):
        if state is not None:
            self.s = list(state)
        else:
            sm = SplitMix64(seed)
            self.s = [sm.next() for _ in range(4)]

    @staticmethod
    def derive(seed, a, b=0):
        h = splitmix64_mix(seed)
        h = splitmix64_mix(h ^ splitmix64_mix((a + GOLDEN) & MASK))
        h = splitmix64_mix(h ^ splitmix64_mix((b + 2 * GOLDEN) & MASK))
        return Rng(h)

    def next_u64(self):
        s = self.s
        result = (rotl((s[1] * 5) & MASK, 7) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def below(self, n):
        threshold = ((1 << 64) - n) % n
        while True:
            r = self.next_u64()
            if r >= threshold:
                return r % n

    def uniform_double(self):
        return (self.next_u64() >> 11) * 2.0**-53

    def uniform_float(self):
        return (self.next_u64() >> 40) * 2.0**-24  # exact in float32

    def normal_pair(self):
        u1 = 1.0 - self.uniform_double()
        u2 = self.uniform_double()
        r = math.sqrt(-2.0 * math.log(u1))
        theta = 6.283185307179586476925286766559 * u2
        return r * math.cos(theta), r * math.sin(theta)

    def shuffle(self, values):
        for i in range(len(values), 1, -1):
            j = self.below(i)
            values[i - 1], values[j] = values[j], values[i - 1]

    def choice_without_replacement(self, n, k):
        pool = list(range(n))
        for i in range(k):
            j = i + self.below(n - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


def main():
    r = Rng(state=[1, 2, 3, 4])
    print("xoshiro256** from state {1,2,3,4}:", [r.next_u64() for _ in range(6)])
    sm = SplitMix64(1234567)
    print("splitmix64(1234567):", [sm.next() for _ in range(3)])
    r = Rng(42)
    print("Rng(42).next_u64:", [r.next_u64() for _ in range(3)])
    r = Rng(42)
    print("Rng(42).below(10):", [r.below(10) for _ in range(10)])
    r = Rng(42)
    print("Rng(42).below(3 << 62):", [r.below(3 << 62) for _ in range(2)])
    r = Rng(7)
    print("Rng(7).uniform_double:", [repr(r.uniform_double()) for _ in range(3)],
          "then uniform_float:", [repr(r.uniform_float()) for _ in range(2)])
    r = Rng(7)
    print("Rng(7).normal_pair:", [repr(x) for x in r.normal_pair()], "then normal:", repr(r.normal_pair()[0]))
    r = Rng(5)
    values = list(range(10))
    r.shuffle(values)
    print("Rng(5).shuffle(0..9):", values)
    print("Rng(5).choice_without_replacement(100, 10):", Rng(5).choice_without_replacement(100, 10))
    print("Rng::derive(42, 1, 0).next_u64:", Rng.derive(42, 1, 0).next_u64())
    print("Rng::derive(42, 1, 1).next_u64:", Rng.derive(42, 1, 1).next_u64())


if __name__ == "__main__":
    main()
