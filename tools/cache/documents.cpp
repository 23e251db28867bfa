#include "tools/cache/documents.h"

#include <filesystem>

#include "support/error.h"
#include "support/input_file.h"
#include "support/rng.h"
#include "tools/cache/npy_file.h"

namespace fs = std::filesystem;

namespace cb::cache {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Line-oriented files, with the byte position for progress.
class LineReader {
 public:
  explicit LineReader(const std::string& path)
      : path_(path), in_((check_input_file(path, "--data file"), path), std::ios::binary) {
    CB_CHECK(in_, "--data: cannot open '" << path << "'");
    std::error_code ec;
    size_ = double(fs::file_size(path, ec));
  }
  bool next(std::string& line) {
    if (!std::getline(in_, line)) return false;
    ++line_no_;
    read_ += double(line.size() + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }
  int64_t line_no() const { return line_no_; }
  double fraction() const { return size_ > 0 ? std::min(1.0, read_ / size_) : 1.0; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ifstream in_;
  double size_ = 0, read_ = 0;
  int64_t line_no_ = 0;
};

void tokenize(const tools::TokenText& tokens, Document& d, const std::string& where) {
  try {
    tools::TokenText::Document e = tokens.encode_document(d.text);
    d.ids = std::move(e.ids);
    d.starts = std::move(e.starts);
  } catch (const Error& e) {
    CB_FAIL(where << ": " << e.what());
  }
}

class TextSource : public DocumentSource {
 public:
  TextSource(const std::string& path, const std::string& split, const tools::TokenText& tokens)
      : reader_(path), split_(split), tokens_(tokens) {
    CB_CHECK(split == "line" || split == "blank-line" || (split.rfind("sep:", 0) == 0 && split.size() > 4),
             "--doc-split '" << split << "': expected line, blank-line or sep:STRING");
  }
  bool next(Document& d) override {
    std::string line;
    d.text.clear();
    int64_t first_line = 0;
    if (split_ == "line") {
      while (reader_.next(line))
        if (!line.empty()) {
          d.text = line;
          first_line = reader_.line_no();
          break;
        }
    } else {
      std::string sep = split_ == "blank-line" ? "" : split_.substr(4);
      bool any = false;
      while (reader_.next(line)) {
        bool is_sep = split_ == "blank-line" ? line.find_first_not_of(" \t") == std::string::npos : line == sep;
        if (is_sep) {
          if (any) break;
          continue;
        }
        if (!any) first_line = reader_.line_no();
        d.text += (any ? "\n" : "") + line;
        any = true;
      }
    }
    if (d.text.empty()) return false;
    tokenize(tokens_, d, reader_.path() + ":" + std::to_string(first_line));
    return true;
  }
  double fraction_read() const override { return reader_.fraction(); }
  Json describe() const override {
    Json j = Json::Object{};
    j["kind"] = "text";
    j["path"] = reader_.path();
    j["doc_split"] = split_;
    return j;
  }

 private:
  LineReader reader_;
  std::string split_;
  const tools::TokenText& tokens_;
};

class JsonlSource : public DocumentSource {
 public:
  JsonlSource(const std::string& path, const std::string& field, const tools::TokenText& tokens)
      : reader_(path), field_(field), tokens_(tokens) {}
  bool next(Document& d) override {
    std::string line;
    while (reader_.next(line)) {
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      std::string where = reader_.path() + ":" + std::to_string(reader_.line_no());
      Json j = json_parse(line, where);
      CB_CHECK(j.is_object(), where << ": expected a JSON object per line");
      const Json* t = j.find(field_);
      CB_CHECK(t, where << ": no \"" << field_ << "\" field (--text-field names the field holding the text)");
      CB_CHECK(t->is_string(), where << ": \"" << field_ << "\" is not a string");
      d.text = t->as_string();
      if (d.text.empty()) continue;
      tokenize(tokens_, d, where);
      return true;
    }
    return false;
  }
  double fraction_read() const override { return reader_.fraction(); }
  Json describe() const override {
    Json j = Json::Object{};
    j["kind"] = "jsonl";
    j["path"] = reader_.path();
    j["text_field"] = field_;
    return j;
  }

 private:
  LineReader reader_;
  std::string field_;
  const tools::TokenText& tokens_;
};

class NpySource : public DocumentSource {
 public:
  NpySource(const std::string& path, const tools::TokenText& tokens) : path_(path), tokens_(tokens) {
    ids_ = MappedNpy::open(path);
    ids_.expect({DType::i64, DType::u32, DType::u16, DType::i32},
                ids_.shape().size() == 1 ? std::vector<int64_t>{-1} : std::vector<int64_t>{-1, -1});
    docs_ = ids_.shape().size() == 1 ? 1 : ids_.dim(0);
    len_ = ids_.shape().size() == 1 ? ids_.dim(0) : ids_.dim(1);
  }
  bool next(Document& d) override {
    if (doc_ >= docs_) return false;
    d.text.clear();
    d.ids.clear();
    d.starts.clear();
    for (int64_t t = 0; t < len_; ++t) {
      size_t i = size_t(doc_ * len_ + t);
      int64_t id = 0;
      switch (ids_.dtype()) {
        case DType::i64: id = static_cast<const int64_t*>(ids_.data())[i]; break;
        case DType::i32: id = static_cast<const int32_t*>(ids_.data())[i]; break;
        case DType::u32: id = static_cast<const uint32_t*>(ids_.data())[i]; break;
        default: id = static_cast<const uint16_t*>(ids_.data())[i]; break;
      }
      d.ids.push_back(id);
      d.starts.push_back(int64_t(d.text.size()));
      // The document-start token renders as nothing, as in text documents.
      if (id != tokens_.document_start_id()) {
        try {
          d.text += tokens_.token_bytes(id);
        } catch (const Error& e) {
          CB_FAIL(path_ << ": row " << doc_ << ", position " << t << ": " << e.what());
        }
      }
    }
    ++doc_;
    return !d.ids.empty() || next(d);
  }
  double fraction_read() const override { return docs_ ? double(doc_) / double(docs_) : 1.0; }
  Json describe() const override {
    Json j = Json::Object{};
    j["kind"] = "npy";
    j["path"] = path_;
    return j;
  }

 private:
  std::string path_;
  const tools::TokenText& tokens_;
  MappedNpy ids_;
  int64_t docs_ = 0, len_ = 0, doc_ = 0;
};

class TokFsmSource : public DocumentSource {
 public:
  // The cache's own sample stream, distinct from training's (1) and evaluation's (2).
  static constexpr uint64_t kCacheStream = 4;
  explicit TokFsmSource(const SourceOptions& o) : o_(o) {
    CB_CHECK(o.fsm, "tokfsm: no FSM");
    CB_CHECK(o.tokfsm_seq_len >= 2, "tokfsm: sequence length " << o.tokfsm_seq_len);
  }
  bool next(Document& d) override {
    if (doc_ >= o_.tokfsm_documents) return false;
    Rng rng = Rng::derive(o_.tokfsm_seed, kCacheStream, uint64_t(doc_));
    d.ids = o_.fsm->sample_tokens(o_.tokfsm_seq_len, rng);
    d.text.clear();
    d.starts.clear();
    for (int64_t id : d.ids) {
      d.starts.push_back(int64_t(d.text.size()));
      if (id != o_.fsm->special_id()) d.text += o_.fsm->token_string(id);
    }
    ++doc_;
    return true;
  }
  double fraction_read() const override {
    return o_.tokfsm_documents ? double(doc_) / double(o_.tokfsm_documents) : 1.0;
  }
  Json describe() const override {
    Json j = Json::Object{};
    j["kind"] = "tokfsm";
    j["path"] = o_.spec;
    j["sequences"] = o_.tokfsm_documents;
    j["seq_len"] = o_.tokfsm_seq_len;
    j["seed"] = int64_t(o_.tokfsm_seed);
    j["state_digits"] = o_.fsm->digits();
    j["states"] = o_.fsm->num_states();
    return j;
  }

 private:
  SourceOptions o_;
  int64_t doc_ = 0;
};

}  // namespace

std::unique_ptr<DocumentSource> open_source(const SourceOptions& o, const tools::TokenText& tokens) {
  if (o.spec == "tokfsm" || o.spec.rfind("tokfsm:", 0) == 0) return std::make_unique<TokFsmSource>(o);
  std::error_code ec;
  CB_CHECK(fs::is_regular_file(o.spec, ec), "--data: '" << o.spec << "' is not a file (give a text, .jsonl or .npy "
                                                        << "file, or tokfsm)");
  if (ends_with(o.spec, ".npy")) return std::make_unique<NpySource>(o.spec, tokens);
  if (ends_with(o.spec, ".jsonl") || ends_with(o.spec, ".json"))
    return std::make_unique<JsonlSource>(o.spec, o.text_field, tokens);
  return std::make_unique<TextSource>(o.spec, o.doc_split, tokens);
}

}  // namespace cb::cache
