// The byte-level BPE tokenizer of frontend/bpe_tokenizer.h: loading (vocab.json
// + merges.txt, or tokenizer.json), added-token splitting, the GPT-2
// pre-tokenizer, BPE merging as Hugging Face `tokenizers` does it, and decoding.
#include "frontend/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "support/error.h"
#include "support/input_file.h"
#include "support/json.h"
#include "support/utf8.h"

namespace cb {

namespace {

// ---------------------------------------------------------------------------
// Unicode classes of the pre-tokenization regex

enum CharClass : uint8_t { kOther = 0, kLetter, kNumber, kSpace };

struct ClassRange {
  char32_t first, last;
  CharClass cls;
};

constexpr ClassRange kClassRanges[] = {
#include "frontend/unicode_tables.inc"
};

// Two-level lookup built once from the ranges: 256-code-point blocks, shared
// when equal (most blocks are all "other" or all letters).
class ClassTable {
 public:
  ClassTable() {
    std::vector<uint8_t> flat(0x110000, kOther);
    for (const ClassRange& r : kClassRanges) std::fill(flat.begin() + r.first, flat.begin() + r.last + 1, r.cls);
    std::map<std::array<uint8_t, 256>, uint16_t> seen;
    for (size_t b = 0; b < kBlocks; ++b) {
      std::array<uint8_t, 256> block;
      std::copy_n(flat.begin() + b * 256, 256, block.begin());
      auto [it, fresh] = seen.emplace(block, uint16_t(blocks_.size()));
      if (fresh) blocks_.push_back(block);
      block_index_[b] = it->second;
    }
  }
  CharClass operator()(char32_t cp) const { return CharClass(blocks_[block_index_[cp >> 8]][cp & 0xFF]); }

 private:
  static constexpr size_t kBlocks = 0x110000 / 256;
  std::array<uint16_t, kBlocks> block_index_{};
  std::vector<std::array<uint8_t, 256>> blocks_;
};

const ClassTable& char_classes() {
  static const ClassTable table;
  return table;
}

// ---------------------------------------------------------------------------
// GPT-2 pre-tokenization: the regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// as Oniguruma matches it (leftmost alternative first, greedy runs), on valid
// UTF-8. Calls emit(begin, end) for each piece of s[begin, end).
template <class Emit>
void split_gpt2_pieces(std::string_view s, size_t begin, size_t end, Emit&& emit) {
  const ClassTable& classes = char_classes();
  const auto* u = reinterpret_cast<const uint8_t*>(s.data());
  auto class_at = [&](size_t i, size_t* len) {
    if (u[i] < 0x80) return *len = 1, classes(u[i]);
    return classes(utf8_decode_valid(u + i, len));
  };
  size_t p = begin;
  while (p < end) {
    size_t len;
    const CharClass c = class_at(p, &len);
    if (u[p] == '\'' && p + 1 < end) {  // contractions
      const uint8_t a = u[p + 1];
      if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        emit(p, p + 2), p += 2;
        continue;
      }
      if (p + 2 < end) {
        const uint8_t b = u[p + 2];
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
          emit(p, p + 3), p += 3;
          continue;
        }
      }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: a run of one class, after an optional space.
    size_t run_start = p;
    CharClass run_class = c;
    if (u[p] == ' ' && p + 1 < end) {
      size_t next_len;
      const CharClass next = class_at(p + 1, &next_len);
      if (next != kSpace) run_start = p + 1, run_class = next;
    }
    if (run_class != kSpace) {
      size_t r = run_start, n;
      while (r < end && class_at(r, &n) == run_class) r += n;
      emit(p, r), p = r;
      continue;
    }
    // `\s+(?!\S)|\s+`: a whitespace run; when a non-space follows, the run
    // leaves its last character to start the next piece (unless it is alone).
    size_t r = p, last = p, n;
    while (r < end && class_at(r, &n) == kSpace) last = r, r += n;
    const size_t stop = (r == end || last == p) ? r : last;
    emit(p, stop), p = stop;
  }
}

// ---------------------------------------------------------------------------
// GPT-2's byte <-> printable character map

struct ByteLevelMap {
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 0x200> char_to_byte;  // code points < 0x200; -1 when none
  ByteLevelMap() {
    char_to_byte.fill(-1);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? char32_t(b) : char32_t(0x100 + next++);
      utf8_append(byte_to_utf8[b], cp);
      char_to_byte[cp] = int16_t(b);
    }
  }
};

