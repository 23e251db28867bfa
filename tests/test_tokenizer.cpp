// The byte-level BPE tokenizer against Hugging Face `tokenizers`: ids, offsets
// and decoded text for every reference case in tests/data/tokenizer/ (made by
// scripts/make_tokenizer_refs.py), hand-checkable GPT-2 cases, loading errors,
// and the `codebook tokenize` command.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "frontend/bpe_tokenizer.h"
#include "support/error.h"
#include "support/json.h"
#include "support/utf8.h"
#include "tests/cli_util.h"

namespace fs = std::filesystem;

namespace {

using cb::BpeTokenizer;
using cb::Json;
using cb::TokenId;

const fs::path kData = fs::path(CB_SOURCE_DIR) / "tests/data/tokenizer";
const fs::path kGpt2 = fs::path(CB_SOURCE_DIR) / "../shared/data/gpt2-bpe";

const BpeTokenizer& gpt2() {
  static const BpeTokenizer tok = BpeTokenizer::load(kGpt2);
  return tok;
}

std::vector<Json> read_jsonl(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f) << path;
  std::vector<Json> out;
  std::string line;
  while (std::getline(f, line)) out.push_back(cb::json_parse(line, path.string()));
  return out;
}

std::vector<TokenId> ids_of(const Json& list) {
  std::vector<TokenId> ids;
  for (const Json& v : list.as_array()) ids.push_back(v.as_int());
  return ids;
}

// HF's character offsets of a token from our byte span: the characters its
// bytes touch; an empty span (a prepended space) belongs to the character there.
std::pair<int64_t, int64_t> char_span(const std::vector<int64_t>& char_of_byte, cb::ByteSpan s) {
  if (s.begin == s.end) return {char_of_byte[size_t(s.begin)], char_of_byte[size_t(s.begin)] + 1};
  return {char_of_byte[size_t(s.begin)], char_of_byte[size_t(s.end - 1)] + 1};
}

std::vector<int64_t> char_index_of_bytes(const std::string& text) {
  std::vector<int64_t> out;
  int64_t chars = -1;
  for (unsigned char c : text) {
    if ((c & 0xC0) != 0x80) ++chars;
    out.push_back(chars);
  }
  return out;
}

std::string show(const std::string& text) { return Json(text.substr(0, 200)).dump(); }

// Every record of an *_encode.jsonl: ids equal, offsets equal HF's character
// offsets, and (where nothing is dropped) the byte spans tile the input.
// `round_trip`: decode(encode(text)) == text too (not so where added tokens
// strip whitespace or a space is prepended).
void check_encode_refs(const BpeTokenizer& tok, const fs::path& refs, bool round_trip) {
  std::vector<Json> records = read_jsonl(refs);
  ASSERT_GT(records.size(), 100u) << refs;
  int mismatches = 0;
  for (const Json& r : records) {
    const std::string& text = r.at("text").as_string();
    const std::vector<TokenId> want = ids_of(r.at("ids"));
    cb::Encoding enc = tok.encode_with_offsets(text);
    ASSERT_EQ(enc.ids.size(), enc.offsets.size());
    EXPECT_EQ(enc.ids, want) << "text " << show(text);
    EXPECT_EQ(tok.encode(text), enc.ids);
    if (enc.ids != want && ++mismatches > 5) FAIL() << "too many mismatches";
    const Json* exact = r.find("offsets_exact");
    const bool offsets_exact = !exact || exact->as_bool();
    if (enc.ids != want || !offsets_exact) continue;
    const std::vector<int64_t> char_of_byte = char_index_of_bytes(text);
    const Json::Array& hf_offsets = r.at("char_offsets").as_array();
    std::string joined;
    for (size_t i = 0; i < enc.ids.size(); ++i) {
      const cb::ByteSpan s = enc.offsets[i];
      ASSERT_TRUE(0 <= s.begin && s.begin <= s.end && s.end <= int64_t(text.size())) << show(text);
      auto [b, e] = char_span(char_of_byte, s);
      EXPECT_EQ(b, hf_offsets[i].at(size_t(0)).as_int()) << "token " << i << " of " << show(text);
      EXPECT_EQ(e, hf_offsets[i].at(size_t(1)).as_int()) << "token " << i << " of " << show(text);
      if (i > 0) {
        EXPECT_EQ(s.begin, enc.offsets[i - 1].end) << "token " << i << " of " << show(text);
      }
      joined += text.substr(size_t(s.begin), size_t(s.end - s.begin));
    }
    EXPECT_EQ(joined, text) << "the byte spans do not tile " << show(text);
    if (round_trip) {
      EXPECT_EQ(tok.decode(enc.ids), text) << show(text);
    }
  }
}

