// Training checkpoints: DIR/checkpoint-<step>/ holding
//   model.onnx            the trained model (codebooks included), ready for
//                         `codebook run/compile/export` (external data
//                         model.onnx.data when large);
//   state.safetensors     every tensor of Trainer::state(): parameters,
//                         optimizer states, code-usage counters;
//   trainer_state.json    {"step", "config" (the resolved config), "log_history",
//                          "best_metric", ...};
//   fsm.npy               TokFSM runs: the FSM.
// A checkpoint is written into "checkpoint-<step>.tmp" and renamed when
// complete, so an interrupted save never leaves a half checkpoint under the
// real name; older checkpoints beyond save_total_limit are then removed.
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
std::string save_checkpoint(const std::string& output_dir, const Trainer& trainer, const Json& trainer_state,
                            const Fsm* fsm, int64_t save_total_limit);

// `path`: a checkpoint folder, or an output folder (its latest checkpoint).
// Throws cb::Error when there is none or it is incomplete.
CheckpointInfo find_checkpoint(const std::string& path);

// Loads state.safetensors of a checkpoint into the trainer (at its step).
void load_checkpoint(const CheckpointInfo& ckpt, Trainer& trainer);

// Checkpoint folders under output_dir, by step.
std::vector<CheckpointInfo> list_checkpoints(const std::string& output_dir);

}  // namespace cb