const ByteLevelMap& byte_level_map() {
  static const ByteLevelMap map;
  return map;
}

// The bytes a token stands for, as the ByteLevel decoder sees it: its
// characters mapped back to bytes when all of them are byte characters,
// otherwise the token's own UTF-8.
std::string token_bytes(const std::string& token) {
  const ByteLevelMap& m = byte_level_map();
  std::string out;
  const auto* u = reinterpret_cast<const uint8_t*>(token.data());
  for (size_t i = 0; i < token.size();) {
    size_t len = utf8_sequence_length(token, i);
    if (len == 0) return token;
    const char32_t cp = utf8_decode_valid(u + i, &len);
    if (cp >= m.char_to_byte.size() || m.char_to_byte[cp] < 0) return token;
    out += char(m.char_to_byte[cp]);
    i += len;
  }
  return out;
}

std::string read_text_file(const std::filesystem::path& path, const char* what) {
  return read_input_file(path.string(), what);
}

std::string quoted(std::string_view s) { return Json(std::string(s)).dump(); }

}  // namespace

const std::string& byte_level_char(uint8_t byte) { return byte_level_map().byte_to_utf8[byte]; }

std::vector<ByteSpan> gpt2_pretokenize(std::string_view text) {
  const int64_t bad = utf8_first_invalid(text);
  CB_CHECK(bad < 0, "text to pre-tokenize is not valid UTF-8 at byte offset " << bad);
  std::vector<ByteSpan> pieces;
  split_gpt2_pieces(text, 0, text.size(), [&](size_t b, size_t e) { pieces.push_back({int64_t(b), int64_t(e)}); });
  return pieces;
}

// ---------------------------------------------------------------------------
// The tokenizer

struct BpeTokenizer::Impl {
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  // One BPE output token of a piece: its id and its bytes [begin, end) in the piece.
  struct PieceToken {
    int32_t id;
    int32_t begin, end;
  };

  std::string source;
  std::unordered_map<std::string, int32_t> vocab;  // model vocabulary
  std::vector<std::string> tokens;                 // by id; added tokens' content included
  std::vector<bool> has_id;
  std::unordered_map<uint64_t, Merge> merges;               // key (left id << 32 | right id)
  std::array<int32_t, 256> byte_ids{};                      // id of each byte's character, -1 if missing
  std::vector<AddedToken> added;                            // longest first
  std::array<std::array<bool, 256>, 2> added_first_byte{};  // [normalized][first byte of an added token]
  std::vector<bool> special;                                // by id
  std::vector<std::string> decoded;                         // by id: the bytes decode() emits
  bool add_prefix_space = false;
  bool use_regex = true;
  bool ignore_merges = false;

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<PieceToken>> cache;
  static constexpr size_t kMaxCachedPiece = 256, kMaxCacheEntries = 1 << 18;

  static uint64_t pair_key(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 32 | uint32_t(b); }

  // -- building ---------------------------------------------------------------

  void set_token(int64_t id, const std::string& token, const std::string& where) {
    CB_CHECK(id >= 0 && id < (1 << 30), where << ": token id " << id << " of " << quoted(token) << " is out of range");
    if (size_t(id) >= tokens.size()) tokens.resize(size_t(id) + 1), has_id.resize(size_t(id) + 1);
    CB_CHECK(!has_id[size_t(id)] || tokens[size_t(id)] == token,
             where << ": id " << id << " is given to both " << quoted(tokens[size_t(id)]) << " and " << quoted(token));
    tokens[size_t(id)] = token;
    has_id[size_t(id)] = true;
  }

  void add_vocab(const Json& vocab_json, const std::string& where) {
    CB_CHECK(vocab_json.is_object(), where << ": the vocabulary must be a JSON object of token -> id, not "
                                           << Json::type_name(vocab_json.type()));
    vocab.reserve(vocab_json.size());
    for (const auto& [token, id] : vocab_json.as_object()) {
      CB_CHECK(id.is_integer(), where << ": the id of token " << quoted(token) << " is not an integer");
      set_token(id.as_int(), token, where);
      vocab.emplace(token, int32_t(id.as_int()));
    }
    CB_CHECK(!vocab.empty(), where << ": the vocabulary is empty");
  }

