// codebook tokenize --tokenizer DIR: text on stdin -> token ids on stdout, or
// back with --decode, using the byte-level BPE tokenizer (frontend/bpe_tokenizer.h).
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "frontend/bpe_tokenizer.h"
#include "support/error.h"
#include "support/json.h"
#include "tools/command.h"

namespace po = boost::program_options;

namespace cb::tools {

namespace {

const char* const kDescription = R"(
Reads standard input and writes standard output:
  (default)          the whole input is one text, less one trailing newline
                     (`echo` adds it; --keep-newline keeps it); prints its ids
                     separated by commas on one line, as `run --tokens` takes
                     them (with --offsets, a second line of begin:end byte
                     offsets, one per token)
  --decode           the input is token ids separated by commas and/or
                     whitespace; prints their text, nothing added
  --jsonl            each input line is a JSON string; each output line the JSON
                     list of its ids (with --offsets, {"ids": [...], "offsets":
                     [[begin, end], ...]})
  --jsonl --decode   each input line is a JSON list of ids; each output line
                     the JSON string of their text
Offsets are [begin, end) byte offsets into the UTF-8 text. Input that is not
valid UTF-8, a malformed line or an unknown id is an error (exit code 2).
)";

std::string read_stdin() {
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) data.append(buf, n);
  CB_CHECK(!std::ferror(stdin), "cannot read standard input");
  return data;
}

// Calls f(line, line_number) for each line (without its '\n'); no call for the
// empty piece after a final newline.
template <class F>
void for_each_line(const std::string& input, F&& f) {
  size_t line_number = 0;
  for (size_t pos = 0; pos < input.size();) {
    size_t eol = input.find('\n', pos);
    if (eol == std::string::npos) eol = input.size();
    f(std::string_view(input).substr(pos, eol - pos), ++line_number);
    pos = eol + 1;
  }
}

std::string ids_text(const std::vector<TokenId>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  return out;
}

Json ids_json(const std::vector<TokenId>& ids) {
  Json::Array a;
  a.reserve(ids.size());
  for (TokenId id : ids) a.emplace_back(id);
  return Json(std::move(a));
}

std::string encode_text(const BpeTokenizer& tok, const std::string& input, bool offsets) {
  Encoding e = tok.encode_with_offsets(input);
  std::string out = ids_text(e.ids) + "\n";
  if (offsets) {
    for (size_t i = 0; i < e.offsets.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(e.offsets[i].begin);
      out += ':';
      out += std::to_string(e.offsets[i].end);
    }
    out += "\n";
  }
  return out;
}

std::string decode_text(const BpeTokenizer& tok, const std::string& input, bool skip_special) {
  std::vector<TokenId> ids;
  size_t index = 0;
  const char* const separators = ", \t\r\n";
  for (size_t pos = input.find_first_not_of(separators); pos != std::string::npos;
       pos = input.find_first_not_of(separators, pos)) {
    size_t end = input.find_first_of(separators, pos);
    if (end == std::string::npos) end = input.size();
    const std::string word = input.substr(pos, end - pos);
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    CB_CHECK(used == word.size() && !word.empty() && (std::isdigit(uint8_t(word[0])) || word[0] == '-'),
             "input word " << index << " \"" << word << "\" is not a token id");
    ids.push_back(id);
    ++index;
    pos = end;
  }
  return tok.decode(ids, skip_special);
}

std::string encode_jsonl(const BpeTokenizer& tok, const std::string& input, bool offsets) {
  std::string result;
  for_each_line(input, [&](std::string_view line, size_t n) {
    const std::string where = "stdin line " + std::to_string(n);
    const Json text = json_parse(line, where);
    CB_CHECK(text.is_string(), where << ": expected a JSON string, found " << Json::type_name(text.type()));
    Encoding e;
    try {
      e = tok.encode_with_offsets(text.as_string());
    } catch (const Error& err) {
      CB_FAIL(where << ": " << err.what());
    }
    Json out = ids_json(e.ids);
    if (offsets) {
      Json::Array spans;
      for (const ByteSpan& s : e.offsets) spans.emplace_back(Json::Array{Json(s.begin), Json(s.end)});
      out = Json(Json::Object{{"ids", std::move(out)}, {"offsets", Json(std::move(spans))}});
    }
    result += out.dump() + "\n";
  });
  return result;
}

std::string decode_jsonl(const BpeTokenizer& tok, const std::string& input, bool skip_special) {
  std::string result;
  for_each_line(input, [&](std::string_view line, size_t n) {
    const std::string where = "stdin line " + std::to_string(n);
    const Json list = json_parse(line, where);
    CB_CHECK(list.is_array(), where << ": expected a JSON list of token ids, found " << Json::type_name(list.type()));
    std::vector<TokenId> ids;
    for (const Json& v : list.as_array()) {
      CB_CHECK(v.is_integer(), where << ": expected a JSON list of token ids, found " << v.dump() << " in it");
      ids.push_back(v.as_int());
    }
    std::string text;
    try {
      text = tok.decode(ids, skip_special);
    } catch (const Error& err) {
      CB_FAIL(where << ": " << err.what());
    }
    result += Json(text).dump() + "\n";
  });
  return result;
}

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  po::options_description opts("usage: codebook tokenize --tokenizer DIR [options] < INPUT\n\noptions");
  opts.add_options()("help,h", "show this help")(
      "tokenizer", po::value<std::string>(),
      "directory with tokenizer.json or vocab.json + merges.txt, or a tokenizer.json file")(
      "decode", po::bool_switch(), "read token ids, write text")(
      "jsonl", po::bool_switch(), "one JSON value per line in and out")("offsets", po::bool_switch(),
                                                                        "also write each token's byte offsets")(
      "skip-special", po::bool_switch(), "with --decode: leave out special tokens such as <|endoftext|>")(
      "keep-newline", po::bool_switch(), "encode the input's trailing newline too (by default one is dropped)");
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
  if (vm.count("help")) {
    std::cout << opts << kDescription;
    return 0;
  }
  po::notify(vm);
  if (!vm.count("tokenizer")) throw po::error("missing --tokenizer DIR");
  const bool decode = vm["decode"].as<bool>(), jsonl = vm["jsonl"].as<bool>();
  const bool offsets = vm["offsets"].as<bool>(), skip_special = vm["skip-special"].as<bool>();
  if (decode && offsets) throw po::error("--offsets only applies when encoding");
  if (skip_special && !decode) throw po::error("--skip-special only applies with --decode");
  const bool keep_newline = vm["keep-newline"].as<bool>();
  if (keep_newline && (decode || jsonl)) throw po::error("--keep-newline only applies when encoding plain text");

  const BpeTokenizer tok = BpeTokenizer::load(vm["tokenizer"].as<std::string>());
  std::string input = read_stdin();
  // `echo text |` ends the text with a newline nobody means to tokenise.
  if (!decode && !jsonl && !keep_newline && !input.empty() && input.back() == '\n') {
    input.pop_back();
    if (!input.empty() && input.back() == '\r') input.pop_back();
  }
  // All or nothing: bad input anywhere prints only the error.
  const std::string output =
      decode ? (jsonl ? decode_jsonl(tok, input, skip_special) : decode_text(tok, input, skip_special))
             : (jsonl ? encode_jsonl(tok, input, offsets) : encode_text(tok, input, offsets));
  std::fwrite(output.data(), 1, output.size(), stdout);
  std::fflush(stdout);
  CB_CHECK(!std::ferror(stdout), "cannot write standard output");
  return 0;
}

}  // namespace cb::tools
