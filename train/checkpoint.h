// Training checkpoints: DIR/checkpoint-<step>/ holding
//   model.onnx            the trained model (codebooks included), ready for
//                         `codebook run/compile/export` (external data
//                         model.onnx.<hash>.data when large);
//   state.safetensors     every tensor of Trainer::state(): parameters,
//                         optimizer states, code-usage counters;
//   trainer_state.json    {"step", "config" (the resolved config), "log_history",
//                          "best_metric", ...}, written last;
//   fsm.npy               TokFSM runs: the FSM.
// A checkpoint is written into "checkpoint-<step>.tmp" and renamed when
// complete, so an interrupted save never leaves a half checkpoint under the
// real name. Saving a step that already has a checkpoint (a resumed run)
// renames the old one to "checkpoint-<step>.old", the new one into place, then
// removes the old: at every moment one complete copy exists, and
// recover_checkpoints puts it back under the real name after a kill. Older
// checkpoints beyond save_total_limit are then removed (renamed to
// "checkpoint-<step>.removing" first, so a half-removed one is never taken for
// a checkpoint).
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"
#include "support/json.h"
#include "train/tokfsm.h"
#include "train/trainer.h"

namespace cb {

struct CheckpointInfo {
  std::string dir;
  int64_t step = 0;
  Json trainer_state;
};

// Writes the checkpoint of `trainer` under `output_dir`; returns its folder.
// The caller holds the run folder's lock (train/run_folder.h).
std::string save_checkpoint(const std::string& output_dir, const Trainer& trainer, const Json& trainer_state,
                            const Fsm* fsm, int64_t save_total_limit);

// `path`: a checkpoint folder, or an output folder (its latest checkpoint).
// Throws cb::Error when there is none or it is incomplete. Reads only: run
// recover_checkpoints first to see a checkpoint whose save was interrupted.
CheckpointInfo find_checkpoint(const std::string& path);

// Loads state.safetensors of a checkpoint into the trainer (at its step).
void load_checkpoint(const CheckpointInfo& ckpt, Trainer& trainer);

// Complete checkpoint folders under output_dir, by step. Reads only.
std::vector<CheckpointInfo> list_checkpoints(const std::string& output_dir);

// Repairs what a kill inside save_checkpoint leaves in output_dir: for each
// step without a complete checkpoint-<step>, a complete checkpoint-<step>.tmp
// (the newer save) or else checkpoint-<step>.old is renamed into place;
// incomplete copies and leftovers beside a complete checkpoint are removed.
// Only with the run folder locked. Returns one line per repair, for the user.
std::vector<std::string> recover_checkpoints(const std::string& output_dir);

// Resuming from checkpoint `step` in a folder with later checkpoints: those
// are renamed to "checkpoint-<later step>.superseded" (replacing an earlier
// superseded copy of that step), so that the folder holds one timeline and
// nothing is deleted. Returns one line per checkpoint moved.
std::vector<std::string> supersede_checkpoints_after(const std::string& output_dir, int64_t step);

// The run folder a --resume path names: the parent of "…/checkpoint-<step>"
// (whether or not it exists now: it may need recovering) or of any folder
// holding trainer_state.json; otherwise the path itself.
std::string run_folder_of(const std::string& resume_path);

}  // namespace cb