  // Merges in rank order; a pair listed twice keeps its last rank, as HF does.
  void add_merge(const std::string& left, const std::string& right, size_t rank, const std::string& where) {
    auto id_of = [&](const std::string& t) {
      auto it = vocab.find(t);
      CB_CHECK(it != vocab.end(), where << ": merge " << rank << " (" << quoted(left) << ", " << quoted(right)
                                        << "): token " << quoted(t) << " is not in the vocabulary");
      return it->second;
    };
    const int32_t a = id_of(left), b = id_of(right), merged = id_of(left + right);
    merges.insert_or_assign(pair_key(a, b), Merge{int32_t(rank), merged});
  }

  void add_added_token(AddedToken t, const std::string& where) {
    if (t.content.empty()) return;  // HF ignores empty added tokens
    auto in_model = vocab.find(t.content);
    if (in_model != vocab.end()) t.id = in_model->second;  // HF gives it the model's id
    set_token(t.id, t.content, where);
    for (const AddedToken& other : added)
      CB_CHECK(other.content != t.content, where << ": added token " << quoted(t.content) << " is listed twice");
    added.push_back(std::move(t));
  }

  void finish() {
    const ByteLevelMap& m = byte_level_map();
    for (int b = 0; b < 256; ++b) {
      auto it = vocab.find(m.byte_to_utf8[size_t(b)]);
      byte_ids[size_t(b)] = it == vocab.end() ? -1 : it->second;
    }
    decoded.resize(tokens.size());
    for (size_t id = 0; id < tokens.size(); ++id)
      if (has_id[id]) decoded[id] = token_bytes(tokens[id]);
    // Longest first: the first added token matching at a position is the longest there.
    std::stable_sort(added.begin(), added.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    special.assign(tokens.size(), false);
    for (const AddedToken& t : added) {
      added_first_byte[t.normalized][uint8_t(t.content[0])] = true;
      special[size_t(t.id)] = t.special;
    }
  }

  // -- encoding ---------------------------------------------------------------

  // BPE of one piece, exactly as HF's Word::merge_all: a queue of candidate
  // merges ordered by (rank, position); a popped merge applies only if the two
  // symbols there still form a pair merging into the same token.
  std::vector<PieceToken> merge_piece(std::string_view piece) const {
    if (ignore_merges) {  // a piece that is a token of its own is not merged
      std::string mapped;
      for (char ch : piece) mapped += byte_level_char(uint8_t(ch));
      auto it = vocab.find(mapped);
      if (it != vocab.end()) return {{it->second, 0, int32_t(piece.size())}};
    }
    struct Symbol {
      int32_t id, prev, next, begin, end;  // id -1: merged into the symbol on its left
    };
    std::vector<Symbol> symbols;
    symbols.reserve(piece.size());
    for (size_t i = 0; i < piece.size(); ++i) {
      const int32_t id = byte_ids[uint8_t(piece[i])];
      if (id < 0) continue;  // not in the vocabulary and no unknown token: HF drops it
      const int32_t n = int32_t(symbols.size());
      if (n) symbols.back().next = n;
      symbols.push_back({id, n - 1, -1, int32_t(i), int32_t(i + 1)});
    }
    struct Candidate {
      int32_t rank, pos, new_id;
      bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto consider = [&](int32_t pos) {
      const Symbol& s = symbols[size_t(pos)];
      auto it = merges.find(pair_key(s.id, symbols[size_t(s.next)].id));
      if (it != merges.end()) queue.push({it->second.rank, pos, it->second.new_id});
    };
    for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) consider(i);
    while (!queue.empty()) {
      const Candidate top = queue.top();
      queue.pop();
      Symbol& s = symbols[size_t(top.pos)];
      if (s.id < 0 || s.next < 0) continue;
      Symbol& right = symbols[size_t(s.next)];
      auto it = merges.find(pair_key(s.id, right.id));
      if (it == merges.end() || it->second.new_id != top.new_id) continue;
      s.id = top.new_id;
      s.end = right.end;
      s.next = right.next;
      right.id = -1;
      if (s.next >= 0) symbols[size_t(s.next)].prev = top.pos;
      if (s.prev >= 0) consider(s.prev);
      if (s.next >= 0) consider(top.pos);
    }
    std::vector<PieceToken> out;
    for (const Symbol& s : symbols)
      if (s.id >= 0) out.push_back({s.id, s.begin, s.end});
    return out;
  }

  std::vector<PieceToken> piece_tokens(std::string_view piece) const {
    if (piece.size() > kMaxCachedPiece) return merge_piece(piece);
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      auto it = cache.find(std::string(piece));
      if (it != cache.end()) return it->second;
    }
    std::vector<PieceToken> result = merge_piece(piece);
    std::lock_guard<std::mutex> lock(cache_mutex);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.emplace(std::string(piece), result);
    return result;
  }

