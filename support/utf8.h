// UTF-8 decoding, encoding and validation (Unicode Table 3-7: no overlong
// forms, surrogates or code points above U+10FFFF), shared by the JSON reader
// and the BPE tokenizer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace cb {

// Length of the well-formed UTF-8 sequence at s[i], or 0 when it is not one.
// `*maximal` gets the length of the maximal subpart to replace when invalid.
inline size_t utf8_sequence_length(std::string_view s, size_t i, size_t* maximal = nullptr) {
  const auto at = [&](size_t k) { return uint8_t(s[k]); };
  const uint8_t b0 = at(i);
  if (b0 < 0x80) return 1;
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF)
    need = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF)
    need = 3, lo = b0 == 0xE0 ? 0xA0 : 0x80, hi = b0 == 0xED ? 0x9F : 0xBF;
  else if (b0 >= 0xF0 && b0 <= 0xF4)
    need = 4, lo = b0 == 0xF0 ? 0x90 : 0x80, hi = b0 == 0xF4 ? 0x8F : 0xBF;
  else {
    if (maximal) *maximal = 1;
    return 0;
  }
  size_t k = 1;
  for (; k < need && i + k < s.size(); ++k) {
    const uint8_t b = at(i + k);
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
  }
  if (k == need) return need;
  if (maximal) *maximal = k;
  return 0;
}

// The sequence length a lead byte announces by its bit pattern (2 to 4), or 0
// for a byte that cannot start a multi-byte sequence; says nothing about
// validity (0xC0 announces 2).
inline size_t utf8_announced_length(uint8_t b0) {
  if ((b0 & 0xE0) == 0xC0) return 2;
  if ((b0 & 0xF0) == 0xE0) return 3;
  if ((b0 & 0xF8) == 0xF0) return 4;
  return 0;
}

// The code point of the valid UTF-8 sequence at s[i]; `*len` gets its length.
inline char32_t utf8_decode_valid(const uint8_t* s, size_t* len) {
  const uint8_t b0 = s[0];
  if (b0 < 0x80) return *len = 1, b0;
  if (b0 < 0xE0) return *len = 2, char32_t(b0 & 0x1F) << 6 | (s[1] & 0x3F);
  if (b0 < 0xF0) return *len = 3, char32_t(b0 & 0x0F) << 12 | char32_t(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
  return *len = 4, char32_t(b0 & 0x07) << 18 | char32_t(s[1] & 0x3F) << 12 | char32_t(s[2] & 0x3F) << 6 | (s[3] & 0x3F);
}

// Appends code point `cp` (at most U+10FFFF) encoded as UTF-8.
void utf8_append(std::string& out, char32_t cp);

// Rust's String::from_utf8_lossy: every maximal invalid subsequence becomes one U+FFFD.
std::string utf8_replace_invalid(std::string_view bytes);

// The byte offset of the first invalid UTF-8 sequence, or -1.
int64_t utf8_first_invalid(std::string_view bytes);

}  // namespace cb
