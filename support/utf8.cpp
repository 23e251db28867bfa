#include "support/utf8.h"

namespace cb {

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | cp >> 6), out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | cp >> 12), out += char(0x80 | (cp >> 6 & 0x3F)), out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | cp >> 18), out += char(0x80 | (cp >> 12 & 0x3F)), out += char(0x80 | (cp >> 6 & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

int64_t utf8_first_invalid(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size();) {
    if (uint8_t(bytes[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t len = utf8_sequence_length(bytes, i);
    if (len == 0) return int64_t(i);
    i += len;
  }
  return -1;
}

std::string utf8_replace_invalid(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    size_t maximal = 0;
    const size_t len = utf8_sequence_length(bytes, i, &maximal);
    if (len) {
      out.append(bytes.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += maximal;
    }
  }
  return out;
}

}  // namespace cb