  // Tokens of the piece, whose byte k is input byte `input_begin + k - prefix`
  // (prefix = 1 when a space was prepended, which spans no input bytes).
  void encode_piece(std::string_view piece, int64_t input_begin, int64_t prefix, Encoding& out) const {
    for (const PieceToken& t : piece_tokens(piece)) {
      out.ids.push_back(t.id);
      out.offsets.push_back({input_begin + std::max<int64_t>(t.begin - prefix, 0), input_begin + t.end - prefix});
    }
  }

  // Pre-tokenizes and encodes text[begin, end), a span without added tokens.
  void encode_span(std::string_view text, size_t begin, size_t end, Encoding& out) const {
    if (begin == end) return;
    if (add_prefix_space && text[begin] != ' ') {
      std::string prefixed(1, ' ');
      prefixed.append(text.substr(begin, end - begin));
      auto emit = [&](size_t b, size_t e) {
        encode_piece(std::string_view(prefixed).substr(b, e - b), int64_t(begin) + int64_t(b) - (b == 0 ? 0 : 1),
                     b == 0 ? 1 : 0, out);
      };
      if (use_regex)
        split_gpt2_pieces(prefixed, 0, prefixed.size(), emit);
      else
        emit(0, prefixed.size());
      return;
    }
    auto emit = [&](size_t b, size_t e) { encode_piece(text.substr(b, e - b), int64_t(b), 0, out); };
    if (use_regex)
      split_gpt2_pieces(text, begin, end, emit);
    else
      emit(begin, end);
  }

  // HF's AddedVocabulary::find_matches over text[begin, end) with the added
  // tokens whose `normalized` flag is `normalized`: leftmost-longest matches;
  // lstrip/rstrip widen a match over neighbouring whitespace. Each split is
  // {begin, end, added token or nullptr}.
  struct Split {
    size_t begin, end;
    const AddedToken* token;
  };
  void find_added(std::string_view text, size_t begin, size_t end, bool normalized, std::vector<Split>& out) const {
    const ClassTable& classes = char_classes();
    auto is_space_at = [&](size_t i, size_t* len) {
      return classes(utf8_decode_valid(reinterpret_cast<const uint8_t*>(text.data()) + i, len)) == kSpace;
    };
    size_t start_offset = begin;
    for (size_t i = begin; i < end;) {
      if (!added_first_byte[normalized][uint8_t(text[i])]) {
        ++i;
        continue;
      }
      const AddedToken* match = nullptr;
      for (const AddedToken& t : added)
        if (t.normalized == normalized && t.content.size() <= end - i &&
            std::memcmp(text.data() + i, t.content.data(), t.content.size()) == 0) {
          match = &t;
          break;
        }
      if (!match) {
        ++i;
        continue;
      }
      size_t start = i, stop = i + match->content.size();
      i = stop;
      if (match->lstrip) {
        size_t s = start;
        while (s > begin) {
          size_t prev = s - 1, len;
          while (prev > begin && (uint8_t(text[prev]) & 0xC0) == 0x80) --prev;
          if (!is_space_at(prev, &len)) break;
          s = prev;
        }
        start = std::max(s, start_offset);
      }
      if (match->rstrip) {
        size_t len;
        while (stop < end && is_space_at(stop, &len)) stop += len;
      }
      if (start_offset < start) out.push_back({start_offset, start, nullptr});
      out.push_back({start, stop, match});
      start_offset = stop;
    }
    if (start_offset < end) out.push_back({start_offset, end, nullptr});
  }

