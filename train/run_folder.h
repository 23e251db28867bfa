// A training run's output folder (--output DIR) and what keeps it one run's:
//   DIR/run.json  marks the folder as a run folder (written when a run
//                 starts). A run goes only into a new or empty folder or a
//                 run folder, so it never replaces a user's model.onnx or
//                 appends to their log.jsonl. Folders of runs from before
//                 run.json count by their checkpoint-<step> folders.
//   DIR/run.lock  held (flock, support/folder_lock.h) for the whole run: a
//                 second run into the folder fails naming the first one's
//                 process id.
#pragma once
#include <memory>
#include <string>

#include "support/folder_lock.h"
#include "support/json.h"

namespace cb {

class RunFolder {
 public:
  // Claims `dir` for a run: checks that it may hold one, creates it (only
  // when `create`; otherwise it must exist), locks it for this object's life
  // and marks it with run.json. `option` names the folder in errors
  // ("--output DIR").
  RunFolder(const std::string& dir, bool create, const std::string& option);

  const std::string& dir() const { return dir_; }
  std::string log_path() const;

 private:
  std::string dir_;
  std::unique_ptr<FolderLock> lock_;
};

// Resuming at `step`: log.jsonl is cut back to the lines of steps up to
// `step` (those after it were logged by the run that was killed or is being
// redone), replaced atomically. A folder without a log gets `history` (the
// checkpoint's log_history), one line each. Returns the number of lines cut.
size_t cut_log(const RunFolder& folder, int64_t step, const Json& history);

// A new run: log.jsonl starts empty (a run folder without checkpoints keeps
// the log of a run killed before its first checkpoint). Returns whether
// there was a log with lines.
bool restart_log(const RunFolder& folder);

}  // namespace cb
