#include "train/run_folder.h"

#include <filesystem>

#include "support/error.h"
#include "support/file_io.h"
#include "support/input_file.h"

namespace fs = std::filesystem;

namespace cb {
namespace {

constexpr const char* kMarker = "run.json";
constexpr const char* kLock = "run.lock";
constexpr const char* kLog = "log.jsonl";
constexpr const char* kFormat = "codebook-train-run";

bool is_marked(const fs::path& dir) { return json_file_has_format((dir / kMarker).string(), kFormat); }

// The first entry that makes `dir` no run folder ("" when it may hold a run).
std::string foreign_entry(const fs::path& dir) {
  if (is_marked(dir)) return "";
  std::string first;
  for (auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0) return "";  // a run from before run.json
    if (name != kLock && first.empty()) first = name;
  }
  return first;
}

}  // namespace

RunFolder::RunFolder(const std::string& dir, bool create, const std::string& option) : dir_(dir) {
  std::error_code ec;
  fs::path p(dir);
  if (fs::exists(p, ec)) {
    CB_CHECK(fs::is_directory(p, ec), option << ": exists and is not a folder");
    std::string foreign = foreign_entry(p);
    CB_CHECK(foreign.empty(), option << ": the folder holds files that are not a training run's ('" << foreign
                                     << "' and no " << kMarker
                                     << "); a run goes into a new or empty folder, or a run folder of its own");
  } else {
    CB_CHECK(create, option << ": no such folder");
    fs::create_directories(p, ec);
    CB_CHECK(!ec, option << ": cannot create the folder: " << ec.message());
  }
  lock_ = std::make_unique<FolderLock>((p / kLock).string(), option + " (a training run folder)");
  // Checked again under the lock: another run may have claimed it meanwhile.
  std::string foreign = foreign_entry(p);
  CB_CHECK(foreign.empty(), option << ": the folder holds files that are not a training run's ('" << foreign << "')");
  if (!is_marked(p)) {
    Json marker = Json::Object{};
    marker["format"] = std::string(kFormat);
    marker["note"] = std::string("a `codebook train` run folder (docs/training.md)");
    json_write_file((p / kMarker).string(), marker);
  }
}

std::string RunFolder::log_path() const { return (fs::path(dir_) / kLog).string(); }

size_t cut_log(const RunFolder& folder, int64_t step, const Json& history) {
  std::error_code ec;
  if (!fs::exists(folder.log_path(), ec)) {
    std::string lines;
    for (const Json& line : history.as_array()) lines += line.dump() + "\n";
    write_file_atomic(folder.log_path(), lines);
    return 0;
  }
  std::string text = read_input_file(folder.log_path(), "log.jsonl");
  size_t keep = 0, cut = 0;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    end = end == std::string::npos ? text.size() : end + 1;
    bool later = false;
    try {
      Json line = json_parse(text.substr(at, end - at));
      const Json* s = line.find("step");
      later = s && s->as_int() > step;
    } catch (const Error&) {
      later = end == text.size();  // a half-written last line of a killed run
    }
    if (later || cut) {
      ++cut;
    } else {
      keep = end;
    }
    at = end;
  }
  bool unterminated = keep > 0 && text[keep - 1] != '\n';  // a complete last line cut short of its newline
  if (cut || unterminated) write_file_atomic(folder.log_path(), text.substr(0, keep) + (unterminated ? "\n" : ""));
  return cut;
}

bool restart_log(const RunFolder& folder) {
  std::error_code ec;
  if (!fs::exists(folder.log_path(), ec)) return false;
  bool had_lines = fs::file_size(folder.log_path(), ec) > 0;
  write_file_atomic(folder.log_path(), "");
  return had_lines;
}

}  // namespace cb
