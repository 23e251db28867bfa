// Training configs saved by an earlier version (a checkpoint's resolved
// config) still read: keys added since take their defaults, and every value
// the saved config has is kept.
#include <gtest/gtest.h>

#include "train/train_config.h"

namespace cb {
namespace {

TEST(TrainConfig, SavedConfigsWithoutNewerKeysTakeTheirDefaults) {
  Json saved = train_config_defaults();
  saved["runtime"]["threads"] = int64_t(3);
  saved["runtime"].as_object().erase("device");  // saved before runtime.device existed
  const TrainRunConfig run = parse_train_config(resolve_train_config(saved, {}));
  EXPECT_EQ(run.device, "cpu");
  EXPECT_EQ(run.trainer.num_threads, 3) << "a saved value is kept";
  const TrainRunConfig cuda = parse_train_config(resolve_train_config(saved, {"runtime.device=cuda"}));
  EXPECT_EQ(cuda.device, "cuda");
}

}  // namespace
}  // namespace cb