void check_decode_refs(const BpeTokenizer& tok, const fs::path& refs) {
  std::vector<Json> records = read_jsonl(refs);
  ASSERT_GT(records.size(), 100u) << refs;
  for (const Json& r : records) {
    const std::vector<TokenId> ids = ids_of(r.at("ids"));
    EXPECT_EQ(tok.decode(ids, r.at("skip_special_tokens").as_bool()), r.at("text").as_string())
        << "ids " << r.at("ids").dump();
  }
}

// ---------------------------------------------------------------------------

TEST(Gpt2Tokenizer, HandCheckedIds) {
  const BpeTokenizer& tok = gpt2();
  EXPECT_EQ(tok.vocab_size(), 50257);
  EXPECT_EQ(tok.encode("Hello world"), (std::vector<TokenId>{15496, 995}));
  EXPECT_EQ(tok.encode("<|endoftext|>"), (std::vector<TokenId>{50256}));
  EXPECT_EQ(tok.encode("don't"), (std::vector<TokenId>{9099, 470}));  // "don", "'t"
  EXPECT_EQ(tok.encode(""), (std::vector<TokenId>{}));
  // "a" + three spaces + "b": the whitespace run leaves its last space to " b"
  // (and GPT-2 has no merge of two spaces).
  EXPECT_EQ(tok.encode("a   b"), (std::vector<TokenId>{64, 220, 220, 275}));
  EXPECT_EQ(tok.id_to_token(220), "\xC4\xA0");  // "Ġ"
  EXPECT_EQ(tok.id_to_token(275),
            "\xC4\xA0"
            "b");  // "Ġb"
  EXPECT_EQ(tok.token_to_id("\xC4\xA0"
                            "world"),
            995);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 50256);
  EXPECT_FALSE(tok.token_to_id("no such token").has_value());
  ASSERT_EQ(tok.added_tokens().size(), 1u);
  EXPECT_TRUE(tok.added_tokens()[0].special);
}

std::vector<std::string> pieces(const std::string& text) {
  std::vector<std::string> out;
  for (const cb::ByteSpan& s : cb::gpt2_pretokenize(text))
    out.push_back(text.substr(size_t(s.begin), size_t(s.end - s.begin)));
  return out;
}

using Pieces = std::vector<std::string>;