  Encoding encode(std::string_view text) const {
    const int64_t bad = utf8_first_invalid(text);
    CB_CHECK(bad < 0, "text to tokenize is not valid UTF-8: byte 0x" << std::hex << int(uint8_t(text[size_t(bad)]))
                                                                     << std::dec << " at byte offset " << bad);
    Encoding out;
    out.ids.reserve(text.size() / 3);
    out.offsets.reserve(text.size() / 3);
    std::vector<Split> outer, inner;
    if (added.empty()) {
      outer.push_back({0, text.size(), nullptr});
    } else {
      find_added(text, 0, text.size(), false, outer);
    }
    for (const Split& s : outer) {
      if (s.token) {
        out.ids.push_back(s.token->id);
        out.offsets.push_back({int64_t(s.begin), int64_t(s.end)});
        continue;
      }
      inner.clear();
      if (added.empty())
        inner.push_back(s);
      else
        find_added(text, s.begin, s.end, true, inner);
      for (const Split& t : inner) {
        if (t.token) {
          out.ids.push_back(t.token->id);
          out.offsets.push_back({int64_t(t.begin), int64_t(t.end)});
        } else {
          encode_span(text, t.begin, t.end, out);
        }
      }
    }
    return out;
  }
};

// ---------------------------------------------------------------------------
// Loading

namespace {

const Json& member(const Json& obj, const std::string& key, const std::string& where) {
  const Json* v = obj.find(key);
  CB_CHECK(v, where << ": missing \"" << key << "\"");
  return *v;
}

bool flag(const Json& obj, const std::string& key, bool fallback, const std::string& where) {
  const Json* v = obj.find(key);
  if (!v || v->is_null()) return fallback;
  CB_CHECK(v->is_bool(), where << ": \"" << key << "\" must be true or false, not " << v->dump());
  return v->as_bool();
}

std::string type_of(const Json& obj, const std::string& where) {
  CB_CHECK(obj.is_object(), where << ": must be an object, not " << Json::type_name(obj.type()));
  const Json* t = obj.find("type");
  CB_CHECK(t && t->is_string(), where << ": missing \"type\"");
  return t->as_string();
}

// An absent/empty string option of the BPE model, which we do not support otherwise.
void require_empty(const Json& model, const std::string& key, const std::string& where) {
  const Json* v = model.find(key);
  CB_CHECK(!v || v->is_null() || (v->is_string() && v->as_string().empty()),
           where << ": model." << key << " = " << v->dump() << " is not supported (only GPT-2 style byte-level BPE)");
}

}  // namespace

BpeTokenizer::BpeTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpeTokenizer::BpeTokenizer(BpeTokenizer&&) noexcept = default;
BpeTokenizer& BpeTokenizer::operator=(BpeTokenizer&&) noexcept = default;
BpeTokenizer::~BpeTokenizer() = default;

BpeTokenizer BpeTokenizer::load(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  CB_CHECK(fs::exists(path), path.string() << ": no such tokenizer file or directory");
  if (!fs::is_directory(path)) return from_tokenizer_json(path);
  if (fs::exists(path / "tokenizer.json")) return from_tokenizer_json(path / "tokenizer.json");
  CB_CHECK(fs::exists(path / "vocab.json") && fs::exists(path / "merges.txt"),
           path.string() << ": not a tokenizer directory (needs tokenizer.json, or vocab.json and merges.txt)");
  return from_vocab_and_merges(path / "vocab.json", path / "merges.txt");
}

