#include "tools/text_io.h"

#include <array>
#include <filesystem>
#include <map>

#include "support/error.h"
#include "support/json.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;

namespace cb::tools {

namespace {

constexpr const char* kTokfsm = "tokfsm";
constexpr const char* kEndOfText = "<|endoftext|>";

// The byte a GPT-2 byte-level character (UTF-8) stands for, or -1.
int byte_of_level_char(const std::string& ch) {
  static const std::map<std::string, int> inverse = [] {
    std::map<std::string, int> m;
    for (int b = 0; b < 256; ++b) m[byte_level_char(uint8_t(b))] = b;
    return m;
  }();
  auto it = inverse.find(ch);
  return it == inverse.end() ? -1 : it->second;
}

// Length of the valid UTF-8 sequence starting at s[i], or 0.
size_t utf8_length(const std::string& s, size_t i) {
  uint8_t c = uint8_t(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t j = 1; j < n; ++j)
    if ((uint8_t(s[i + j]) & 0xC0) != 0x80) return 0;
  return n;
}

std::optional<std::string> spec_from_run_config(const Json& config) {
  const Json* data = config.find("dataset_args");
  if (!data) return std::nullopt;
  const Json* kind = data->find("kind");
  if (kind && kind->is_string() && kind->as_string() == kTokfsm) {
    const Json* fsm = config.find("fsm_args");
    const Json* base = fsm ? fsm->find("representation_base") : nullptr;
    return std::string(kTokfsm) + ":" + std::to_string(base && base->is_integer() ? base->as_int() : 10);
  }
  const Json* tok = data->find("tokenizer");
  if (tok && tok->is_string() && !tok->as_string().empty()) return tok->as_string();
  return std::nullopt;
}

// The resolved config of the training run or checkpoint folder `dir`, if any.
std::optional<Json> run_config(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "trainer_state.json", ec))
    return json_read_file((dir / "trainer_state.json").string()).at("config");
  if (list_checkpoints(dir.string()).empty()) return std::nullopt;
  return find_checkpoint(dir.string()).trainer_state.at("config");
}

bool is_tokfsm_spec(const std::string& spec) {
  return spec.rfind(kTokfsm, 0) == 0 && (spec.size() == 6 || spec[6] == ':');
}

}  // namespace

TokenText TokenText::load(const std::string& spec) {
  TokenText t;
  t.spec_ = spec;
  if (is_tokfsm_spec(spec)) {
    if (spec.size() > 6) {
      std::string base = spec.substr(7);
      CB_CHECK(!base.empty() && base.find_first_not_of("0123456789") == std::string::npos && base.size() <= 2 &&
                   std::stoi(base) >= 2 && std::stoi(base) <= 36,
               "tokenizer '" << spec << "': expected tokfsm or tokfsm:BASE with BASE 2..36");
      t.base_ = std::stoi(base);
    }
    return t;
  }
  t.bpe_ = std::make_shared<const BpeTokenizer>(BpeTokenizer::load(spec));
  return t;
}

std::vector<int64_t> TokenText::encode(const std::string& text) const {
  if (bpe_) return bpe_->encode(text);
  std::vector<int64_t> ids = {base_};
  for (size_t i = 0; i < text.size(); ++i) {
    char c = char(std::toupper(uint8_t(text[i])));
    int64_t d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'Z' ? c - 'A' + 10 : -1;
    CB_CHECK(d >= 0 && d < base_, "--prompt: character " << i << " '" << text[i] << "' is not a base-" << base_
                                                         << " digit (TokFSM prompts are digits, one token each)");
    ids.push_back(d);
  }
  return ids;
}

int64_t TokenText::document_start_id() const {
  if (!bpe_) return base_;
  std::optional<TokenId> id = bpe_->token_to_id(kEndOfText);
  return id ? *id : -1;
}