TEST(Gpt2Pretokenize, RegexAlternatives) {
  EXPECT_EQ(pieces("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(pieces("don't they'll 'S"), (Pieces{"don", "'t", " they", "'ll", " '", "S"}));
  EXPECT_EQ(pieces("!'s"), (Pieces{"!'", "s"}));  // a run of "other" swallows the apostrophe
  EXPECT_EQ(pieces("x1234 5.6"), (Pieces{"x", "1234", " 5", ".", "6"}));
  // Whitespace: a run before a word leaves its last space to the word; a run
  // at the end is kept whole; a lone tab before a word is its own piece.
  EXPECT_EQ(pieces("a   b"), (Pieces{"a", "  ", " b"}));
  EXPECT_EQ(pieces("a \t\nb  "), (Pieces{"a", " \t", "\n", "b", "  "}));
  EXPECT_EQ(pieces("\tx"), (Pieces{"\t", "x"}));
  EXPECT_EQ(pieces(" ?!"), (Pieces{" ?!"}));
  EXPECT_EQ(pieces(""), (Pieces{}));
}

TEST(Gpt2Pretokenize, UnicodeClasses) {
  // Letters, numbers and spaces beyond ASCII: Cyrillic, Arabic-Indic digits,
  // U+3000 ideographic space, a combining accent (a mark: "other"), and U+1C89,
  // a letter new in Unicode 16 (which HF tokenizers 0.23 uses).
  EXPECT_EQ(pieces("\xD0\x9F\xD1\x80\xD0\xB8 \xD9\xA3\xD9\xA4"),
            (Pieces{"\xD0\x9F\xD1\x80\xD0\xB8", " \xD9\xA3\xD9\xA4"}));
  EXPECT_EQ(pieces("a\xE3\x80\x80"
                   "b"),
            (Pieces{"a", "\xE3\x80\x80", "b"}));
  EXPECT_EQ(pieces("e\xCC\x81t"), (Pieces{"e", "\xCC\x81", "t"}));
  EXPECT_EQ(pieces("x\xE1\xB2\x89!"), (Pieces{"x\xE1\xB2\x89", "!"}));
}

TEST(Gpt2Tokenizer, ByteOffsetsSplitCharacters) {
  // "日" is 3 bytes that GPT-2 encodes as two tokens: [0, 2) and [2, 3).
  cb::Encoding e = gpt2().encode_with_offsets("\xE6\x97\xA5");
  ASSERT_EQ(e.ids.size(), 2u);
  EXPECT_EQ(e.offsets[0], (cb::ByteSpan{0, 2}));
  EXPECT_EQ(e.offsets[1], (cb::ByteSpan{2, 3}));
  EXPECT_EQ(gpt2().decode(std::vector<TokenId>{e.ids[0]}), "\xEF\xBF\xBD");  // half a character
  cb::Encoding s = gpt2().encode_with_offsets("x<|endoftext|>y");
  EXPECT_EQ(s.ids, (std::vector<TokenId>{87, 50256, 88}));
  EXPECT_EQ(s.offsets[1], (cb::ByteSpan{1, 14}));
}

TEST(Gpt2Tokenizer, MatchesHuggingFaceEncode) { check_encode_refs(gpt2(), kData / "gpt2_encode.jsonl", true); }

TEST(Gpt2Tokenizer, MatchesHuggingFaceDecode) { check_decode_refs(gpt2(), kData / "gpt2_decode.jsonl"); }

TEST(Gpt2Tokenizer, SkipSpecialTokens) {
  std::vector<TokenId> ids = gpt2().encode("a<|endoftext|>b");
  EXPECT_EQ(gpt2().decode(ids), "a<|endoftext|>b");
  EXPECT_EQ(gpt2().decode(ids, true), "ab");
}

TEST(Gpt2Tokenizer, RoundTripsRandomUtf8) {
  // Random code points of every length, with and without the special token.
  std::mt19937 rng(7);
  for (int n = 0; n < 300; ++n) {
    std::string text;
    for (int i = 0, len = int(rng() % 40); i < len; ++i) {
      uint32_t cp;
      switch (rng() % 4) {
        case 0: cp = rng() % 0x80; break;
        case 1: cp = 0x80 + rng() % 0x780; break;
        case 2: cp = 0x800 + rng() % 0xF800; break;
        default: cp = 0x10000 + rng() % 0x100000; break;
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 'x';
      cb::utf8_append(text, char32_t(cp));
      if (rng() % 50 == 0) text += "<|endoftext|>";
    }
    ASSERT_EQ(cb::utf8_first_invalid(text), -1);
    cb::Encoding e = gpt2().encode_with_offsets(text);
    EXPECT_EQ(gpt2().decode(e.ids), text);
    std::string joined;
    for (const cb::ByteSpan& s : e.offsets) joined += text.substr(size_t(s.begin), size_t(s.end - s.begin));
    EXPECT_EQ(joined, text);
  }
}

TEST(Gpt2Tokenizer, LongInputsAndCache) {
  // Long words go through the heap-based merge without the cache; the same
  // text encoded twice (cached the second time) gives the same ids.
  std::string word(20000, 'a');
  std::vector<TokenId> ids = gpt2().encode(word);
  EXPECT_EQ(gpt2().decode(ids), word);
  EXPECT_LT(ids.size(), word.size() / 2);
  std::string text = "The quick brown fox jumps over the lazy dog. ";
  std::vector<TokenId> first = gpt2().encode(text), second = gpt2().encode(text);
  EXPECT_EQ(first, second);
}

TEST(Gpt2Tokenizer, InvalidUtf8IsAnError) {
  for (std::string bad : {std::string("ab\x80"), std::string("\xC3"), std::string("x\xED\xA0\x80"),
                          std::string("\xF4\x90\x80\x80"), std::string("\xC0\xAF")}) {
    try {
      gpt2().encode(bad);
      ADD_FAILURE() << "accepted " << Json(cb::utf8_replace_invalid(bad)).dump();
    } catch (const cb::Error& e) {
      EXPECT_NE(std::string(e.what()).find("not valid UTF-8"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("byte offset " + std::to_string(cb::utf8_first_invalid(bad))),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(cb::utf8_first_invalid("ab\x80"), 2);
  EXPECT_EQ(cb::utf8_first_invalid("\xF0\x9F\x98\x80"), -1);
}

TEST(Gpt2Tokenizer, ReplacesInvalidUtf8LikeHuggingFace) {
  // Maximal subparts: "\xE6\x97" is one truncated character, "\xC0" and "\xAF" two bytes that start nothing.
  EXPECT_EQ(cb::utf8_replace_invalid("a\xE6\x97"
                                     "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(cb::utf8_replace_invalid("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(cb::utf8_replace_invalid("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(cb::utf8_replace_invalid("ok \xC3\xA9"), "ok \xC3\xA9");
}

TEST(Gpt2Tokenizer, DecodeRejectsUnknownIds) {
  EXPECT_THROW(gpt2().decode(std::vector<TokenId>{15496, 50257}), cb::Error);
  EXPECT_THROW(gpt2().decode(std::vector<TokenId>{-1}), cb::Error);
  EXPECT_THROW(gpt2().id_to_token(99999), cb::Error);
}

TEST(Gpt2Tokenizer, ByteLevelCharacters) {
  EXPECT_EQ(cb::byte_level_char('A'), "A");
  EXPECT_EQ(cb::byte_level_char(' '), "\xC4\xA0");   // Ġ = U+0120
  EXPECT_EQ(cb::byte_level_char('\n'), "\xC4\x8A");  // Ċ = U+010A
  EXPECT_EQ(cb::byte_level_char(0xAD), "\xC5\x83");  // soft hyphen -> U+0143
  EXPECT_EQ(cb::byte_level_char(0xFF), "\xC3\xBF");  // ÿ itself
}

// ---------------------------------------------------------------------------
// tokenizer.json

TEST(TokenizerJson, CustomTokenizerMatchesHuggingFace) {
  BpeTokenizer tok = BpeTokenizer::load(kData / "custom");
  EXPECT_EQ(tok.source(), (kData / "custom" / "tokenizer.json").string());
  check_encode_refs(tok, kData / "custom_encode.jsonl", false);
  check_decode_refs(tok, kData / "custom_decode.jsonl");
  // Added tokens: lstrip takes the spaces before "<mask>"; rstrip those after "[RS]".
  cb::Encoding e = tok.encode_with_offsets("x  <mask>");
  ASSERT_EQ(e.ids.size(), 2u);
  EXPECT_EQ(e.ids[1], *tok.token_to_id("<mask>"));
  EXPECT_EQ(e.offsets[1], (cb::ByteSpan{1, 9}));
}

TEST(TokenizerJson, PrefixSpaceLegacyMergesAndDroppedBytes) {
  BpeTokenizer tok = BpeTokenizer::load(kData / "custom_prefix" / "tokenizer.json");
  check_encode_refs(tok, kData / "custom_prefix_encode.jsonl", false);
  // The prepended space belongs to the first token but spans no input byte.
  cb::Encoding e = tok.encode_with_offsets("the");
  ASSERT_FALSE(e.ids.empty());
  EXPECT_EQ(e.offsets.front().begin, 0);
  EXPECT_EQ(e.offsets.back().end, 3);
}

// ---------------------------------------------------------------------------
// Loading errors name the file and what is wrong.

struct TempDir {
  fs::path path = cb::test::temp_dir("tokenizer");
  ~TempDir() { fs::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
  }
};

std::string load_error(const fs::path& p) {
  try {
    BpeTokenizer::load(p);
  } catch (const cb::Error& e) {
    return e.what();
  }
  return "(loaded)";
}

void expect_error(const fs::path& p, std::initializer_list<std::string> parts) {
  std::string msg = load_error(p);
  for (const std::string& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "message: " << msg;
}

const char* const kTinyVocab = R"({"a": 0, "b": 1, "ab": 2, "<|endoftext|>": 3})";

TEST(TokenizerLoading, VocabAndMergesErrors) {
  TempDir d;
  expect_error(d.path / "nope", {"nope", "no such"});
  expect_error(d.path, {"needs tokenizer.json, or vocab.json and merges.txt"});
  d.write("vocab.json", kTinyVocab);
  d.write("merges.txt", "#version: 0.2\na b\n");
  BpeTokenizer ok = BpeTokenizer::load(d.path);
  EXPECT_EQ(ok.encode("ab<|endoftext|>"), (std::vector<TokenId>{2, 3}));
  EXPECT_EQ(ok.vocab_size(), 4);

  d.write("merges.txt", "#version: 0.2\na b\nab\n");
  expect_error(d.path, {"merges.txt", "line 3", "two tokens"});
  d.write("merges.txt", "a c\n");
  expect_error(d.path, {"merges.txt", "line 1", "\"c\" is not in the vocabulary"});
  d.write("merges.txt", "b a\n");
  expect_error(d.path, {"merges.txt", "\"ba\" is not in the vocabulary"});
  d.write("merges.txt", "a b\n");
  d.write("vocab.json", R"({"a": 0, "b": 1, "ab": 2,})");
  expect_error(d.path, {"vocab.json:1:"});
  d.write("vocab.json", R"({"a": 0, "b": "one", "ab": 2})");
  expect_error(d.path, {"vocab.json", "\"b\"", "not an integer"});
  d.write("vocab.json", R"({"a": 0, "b": 0, "ab": 2})");
  expect_error(d.path, {"vocab.json", "id 0 is given to both"});
  d.write("vocab.json", R"(["a", "b"])");
  expect_error(d.path, {"vocab.json", "must be a JSON object"});
}

Json tiny_tokenizer_json() {
  Json::Object pre{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  Json::Object model{{"type", "BPE"}, {"vocab", cb::json_parse(kTinyVocab)}, {"merges", Json::Array{Json("a b")}}};
  Json::Object added{{"id", 3},         {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false},        {"special", true}};
  return Json(Json::Object{{"version", "1.0"},
                           {"added_tokens", Json::Array{Json(added)}},
                           {"normalizer", nullptr},
                           {"pre_tokenizer", Json(pre)},
                           {"post_processor", nullptr},
                           {"decoder", Json(Json::Object{{"type", "ByteLevel"}})},
                           {"model", Json(model)}});
}

TEST(TokenizerLoading, TokenizerJsonErrors) {
  TempDir d;
  const fs::path file = d.path / "tokenizer.json";
  auto write = [&](const Json& j) { d.write("tokenizer.json", j.dump()); };
  write(tiny_tokenizer_json());
  EXPECT_EQ(BpeTokenizer::load(d.path).encode("aab<|endoftext|>"), (std::vector<TokenId>{0, 2, 3}));

  Json j = tiny_tokenizer_json();
  // Json(...) around the pair: a braced vector holding one vector is a copy of
  // it under clang (CWG 2137), a one-element list under gcc.
  j["model"]["merges"] = Json::Array{Json(Json::Array{Json("a"), Json("z")})};
  write(j);
  expect_error(file, {"tokenizer.json", "model.merges[0]", "\"z\" is not in the vocabulary"});
  j = tiny_tokenizer_json();
  j["model"]["merges"] = Json::Array{Json(7)};
  write(j);
  expect_error(file, {"model.merges[0]", "not a pair of tokens"});
  j = tiny_tokenizer_json();
  j["model"]["type"] = "WordPiece";
  write(j);
  expect_error(file, {"tokenizer.json", "not BPE"});
  j = tiny_tokenizer_json();
  j["model"]["unk_token"] = "<unk>";
  write(j);
  expect_error(file, {"model.unk_token", "not supported"});
  j = tiny_tokenizer_json();
  j["model"]["byte_fallback"] = true;
  write(j);
  expect_error(file, {"byte_fallback", "not supported"});
  j = tiny_tokenizer_json();
  j["normalizer"] = Json::Object{{"type", "NFC"}};
  write(j);
  expect_error(file, {"\"normalizer\" is not supported"});
  j = tiny_tokenizer_json();
  j["pre_tokenizer"] = Json::Object{{"type", "Whitespace"}};
  write(j);
  expect_error(file, {"pre_tokenizer must be ByteLevel"});
  j = tiny_tokenizer_json();
  j["decoder"] = nullptr;
  write(j);
  expect_error(file, {"decoder must be ByteLevel"});
  j = tiny_tokenizer_json();
  j["post_processor"] = cb::json_parse(
      R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
          {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}})");
  write(j);
  expect_error(file, {"post_processor TemplateProcessing adds tokens"});
  j = tiny_tokenizer_json();
  j["added_tokens"].as_array()[0]["single_word"] = true;
  write(j);
  expect_error(file, {"added_tokens[0]", "single_word"});
  j = tiny_tokenizer_json();
  j["added_tokens"].as_array()[0]["id"] = 1;
  j["added_tokens"].as_array()[0]["content"] = "<new>";
  write(j);
  expect_error(file, {"added_tokens[0]", "id 1 is given to both \"b\" and \"<new>\""});
  j = tiny_tokenizer_json();
  j.as_object().erase("model");
  write(j);
  expect_error(file, {"tokenizer.json", "missing \"model\""});
  d.write("tokenizer.json", "{\"model\": ");
  expect_error(file, {"tokenizer.json"});
}

// ---------------------------------------------------------------------------
// codebook tokenize

struct Piped {
  int code;
  std::string out;
};

Piped tokenize_cli(const std::string& args, const std::string& input) {
  TempDir d;
  d.write("input", input);
  cb::test::Result r = cb::test::run_tool("tokenize " + args + " < " + (d.path / "input").string());
  return {r.code, r.out};
}

const std::string kTok = "--tokenizer " + kGpt2.string();

TEST(TokenizeCommand, IdsOffsetsAndDecode) {
  ASSERT_TRUE(fs::exists(CB_CODEBOOK_BIN)) << "build the codebook tool first";
  cb::test::Result help = cb::test::run_tool("tokenize --help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("usage: codebook tokenize"), std::string::npos) << help.out;
  Piped r = tokenize_cli(kTok, "Hello world<|endoftext|>");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "15496,995,50256\n");
  r = tokenize_cli(kTok + " --offsets", "Hello world");
  EXPECT_EQ(r.out, "15496,995\n0:5 5:11\n");
  r = tokenize_cli(kTok + " --decode", "15496 995\n50256 ");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "Hello world<|endoftext|>");
  r = tokenize_cli(kTok + " --decode --skip-special", "15496 50256 995");
  EXPECT_EQ(r.out, "Hello world");
}

TEST(TokenizeCommand, RoundTripsText) {
  const std::string text = "Caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\n\n  tabs\there\n";
  Piped ids = tokenize_cli(kTok + " --keep-newline", text);
  ASSERT_EQ(ids.code, 0) << ids.out;
  Piped back = tokenize_cli(kTok + " --decode", ids.out);
  EXPECT_EQ(back.code, 0) << back.out;
  EXPECT_EQ(back.out, text);
}

TEST(TokenizeCommand, Jsonl) {
  Piped r = tokenize_cli(kTok + " --jsonl", "\"Hello world\"\n\"\\u65e5\"\n\"\"\n");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "[15496,995]\n[33768,98]\n[]\n");
  r = tokenize_cli(kTok + " --jsonl --offsets", "\"\\u65e5\"\n");
  EXPECT_EQ(r.out, "{\"ids\":[33768,98],\"offsets\":[[0,2],[2,3]]}\n");
  r = tokenize_cli(kTok + " --jsonl --decode", "[15496,995]\n[33768]\n[50256]\n");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out, "\"Hello world\"\n\"\xEF\xBF\xBD\"\n\"<|endoftext|>\"\n");
}

TEST(TokenizeCommand, BadInputIsOneErrorLine) {
  auto expect_bad = [](const std::string& args, const std::string& input, const std::string& part) {
    Piped r = tokenize_cli(args, input);
    EXPECT_EQ(r.code, 2) << args << ": " << r.out;
    EXPECT_EQ(r.out.rfind("error: ", 0), 0u) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_NE(r.out.find(part), std::string::npos) << r.out;
  };
  expect_bad(kTok, "ok \xFF", "byte offset 3");
  expect_bad(kTok + " --decode", "15496 x1", "x1");
  expect_bad(kTok + " --decode", "15496 50257", "50257");
  expect_bad(kTok + " --jsonl", "\"fine\"\n{\"text\": 1}\n", "line 2");
  expect_bad(kTok + " --jsonl", "\"unterminated\n", "line 1");
  expect_bad(kTok + " --jsonl --decode", "[1, \"a\"]\n", "line 1");
  expect_bad("--tokenizer /nonexistent", "x", "/nonexistent");
  expect_bad("", "x", "--tokenizer");
}

}  // namespace