BpeTokenizer BpeTokenizer::from_vocab_and_merges(const std::filesystem::path& vocab_json,
                                                 const std::filesystem::path& merges_txt) {
  auto impl = std::make_unique<Impl>();
  impl->source = vocab_json.parent_path().string();
  impl->add_vocab(json_read_file(vocab_json.string()), vocab_json.string());

  // HF's merges.txt reader: "#version" lines are skipped; every other line is
  // exactly two tokens separated by one space; ranks count the merges.
  const std::string text = read_text_file(merges_txt, "merges file");
  const std::string where = merges_txt.string();
  size_t rank = 0, line_number = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.starts_with("#version")) continue;
    const size_t space = line.find(' ');
    CB_CHECK(
        space != std::string_view::npos && line.find(' ', space + 1) == std::string_view::npos,
        where << ": line " << line_number << " is not a merge of two tokens separated by one space: " << quoted(line));
    impl->add_merge(std::string(line.substr(0, space)), std::string(line.substr(space + 1)), rank++,
                    where + ": line " + std::to_string(line_number));
  }
  // GPT-2's end-of-text token is a special added token (transformers' GPT2TokenizerFast).
  if (impl->vocab.count("<|endoftext|>"))
    impl->add_added_token({"<|endoftext|>", impl->vocab.at("<|endoftext|>"), true, false, false, false},
                          vocab_json.string());
  impl->finish();
  return BpeTokenizer(std::move(impl));
}

BpeTokenizer BpeTokenizer::from_tokenizer_json(const std::filesystem::path& tokenizer_json) {
  const std::string file = tokenizer_json.string();
  const Json root = json_read_file(file);
  CB_CHECK(root.is_object(), file << ": not a tokenizer.json (the top level is not an object)");
  auto impl = std::make_unique<Impl>();
  impl->source = file;

  for (const char* key : {"truncation", "padding", "normalizer"}) {
    const Json* v = root.find(key);
    bool empty_sequence = v && v->is_object() && v->find("normalizers") && v->at("normalizers").size() == 0;
    CB_CHECK(!v || v->is_null() || empty_sequence,
             file << ": \"" << key << "\" is not supported (must be null), found " << v->dump());
  }

  // Pre-tokenizer: ByteLevel, possibly as the only member of a Sequence.
  const Json* pre = &member(root, "pre_tokenizer", file);
  if (!pre->is_null() && type_of(*pre, file + ": pre_tokenizer") == "Sequence") {
    const Json& list = member(*pre, "pretokenizers", file + ": pre_tokenizer");
    CB_CHECK(list.is_array() && list.size() == 1,
             file << ": pre_tokenizer: only a Sequence holding one ByteLevel pre-tokenizer is supported");
    pre = &list.at(size_t(0));
  }
  CB_CHECK(!pre->is_null() && type_of(*pre, file + ": pre_tokenizer") == "ByteLevel",
           file << ": pre_tokenizer must be ByteLevel, found " << pre->dump());
  impl->add_prefix_space = flag(*pre, "add_prefix_space", false, file + ": pre_tokenizer");
  impl->use_regex = flag(*pre, "use_regex", true, file + ": pre_tokenizer");

  const Json& decoder = member(root, "decoder", file);
  CB_CHECK(!decoder.is_null() && type_of(decoder, file + ": decoder") == "ByteLevel",
           file << ": decoder must be ByteLevel, found " << decoder.dump());

  // Post-processor: nothing that adds tokens (ByteLevel only trims offsets).
  if (const Json* post = root.find("post_processor"); post && !post->is_null()) {
    const std::string type = type_of(*post, file + ": post_processor");
    bool adds_nothing = type == "ByteLevel";
    if (type == "TemplateProcessing") {
      const Json& single = member(*post, "single", file + ": post_processor");
      adds_nothing = single.is_array() && single.size() == 1 && single.at(size_t(0)).find("Sequence");
    }
    CB_CHECK(adds_nothing, file << ": post_processor " << type
                                << " adds tokens, which is not supported (only ByteLevel or a template adding none)");
  }

  const Json& model = member(root, "model", file);
  const std::string model_where = file + ": model";
  CB_CHECK(model.is_object(), model_where << " must be an object");
  if (const Json* t = model.find("type"))
    CB_CHECK(t->is_string() && t->as_string() == "BPE", model_where << ": type " << t->dump() << " is not BPE");
  for (const char* key : {"unk_token", "continuing_subword_prefix", "end_of_word_suffix"})
    require_empty(model, key, file);
  if (const Json* d = model.find("dropout"); d && !d->is_null())
    CB_CHECK(d->is_number() && d->as_double() == 0.0, model_where << ": dropout " << d->dump() << " is not supported");
  CB_CHECK(!flag(model, "byte_fallback", false, model_where), model_where << ": byte_fallback is not supported");
  impl->ignore_merges = flag(model, "ignore_merges", false, model_where);

  impl->add_vocab(member(model, "vocab", model_where), model_where + ".vocab");
  const Json& merges = member(model, "merges", model_where);
  CB_CHECK(merges.is_array(), model_where << ".merges must be an array");
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Json& m = merges.at(rank);
    const std::string where = model_where + ".merges[" + std::to_string(rank) + "]";
    if (m.is_string()) {  // "left right" (tokenizers < 0.20)
      const std::string& s = m.as_string();
      const size_t space = s.find(' ');
      CB_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
               where << ": " << m.dump() << " is not two tokens separated by one space");
      impl->add_merge(s.substr(0, space), s.substr(space + 1), rank, where);
    } else {  // ["left", "right"]
      CB_CHECK(m.is_array() && m.size() == 2 && m.at(size_t(0)).is_string() && m.at(size_t(1)).is_string(),
               where << ": " << m.dump() << " is not a pair of tokens");
      impl->add_merge(m.at(size_t(0)).as_string(), m.at(size_t(1)).as_string(), rank, where);
    }
  }

  if (const Json* list = root.find("added_tokens"); list && !list->is_null()) {
    CB_CHECK(list->is_array(), file << ": added_tokens must be an array");
    for (size_t i = 0; i < list->size(); ++i) {
      const Json& t = list->at(i);
      const std::string where = file + ": added_tokens[" + std::to_string(i) + "]";
      CB_CHECK(t.is_object(), where << " must be an object");
      const Json& content = member(t, "content", where);
      const Json& id = member(t, "id", where);
      CB_CHECK(content.is_string(), where << ": content must be a string");
      CB_CHECK(id.is_integer(), where << ": id must be an integer");
      CB_CHECK(!flag(t, "single_word", false, where),
               where << ": single_word tokens (" << content.dump() << ") are not supported");
      AddedToken a;
      a.content = content.as_string();
      a.id = id.as_int();
      a.special = flag(t, "special", false, where);
      a.lstrip = flag(t, "lstrip", false, where);
      a.rstrip = flag(t, "rstrip", false, where);
      a.normalized = flag(t, "normalized", !a.special, where);
      impl->add_added_token(std::move(a), where);
    }
  }
  impl->finish();
  return BpeTokenizer(std::move(impl));
}

