// Fuzz target: the GPT-2 byte-level BPE tokenizer (frontend/bpe_tokenizer.h)
// with the real GPT-2 vocabulary (../shared/data/gpt2-bpe beside the
// repository, as the tokenizer tests use it). Any bytes either encode or, when
// not valid UTF-8, throw cb::Error. Byte-level BPE is lossless, so an encoding
// must decode back to the input, and its byte offsets must tile the input in
// order. The input read as little-endian 16-bit ids is also decoded (ids
// outside the vocabulary must be a cb::Error).
#include <vector>

#include "frontend/bpe_tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

const cb::BpeTokenizer& tokenizer() {
  static const cb::BpeTokenizer t = cb::BpeTokenizer::load(CB_SOURCE_DIR "/../shared/data/gpt2-bpe");
  return t;
}

void check_encoding(const std::string& text, const cb::Encoding& enc) {
  if (enc.ids.size() != enc.offsets.size()) cb::fuzz::broken("one offset per id expected");
  int64_t at = 0;
  for (const cb::ByteSpan& s : enc.offsets) {
    if (s.begin != at || s.end <= s.begin || s.end > int64_t(text.size()))
      cb::fuzz::broken("offsets do not tile the input at byte " + std::to_string(at));
    at = s.end;
  }
  if (at != int64_t(text.size())) cb::fuzz::broken("offsets end before the input does");
  if (tokenizer().decode(enc.ids) != text) cb::fuzz::broken("decode(encode(text)) != text");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const cb::BpeTokenizer& tok = tokenizer();
  std::string text = cb::fuzz::to_string(data, size);
  cb::fuzz::expect_only_cb_errors([&] {
    cb::Encoding enc = tok.encode_with_offsets(text);
    if (tok.encode(text) != enc.ids) cb::fuzz::broken("encode() and encode_with_offsets() disagree");
    check_encoding(text, enc);
  });
  std::vector<cb::TokenId> ids;
  for (size_t i = 0; i + 1 < size; i += 2) ids.push_back(cb::TokenId(data[i] | (data[i + 1] << 8)));
  cb::fuzz::expect_only_cb_errors([&] { tok.decode(ids, true); });
  cb::fuzz::expect_only_cb_errors([&] { tok.decode(ids, false); });
  return 0;
}