TokenText::Document TokenText::encode_document(const std::string& text) const {
  Document d;
  if (int64_t start = document_start_id(); start >= 0) {
    d.ids.push_back(start);
    d.starts.push_back(0);
  }
  if (!bpe_) {
    std::vector<int64_t> ids = encode(text);  // BOS, then one token per digit
    for (size_t i = 1; i < ids.size(); ++i) {
      d.ids.push_back(ids[i]);
      d.starts.push_back(int64_t(i - 1));
    }
    return d;
  }
  Encoding e = bpe_->encode_with_offsets(text);
  for (size_t i = 0; i < e.ids.size(); ++i) {
    d.ids.push_back(e.ids[i]);
    d.starts.push_back(e.offsets[i].begin);
  }
  return d;
}

std::string TokenText::token_bytes(int64_t id) const {
  if (!bpe_) {
    CB_CHECK(id >= 0 && id <= base_, "token id " << id << " is not in the TokFSM vocabulary of " << base_ + 1);
    if (id == base_) return kEndOfText;
    return std::string(1, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[id]);
  }
  CB_CHECK(id >= 0 && id < bpe_->vocab_size(), "token id " << id << " is not in the tokenizer's vocabulary");
  for (const AddedToken& a : bpe_->added_tokens())
    if (a.id == id) return a.content;
  // Byte-level characters back to the bytes they stand for.
  const std::string& level = bpe_->id_to_token(id);
  std::string bytes;
  for (size_t i = 0; i < level.size();) {
    size_t n = std::max<size_t>(1, utf8_length(level, i));
    int b = byte_of_level_char(level.substr(i, n));
    if (b < 0) return bpe_->decode(std::vector<TokenId>{id});
    bytes += char(b);
    i += n;
  }
  return bytes;
}

std::string TokenText::shown(int64_t id) const {
  bool known = bpe_ ? id >= 0 && id < bpe_->vocab_size() : id >= 0 && id <= base_;
  return known ? escape_bytes(token_bytes(id)) : "?";
}

std::string TokenText::json(int64_t id) const {
  bool known = bpe_ ? id >= 0 && id < bpe_->vocab_size() : id >= 0 && id <= base_;
  if (!known) return "null";
  return Json(bpe_ ? bpe_->decode(std::vector<TokenId>{id}) : token_bytes(id)).dump();
}

std::string escape_bytes(const std::string& bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < bytes.size();) {
    uint8_t c = uint8_t(bytes[i]);
    size_t n = utf8_length(bytes, i);
    if (c == '"' || c == '\\')
      out += std::string("\\") + char(c);
    else if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (n == 0 || c < 0x20 || c == 0x7f)
      out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    else {
      out += bytes.substr(i, n);
      i += n;
      continue;
    }
    ++i;
  }
  return out + "\"";
}

std::optional<std::string> model_tokenizer(const std::optional<std::string>& given, const std::string& model_arg,
                                           const std::map<std::string, std::string>& metadata) {
  if (given) return given;
  auto meta = metadata.find(kTokenizerMetadataKey);
  return recorded_tokenizer(model_arg, meta == metadata.end() ? "" : meta->second);
}

std::optional<std::string> recorded_tokenizer(const std::string& model_arg, const std::string& metadata_spec) {
  std::error_code ec;
  fs::path p(model_arg);
  fs::path dir = fs::is_directory(p, ec) ? p : p.parent_path();
  if (dir.empty()) dir = ".";
  // The run's data is what the model was trained on, whatever its input model recorded.
  if (std::optional<Json> config = run_config(dir))
    if (std::optional<std::string> spec = spec_from_run_config(*config)) return spec;
  if (!metadata_spec.empty()) return metadata_spec;
  // A Hugging Face folder that ships its tokenizer.
  if (fs::exists(dir / "tokenizer.json", ec) ||
      (fs::exists(dir / "vocab.json", ec) && fs::exists(dir / "merges.txt", ec)))
    return dir.string();
  return std::nullopt;
}

std::string absolute_tokenizer_spec(const std::string& spec) {
  if (is_tokfsm_spec(spec)) return spec;
  std::error_code ec;
  fs::path abs = fs::weakly_canonical(fs::absolute(spec), ec);
  return ec ? spec : abs.string();
}

}  // namespace cb::tools