// ---------------------------------------------------------------------------
// Use

std::vector<TokenId> BpeTokenizer::encode(std::string_view text) const { return impl_->encode(text).ids; }

Encoding BpeTokenizer::encode_with_offsets(std::string_view text) const { return impl_->encode(text); }

std::string BpeTokenizer::decode(std::span<const TokenId> ids, bool skip_special_tokens) const {
  std::string bytes;
  for (size_t i = 0; i < ids.size(); ++i) {
    const TokenId id = ids[i];
    CB_CHECK(id >= 0 && size_t(id) < impl_->tokens.size() && impl_->has_id[size_t(id)],
             "cannot decode token id " << id << " (position " << i << "): not in the vocabulary of " << impl_->source);
    if (skip_special_tokens && impl_->special[size_t(id)]) continue;
    bytes += impl_->decoded[size_t(id)];
  }
  return utf8_replace_invalid(bytes);
}

int64_t BpeTokenizer::vocab_size() const { return int64_t(impl_->tokens.size()); }

std::optional<TokenId> BpeTokenizer::token_to_id(std::string_view token) const {
  for (const AddedToken& t : impl_->added)
    if (t.content == token) return t.id;
  auto it = impl_->vocab.find(std::string(token));
  if (it == impl_->vocab.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeTokenizer::id_to_token(TokenId id) const {
  CB_CHECK(id >= 0 && size_t(id) < impl_->tokens.size() && impl_->has_id[size_t(id)],
           "token id " << id << " is not in the vocabulary of " << impl_->source);
  return impl_->tokens[size_t(id)];
}

const std::vector<AddedToken>& BpeTokenizer::added_tokens() const { return impl_->added; }

const std::string& BpeTokenizer::source() const { return impl_->source; }

}  // namespace cb
